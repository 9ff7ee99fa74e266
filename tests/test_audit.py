"""`lapor audit verify`: the hash chain catches altered, deleted and re-hashed rows."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import orjson
import psycopg
import pytest

from lapor.audit import verify_chain
from lapor.store import NewEvent, StoreError, open_store
from lapor.store.open import shown_url, without_password
from tests.test_subscriptions import make_unreadable


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "events.db"
    with open_store(f"sqlite:///{path}") as store:
        for n in range(5):
            store.append(f"complaint-T{n}", [NewEvent("Noted", {"n": n, "i": i}) for i in range(4)])
    return path


def tamper(path: Path, sql: str, params: tuple = ()) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(sql, params)
    conn.close()


def verify(path: Path):
    with open_store(f"sqlite:///{path}") as store:
        return verify_chain(store, batch_size=7)


def test_untouched_log_verifies(store_path):
    report = verify(store_path)
    assert report.ok
    assert (report.events_checked, report.streams_checked) == (20, 5)


def test_altered_data_is_caught_at_that_event(store_path):
    tamper(
        store_path,
        "UPDATE events SET data = ? WHERE stream = 'complaint-T2' AND version = 1",
        (orjson.dumps({"n": 2, "i": 99}),),
    )
    report = verify(store_path)
    assert not report.ok
    first = report.first_broken
    assert (first.stream, first.version) == ("complaint-T2", 1)
    assert "altered" in first.problem


def test_rehashed_alteration_is_caught_at_the_next_link(store_path):
    with open_store(f"sqlite:///{store_path}") as store:
        event = store.read_stream("complaint-T3")[1]
    event.data = {"n": 3, "i": "rewritten"}
    forged = event.expected_hash()  # the forger recomputes this event's hash, but cannot fix the next link
    tamper(
        store_path,
        "UPDATE events SET data = ?, hash = ? WHERE stream = 'complaint-T3' AND version = 1",
        (orjson.dumps(event.data), forged),
    )
    first = verify(store_path).first_broken
    assert (first.stream, first.version) == ("complaint-T3", 2)
    assert "prev_hash" in first.problem


def test_deleted_event_is_caught_as_a_gap(store_path):
    tamper(store_path, "DELETE FROM events WHERE stream = 'complaint-T1' AND version = 2")
    first = verify(store_path).first_broken
    assert (first.stream, first.version) == ("complaint-T1", 3)
    assert "missing" in first.problem


def test_altered_metadata_is_caught(store_path):
    tamper(
        store_path,
        "UPDATE events SET metadata = ? WHERE stream = 'complaint-T0' AND version = 0",
        (orjson.dumps({"actor": "someone-else"}),),
    )
    first = verify(store_path).first_broken
    assert (first.stream, first.version) == ("complaint-T0", 0)


def test_the_walk_checks_the_log_as_it_stood_when_it_began(store_path):
    """Events appended while the walk runs are the next walk's: the report and its progress speak of the head
    read at the start, so progress ends at that head and never passes it."""
    seen: list[tuple[int, int, int]] = []
    with open_store(f"sqlite:///{store_path}") as store:
        head = store.head_position()

        def appending_meanwhile(checked: int, position: int, at_head: int) -> None:
            seen.append((checked, position, at_head))
            store.append("complaint-LATE", [NewEvent("Noted", {"checked": checked})])

        report = verify_chain(store, batch_size=7, progress=appending_meanwhile)
        assert store.head_position() == head + len(seen)  # the log did grow during the walk
    assert report.ok
    assert (report.events_checked, report.streams_checked, report.head_position) == (20, 5, head)
    assert [position for _, position, _ in seen] == sorted({position for _, position, _ in seen})
    assert seen[-1] == (20, head, head)
    assert all(at_head == head for _, _, at_head in seen)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lapor.cli", *args], capture_output=True, text=True, timeout=120)


def test_cli_audit_verify_passes_an_untouched_log_and_names_the_first_broken_link(store_path):
    clean = run_cli("audit", "verify", "--store", f"sqlite:///{store_path}")
    assert clean.returncode == 0, clean.stderr
    assert "20 events in 5 streams" in clean.stdout
    tamper(store_path, "UPDATE events SET type = 'ComplaintClosed' WHERE stream = 'complaint-T4' AND version = 2")
    broken = run_cli("audit", "verify", "--store", f"sqlite:///{store_path}")
    assert broken.returncode == 1
    assert "BROKEN: complaint-T4 version 2" in broken.stdout


def test_cli_audit_verify_to_a_pipe_prints_its_verdict_first_and_nothing_else(store_path):
    """Session 31: rich left an empty line on stdout where its progress bar had been, so `lapor audit verify | head -1`
    read nothing of the verdict, and a script taking the first line judged an empty one."""
    clean = run_cli("audit", "verify", "--store", f"sqlite:///{store_path}")
    assert clean.stdout.splitlines()[0].startswith("ok: 20 events in 5 streams"), clean.stdout
    tamper(store_path, "UPDATE events SET type = 'ComplaintClosed' WHERE stream = 'complaint-T4' AND version = 2")
    broken = run_cli("audit", "verify", "--store", f"sqlite:///{store_path}")
    assert broken.stdout.splitlines()[0].startswith("BROKEN: complaint-T4 version 2"), broken.stdout
    assert len(broken.stdout.splitlines()) == 2  # the link, and where the walk stopped
    assert broken.stderr == ""


def test_cli_audit_verify_of_a_store_that_does_not_exist_is_an_error_and_creates_nothing(tmp_path: Path):
    """A mistyped path must not become a new, empty log that verifies "ok"."""
    for args in (["--data", str(tmp_path / "typo")], ["--store", f"sqlite:///{tmp_path / 'typo' / 'events.db'}"]):
        result = run_cli("audit", "verify", *args)
        assert result.returncode == 2, result.stdout
        assert "no event store at" in result.stderr
        assert "ok:" not in result.stdout
        assert not (tmp_path / "typo").exists()


def test_cli_audit_verify_of_a_postgres_schema_without_a_store_is_an_error(postgres_url: str):
    result = run_cli("audit", "verify", "--store", postgres_url)
    assert result.returncode == 2, result.stdout
    assert "no event store at" in result.stderr
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT to_regclass('events')").fetchone() == (None,)  # still nothing there


def test_cli_prints_a_store_url_without_its_password():
    url = "postgresql://lapor:s3cret-pw@127.0.0.1:1/lapor"  # nothing listens on port 1
    result = run_cli("audit", "verify", "--store", url)
    assert result.returncode == 2
    assert "cannot open the store postgresql://lapor:***@127.0.0.1:1/lapor" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout


def test_cli_prints_a_store_url_without_a_password_given_as_a_parameter():
    """libpq takes the password as a URL parameter too (`?password=`): it was printed as given."""
    url = "postgresql://lapor@127.0.0.1:1/lapor?sslmode=disable&password=s3cret-pw"
    result = run_cli("audit", "verify", "--store", url)
    assert result.returncode == 2
    assert "cannot open the store postgresql://lapor@127.0.0.1:1/lapor?sslmode=disable&password=***" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # No `//` for the user part: printed whole, in the URL and in the error quoting it (session 31).
        ("postgresql:/lapor:s3cret-pw@127.0.0.1:1/lapor", "postgresql:/***@127.0.0.1:1/lapor"),
        ("lapor:s3cret-pw@127.0.0.1:1/lapor", "lapor:***@127.0.0.1:1/lapor"),
        # What libpq cannot read it quotes: the password with a space in it, the whole URL with a `[` not closed.
        ("postgresql://lapor:s3cret-pw and more@127.0.0.1:1/lapor", "postgresql://lapor:***@127.0.0.1:1/lapor"),
        ("postgresql://lapor:s3cret-pw@[::1:1/lapor", "<a store URL that does not parse>"),
        ("postgresql://lapor@[::1:1/lapor?password=s3cret-pw", "<a store URL that does not parse>"),
    ],
)
def test_cli_prints_no_password_of_a_store_url_it_cannot_use(url: str, shown: str):
    result = run_cli("audit", "verify", "--store", url)
    assert result.returncode == 2
    assert f"cannot open the store {shown}: " in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_a_driver_error_quoting_only_the_password_of_a_url_without_its_scheme_prints_none_of_it():
    """`lapor:pw@db/lapor` reads as scheme `lapor` as well as user `lapor`: the password is found either way."""
    said = without_password("could not read 's3cret-pw' in lapor:s3cret-pw@db/lapor", "lapor:s3cret-pw@db/lapor")
    assert said == "could not read '***' in lapor:***@db/lapor"


def test_a_sqlite_path_with_an_at_sign_is_printed_whole():
    """A file's path may hold `@` and `:` (`/home/budi@corp`); a SQLite URL has no password to hide."""
    url = "sqlite:////home/budi:x@corp/lapor/events.db"
    assert shown_url(url) == url
    assert without_password(f"unable to open {url}: x", url) == f"unable to open {url}: x"


def position_of(path: Path, stream: str, version: int) -> int:
    conn = sqlite3.connect(path)
    [(position,)] = conn.execute("SELECT position FROM events WHERE stream = ? AND version = ?", (stream, version))
    conn.close()
    return position


@pytest.mark.parametrize(("column", "value"), [("data", b"{not json"), ("recorded_at", "kemarin sore")])
def test_an_event_altered_past_reading_is_named_and_the_walk_goes_on(store_path, column, value):
    """SQLite keeps whatever bytes it is given; such an event stopped the walk with a decoding error (in the CLI a
    traceback, in GET /api/audit/integrity a stream cut off before its result). Its stream and version are named as
    stored (session 30; they were null), and its stream is broken from there: its next link is not reported again as
    "an event is missing"."""
    position = position_of(store_path, "complaint-T2", 1)
    tamper(store_path, f"UPDATE events SET {column} = ? WHERE position = ?", (value, position))
    with open_store(f"sqlite:///{store_path}") as store:
        report = verify_chain(store, batch_size=7)
    [unreadable] = report.broken
    assert (unreadable.stream, unreadable.version, unreadable.position) == ("complaint-T2", 1, position)
    assert unreadable.problem.startswith("this event cannot be read (")
    # Every other event read and checked; that one found, not read (session 30: the report left it out of its counts)
    assert (report.events_checked, report.events_unreadable, report.events_found) == (19, 1, 20)


def test_unreadable_events_side_by_side_are_each_named_with_their_stream(store_path):
    """Two events next to each other in the log (complaint-T1's last and complaint-T2's first), both altered past
    reading, and a third of complaint-T2 after an event deleted between them. Until session 30 the walk reported
    one link, at the run's last position with no stream, for "the events from position 8 to this one", quoting the
    first one's error only: an auditor learnt neither that two streams were hit nor which, and the run counted a
    position where nothing was."""
    t1_last, t2_first = position_of(store_path, "complaint-T1", 3), position_of(store_path, "complaint-T2", 0)
    t2_deleted, t2_third = position_of(store_path, "complaint-T2", 1), position_of(store_path, "complaint-T2", 2)
    assert (t2_first, t2_third) == (t1_last + 1, t2_deleted + 1)  # side by side in the log
    for position in (t1_last, t2_first, t2_third):
        tamper(store_path, "UPDATE events SET data = x'7b' WHERE position = ?", (position,))
    tamper(store_path, "DELETE FROM events WHERE position = ?", (t2_deleted,))
    with open_store(f"sqlite:///{store_path}") as store:
        report = verify_chain(store, batch_size=7)
    assert [(link.stream, link.version, link.position) for link in report.broken] == [
        ("complaint-T1", 3, t1_last), ("complaint-T2", 0, t2_first), ("complaint-T2", 2, t2_third)]
    assert all(link.problem.startswith("this event cannot be read (its data does not decode (JSONDecodeError))")
               for link in report.broken)
    assert (report.events_checked, report.events_unreadable, report.events_found, report.streams_checked) == (
        16, 3, 19, 5)  # the 19 events the log still holds
    with open_store(f"sqlite:///{store_path}") as store:  # the CLI's walk stops at the first, named the same way
        assert verify_chain(store, stop_at_first=True).broken == report.broken[:1]


@pytest.mark.postgres
@pytest.mark.parametrize("column", ["data", "recorded_at"])
def test_an_event_altered_past_reading_on_postgresql_is_named_and_the_walk_goes_on(postgres_url: str, column: str):
    """PostgreSQL keeps a `json` number past a double and a `timestamptz` of 'infinity', which no read can decode:
    the time failed the walk with psycopg's DataError (a 500 from GET /api/audit/integrity) until session 29."""
    with open_store(postgres_url) as store:
        store.append("complaint-T", [NewEvent("Noted", {"n": n}) for n in range(3)])
        position = store.read_stream("complaint-T")[1].position
        make_unreadable(postgres_url, "complaint-T", 1, column)
        report = verify_chain(store)
    [unreadable] = report.broken
    assert (unreadable.stream, unreadable.version, unreadable.position) == ("complaint-T", 1, position)
    assert unreadable.problem.startswith("this event cannot be read (")


@pytest.mark.parametrize(("column", "value"), [("metadata", b"\xff"), ("event_id", "bukan-uuid")])
def test_an_event_whose_id_or_metadata_cannot_be_read_is_a_broken_link_of_its_stream(store_path, column, value):
    tamper(store_path, f"UPDATE events SET {column} = ? WHERE stream = 'complaint-T2' AND version = 1", (value,))
    with open_store(f"sqlite:///{store_path}") as store:
        report = verify_chain(store, batch_size=7)
    [link] = report.broken
    assert (link.stream, link.version) == ("complaint-T2", 1)
    assert "cannot be read" in link.problem
    assert report.events_checked == 20


def test_cli_audit_verify_names_an_unreadable_event_without_a_traceback(store_path):
    position = position_of(store_path, "complaint-T1", 3)
    tamper(store_path, "UPDATE events SET data = x'00ff' WHERE position = ?", (position,))
    result = run_cli("audit", "verify", "--store", f"sqlite:///{store_path}")
    assert result.returncode == 1
    assert f"BROKEN: complaint-T1 version 3 (position {position}): this event cannot be read (" in result.stdout
    assert "Traceback" not in result.stderr


def test_cli_audit_verify_names_the_field_that_does_not_decode_without_quoting_it(store_path):
    """The decode's words quote the stored text, which may hold a reporter's personal data (session 31)."""
    position = position_of(store_path, "complaint-T1", 3)
    tamper(store_path, "UPDATE events SET recorded_at = 'kemarin sore, Budi' WHERE position = ?", (position,))
    result = run_cli("audit", "verify", "--store", f"sqlite:///{store_path}")
    assert result.returncode == 1
    assert (f"BROKEN: complaint-T1 version 3 (position {position}): this event cannot be read (its recorded_at does "
            "not decode (ValueError)): the log was altered") in result.stdout
    assert "kemarin" not in result.stdout + result.stderr


def test_cli_audit_verify_counts_the_events_it_could_not_read_apart(store_path):
    """The verdict said "checked 19 events in 5 streams" of a log of 20 with one event altered past reading: an
    auditor could not tell whether an event was missing or left out. It now says how many more it found unread."""
    position = position_of(store_path, "complaint-T1", 3)
    tamper(store_path, "UPDATE events SET data = x'7b' WHERE position = ?", (position,))
    result = run_cli("audit", "verify", "--all", "--store", f"sqlite:///{store_path}")
    assert result.returncode == 1
    assert result.stdout.strip().splitlines()[-1] == (
        "checked 19 events (and 1 it could not read) in 5 streams up to position 20: 1 broken link; the log was "
        "altered after it was written"
    )


def test_cli_audit_verify_of_a_store_sqlite_cannot_read_says_so_in_one_line(damaged_sqlite_store: Path):
    """A damaged file (a disk's bad sectors, a copy cut short) failed under the walk with a traceback."""
    path = damaged_sqlite_store
    result = run_cli("audit", "verify", "--store", f"sqlite:///{path}")
    assert result.returncode == 2
    assert result.stderr.startswith(f"lapor: cannot read the store sqlite:///{path} after position ")
    assert "database disk image is malformed" in result.stderr
    assert "Traceback" not in result.stderr


def run_sql(url: str, statement: str) -> None:
    """An insider's change, made with SQL on the store's own tables."""
    if url.startswith("sqlite:///"):
        tamper(Path(url.removeprefix("sqlite:///")), statement)
        return
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_an_event_filed_under_another_category_than_its_streams_is_named(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
):
    """The stored category is not in the hash (the stream is): changing it hid an event from every subscription
    reading its category (the live projections, the live stream), or showed a directory event to them as a
    complaint's, and the walk said every chain was intact."""
    url = f"sqlite:///{tmp_path / 'events.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    with open_store(url) as store:
        for n in range(3):
            store.append(f"complaint-T{n}", [NewEvent("Noted", {"n": n, "i": i}) for i in range(4)])
        store.append("directory-D1", [NewEvent("AgencyRegistered", {"agency_id": "pemda-53.71"})])
    run_sql(url, "UPDATE events SET category = 'x' WHERE stream = 'complaint-T1' AND version = 2")
    run_sql(url, "UPDATE events SET category = 'complaint' WHERE stream = 'directory-D1'")
    with open_store(url) as store:
        read_as_complaints = {(e.stream, e.version) for e in store.read_all(0, "complaint", 100)}
        assert ("complaint-T1", 2) not in read_as_complaints
        assert ("directory-D1", 0) in read_as_complaints
        report = verify_chain(store, batch_size=5)
        first = verify_chain(store, batch_size=5, stop_at_first=True).first_broken
    assert [(link.stream, link.version) for link in report.broken] == [("complaint-T1", 2), ("directory-D1", 0)]
    assert "category" in report.broken[0].problem
    assert report.events_checked == 13
    assert first is not None
    assert (first.stream, first.version) == ("complaint-T1", 2)


def test_cli_audit_verify_says_it_stopped_at_the_first_broken_link_and_where_the_log_ends(store_path):
    """It said "checked 2 events; the log was altered" of a log of 20: read as if the log held two events."""
    tamper(store_path, "UPDATE events SET type = 'X' WHERE position IN (2, 15)")
    first = run_cli("audit", "verify", "--store", f"sqlite:///{store_path}")
    assert first.returncode == 1
    verdict = first.stdout.strip().splitlines()[-1]
    assert "stopped at the first broken link" in verdict
    assert "position 2 of 20" in verdict
    assert "--all" in verdict
    every = run_cli("audit", "verify", "--all", "--store", f"sqlite:///{store_path}")
    assert every.returncode == 1
    assert every.stdout.count("BROKEN: ") == 2
    assert every.stdout.strip().splitlines()[-1] == (
        "checked 20 events in 5 streams up to position 20: 2 broken links; the log was altered after it was written"
    )


def test_the_newest_events_deleted_from_a_postgres_log_are_found_by_its_head(postgres_url: str):
    """PostgreSQL keeps the last position given out in its head row (`lapor_head`), apart from the events: deleting
    the log's newest events with SQL and leaving that row walked to the new last event and said every chain was
    intact, though the head it reported was past it."""
    with open_store(postgres_url) as store:
        for n in range(3):
            store.append(f"complaint-T{n}", [NewEvent("Noted", {"n": n, "i": i}) for i in range(3)])
        head = store.head_position()
    run_sql(postgres_url, f"DELETE FROM events WHERE position > {head - 2}")
    with open_store(postgres_url) as store:
        report = verify_chain(store, batch_size=4)
        first = verify_chain(store, stop_at_first=True).first_broken
    assert not report.ok
    [link] = report.broken
    assert (link.stream, link.version, link.position) == (None, None, head)
    assert f"no event after position {head - 2} is there" in link.problem
    assert report.events_checked == 7
    assert first == link


# -- a copy the auditor may not change (session 31) ----------------------------------------------------------


def read_only_copy(store_path: Path, into: Path) -> Path:
    """A copy of the closed store alone (no journal, lock or vault beside it), its file and folder read-only."""
    into.mkdir()
    copy = into / "events.db"
    shutil.copyfile(store_path, copy)
    copy.chmod(0o444)
    into.chmod(0o555)
    return copy


def what_is_there(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    return {path.name: (path.stat().st_mtime_ns, path.stat().st_mode, hashlib.sha256(path.read_bytes()).digest())
            for path in sorted(folder.iterdir())}


def test_cli_audit_verify_reads_a_read_only_copy_and_writes_nothing_to_it_or_beside_it(store_path, tmp_path):
    """It opened the store for writing: its journal switch and schema, a lock file and a vault beside it. Root
    ignores permissions, so what shows it whoever runs this is what it left: files beside the copy."""
    copy = read_only_copy(store_path, tmp_path / "copy")
    before = what_is_there(copy.parent)
    try:
        result = run_cli("audit", "verify", "--store", f"sqlite:///{copy}")
        assert what_is_there(copy.parent) == before  # before: events.db-wal, -shm, -writer.lock, events-vault.db
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("ok: 20 events in 5 streams")
    finally:
        copy.parent.chmod(0o755)


def unprivileged() -> list[str]:
    """The command prefix that runs a process as nobody (uid 65534), so that file permissions apply to it."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root, which ignores file permissions, and no setpriv to run the command as nobody")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_cli_audit_verify_of_a_copy_whose_file_and_folder_it_may_only_read(store_path):
    """Before: "cannot open the store …: attempt to write a readonly database", exit 2."""
    prefix = unprivileged()
    with tempfile.TemporaryDirectory(dir="/tmp") as scratch:
        Path(scratch).chmod(0o755)  # where nobody can reach it
        copy = read_only_copy(store_path, Path(scratch) / "copy")
        tampered = read_only_copy(store_path, Path(scratch) / "tampered")
        tampered.parent.chmod(0o755)
        tampered.chmod(0o644)
        tamper(tampered, "UPDATE events SET type = 'ComplaintClosed' WHERE stream = 'complaint-T4' AND version = 2")
        tampered.chmod(0o444)
        tampered.parent.chmod(0o555)
        try:
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONDONTWRITEBYTECODE": "1"}
            runs = [subprocess.run([*prefix, sys.executable, "-m", "lapor.cli", "audit", "verify", "--store",
                                    f"sqlite:///{path}"], capture_output=True, text=True, timeout=120, env=env,
                                   cwd=Path(__file__).resolve().parent.parent)
                    for path in (copy, tampered)]
        finally:
            copy.parent.chmod(0o755)
            tampered.parent.chmod(0o755)
    clean, broken = runs
    assert (clean.returncode, clean.stderr) == (0, ""), clean.stderr
    assert clean.stdout.startswith("ok: 20 events in 5 streams")
    assert broken.returncode == 1, broken.stderr
    assert broken.stdout.startswith("BROKEN: complaint-T4 version 2")


def test_cli_audit_verify_of_a_live_store_reads_the_events_still_in_its_journal(store_path):
    """A store that is open has its WAL beside it, holding the latest events until a checkpoint: read through it."""
    with open_store(f"sqlite:///{store_path}") as store:
        store.append("complaint-LIVE", [NewEvent("Noted", {"n": 1})])
        assert Path(f"{store_path}-wal").exists()
        result = run_cli("audit", "verify", "--store", f"sqlite:///{store_path}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 21 events in 6 streams")


def test_a_store_read_as_a_file_at_rest_knows_a_writer_opened_it_meanwhile(store_path):
    with open_store(f"sqlite:///{store_path}", read_only=True) as reading:
        assert reading.head_position() == 20
        assert not reading.changed_while_read()
        with pytest.raises(StoreError, match="read-only"):
            reading.append("complaint-T0", [NewEvent("Noted", {})])
        with open_store(f"sqlite:///{store_path}") as writing:
            writing.append("complaint-LATE", [NewEvent("Noted", {})])
        assert reading.changed_while_read()


def test_cli_audit_verify_of_postgres_needs_no_write(postgres_url: str):
    """Every session of the walk read-only, as an auditor's role may be: the store's DDL (CREATE TABLE IF NOT
    EXISTS, run by every opening) was refused there, "cannot execute CREATE TABLE in a read-only transaction"."""
    with open_store(postgres_url) as store:
        for n in range(3):
            store.append(f"complaint-T{n}", [NewEvent("Noted", {"n": n})])
    parts = urlsplit(postgres_url)
    query = dict(parse_qsl(parts.query))
    query["options"] = f"{query.get('options', '')} -cdefault_transaction_read_only=on".strip()
    read_only = urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))
    # The URL does make every transaction read-only.
    with psycopg.connect(read_only) as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute("CREATE TABLE nothing (n int)")
    result = run_cli("audit", "verify", "--store", read_only)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 3 events in 3 streams")
