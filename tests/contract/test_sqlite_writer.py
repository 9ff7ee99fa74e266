"""The SQLite writer process (`lapor.store.writer`) beyond the store contract, which it passes as the
`sqlite_writer` backend: appenders in several processes share its commits, a writer killed at any moment loses
no acknowledged append and doubles none, and what is not an append is refused without harm."""

from __future__ import annotations

import resource
import socket
import struct
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import orjson
import pytest

from lapor.store import (
    NO_STREAM,
    AppendNotRecorded,
    NewEvent,
    StoreError,
    WrongExpectedVersion,
    error_kind,
    open_store,
)
from lapor.store import writer as writer_module
from lapor.store.open import sqlite_url
from lapor.store.writer import WriterProcess, default_socket
from tests.conftest import wait_until

from ._workers import append_in_process, processes_starting_together


def noted(n: int) -> NewEvent:
    return NewEvent("Noted", {"n": n}, metadata={"actor": "tester", "role": "operator"})


def exchange(sock: socket.socket, body: bytes) -> dict:
    sock.sendall(struct.pack(">I", len(body)) + body)
    (length,) = struct.unpack(">I", sock.recv(4, socket.MSG_WAITALL))
    return orjson.loads(sock.recv(length, socket.MSG_WAITALL))


def test_appends_fail_clearly_and_write_nothing_when_no_writer_answers(tmp_path, monkeypatch):
    monkeypatch.setattr(writer_module, "WRITER_RETURN", 0.2)  # how long it waits for one is the next test's
    path = tmp_path / "events.db"
    with open_store(sqlite_url(path, tmp_path / "nobody.sock")) as store:
        with pytest.raises(StoreError, match="does not answer"):
            store.append("complaint-A", [noted(0)], NO_STREAM)
        assert store.read_all() == []


def test_an_append_waits_for_a_writer_that_starts_meanwhile(tmp_path):
    """A writer starting again after its predecessor died (`lapor up --store-writer` restarts it; a supervisor may
    restart `lapor writer`): the appends of that moment failed at once ("does not answer"), as commands' 500s."""
    path = tmp_path / "events.db"
    started: list[WriterProcess] = []
    later = threading.Timer(0.3, lambda: started.append(WriterProcess(path)))
    with open_store(sqlite_url(path, default_socket(path))) as store:
        later.start()
        try:
            assert store.append("complaint-A", [noted(0)], NO_STREAM).last_version == 0
        finally:
            later.join()
            started[0].stop()
        assert [e.stream for e in store.read_all()] == ["complaint-A"]


def test_an_unknown_sqlite_store_option_is_refused(tmp_path):
    with pytest.raises(ValueError, match="writer=<socket>"):
        open_store(f"sqlite:///{tmp_path / 'events.db'}?writers=x")


def test_appends_from_several_processes_share_the_writers_commits(tmp_path):
    writer = WriterProcess(tmp_path / "events.db")
    try:
        streams = [f"complaint-shared{n}" for n in range(2)]
        with processes_starting_together(4) as pool:
            runs = pool.starmap(
                append_in_process, [(writer.url, f"p{n}", 60, streams, f"complaint-own{n}") for n in range(4)]
            )
    finally:
        said = writer.stop()
    assert sum(len(run) for run in runs) == 240
    appends, groups = (int(word) for word in said.split() if word.isdigit())
    assert appends >= 240  # conflicts on the shared streams are answered too, and retried
    assert groups < appends, said


def test_a_writer_killed_mid_run_loses_no_acknowledged_append_and_doubles_none(tmp_path):
    path = tmp_path / "events.db"
    writer = WriterProcess(path)
    acknowledged: dict[str, tuple[str, int]] = {}
    refused = [0]
    reasons: set[bool] = set()  # whether each refusal said the append might have been recorded
    lock = threading.Lock()

    def append_until_done(worker: int) -> None:
        with open_store(writer.url) as store:
            stream = f"complaint-w{worker}"
            for n in range(60):
                event = noted(n)
                while True:  # a broken connection: the same event, with the same id and expected version, again
                    try:
                        result = store.append(stream, [event], NO_STREAM if n == 0 else n - 1)
                        break
                    except StoreError as error:
                        with lock:
                            refused[0] += 1
                            reasons.add("may or may not be recorded" in str(error))
                        threading.Event().wait(0.02)
                with lock:
                    acknowledged[str(event.event_id)] = (stream, result.last_version)

    threads = [threading.Thread(target=append_until_done, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(acknowledged) >= 100)
        writer.kill()  # SIGKILL: no chance to finish what it was doing
        wait_until(lambda: refused[0] > 0)
        writer = WriterProcess(path)
        for thread in threads:
            thread.join(120)
    finally:
        writer.stop()
    assert len(acknowledged) == 8 * 60
    assert True in reasons  # an append in flight when the writer died is not reported as simply refused
    with open_store(f"sqlite:///{path}") as store:
        events = store.read_all(limit=10_000)
    assert sorted((str(e.event_id), (e.stream, e.version)) for e in events) == sorted(acknowledged.items())
    assert [e.position for e in events] == sorted({e.position for e in events})


def an_append(**changes) -> dict:
    event = {"event_id": str(uuid.uuid4()), "type": "Noted", "data": {}, "metadata": {}, "schema_version": 1}
    event.update(changes.pop("event", {}))
    return {"stream": "complaint-bad", "expected": -1, "recorded_at": "2026-01-01T00:00:00+00:00",
            "events": [event], **changes}


NOT_APPENDS = {
    "not JSON": b"not json",
    "no events": orjson.dumps({"stream": "complaint-bad", "expected": -1}),
    "no category": orjson.dumps(an_append(stream="nocategory")),
    "expected true": orjson.dumps(an_append(expected=True)),
    "data a list": orjson.dumps(an_append(event={"data": []})),
    "schema version text": orjson.dumps(an_append(event={"schema_version": "1"})),
    "event id not a UUID": orjson.dumps(an_append(event={"event_id": "x"})),
    "event id a number": orjson.dumps(an_append(event={"event_id": 5})),
    "an event id twice": orjson.dumps(an_append(events=an_append()["events"] * 2)),
    "schema version past 32 bits": orjson.dumps(an_append(event={"schema_version": 2**31})),
    "a control character in the type": orjson.dumps(an_append(event={"type": "Noted\u0000"})),
    "a moment without offset": orjson.dumps(an_append(recorded_at="2026-01-01T00:00:00")),
}


def test_what_is_not_an_append_is_refused_writes_nothing_and_the_writer_serves_on(tmp_path):
    with WriterProcess(tmp_path / "events.db") as writer:
        with socket.socket(socket.AF_UNIX) as raw:
            raw.connect(str(writer.socket))
            refusals = {name: exchange(raw, body) for name, body in NOT_APPENDS.items()}
        assert {name: answer["error"] for name, answer in refusals.items()} == dict.fromkeys(NOT_APPENDS, "invalid")
        assert "category" in refusals["no category"]["message"]
        with socket.socket(socket.AF_UNIX) as greedy:
            greedy.connect(str(writer.socket))
            greedy.sendall(struct.pack(">I", 2**31))  # a frame no append needs: the writer hangs up on it
            assert greedy.recv(1) == b""
        with open_store(writer.url) as store:
            assert store.append("complaint-after", [noted(0)], NO_STREAM).last_version == 0
            assert [e.stream for e in store.read_all()] == ["complaint-after"]


def test_a_second_writer_for_the_same_socket_is_refused(tmp_path: Path, capfd):
    with WriterProcess(tmp_path / "events.db"), pytest.raises(StoreError, match="did not start"):
        WriterProcess(tmp_path / "events.db")
    assert "another writer already serves" in capfd.readouterr().err


def test_a_writer_started_to_stop_with_its_starter_stops_when_that_process_is_killed(tmp_path: Path):
    path = tmp_path / "events.db"
    starter = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from lapor.store.writer import WriterProcess; "
         "writer = WriterProcess(sys.argv[1], stop_with_us=True); print('started', flush=True); time.sleep(600)",
         str(path)],
        stdout=subprocess.PIPE, text=True,
    )
    assert starter.stdout is not None
    assert starter.stdout.readline().strip() == "started"
    socket_path = Path(f"{path}-writer.sock")
    assert socket_path.exists()
    starter.kill()
    starter.wait()
    wait_until(lambda: not socket_path.exists())  # it closed its socket on the way out


def test_lapor_writer_serves_the_data_directorys_store_until_sigterm(tmp_path: Path):
    data = tmp_path / "var"
    writer = subprocess.Popen([sys.executable, "-m", "lapor.cli", "writer", "--data", str(data)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert writer.stdout is not None
    assert writer.stdout.readline().startswith("store writer:")
    try:
        with open_store(sqlite_url(data / "events.db", default_socket(data / "events.db"))) as store:
            store.append("complaint-X", [noted(0), noted(1)], NO_STREAM)
    finally:
        writer.terminate()
    out, _ = writer.communicate(timeout=60)
    assert writer.returncode == 0
    assert out.strip().endswith("stopped after 1 appends in 1 groups")


class _WriterWithFileSizeLimit(WriterProcess):
    """A writer process that may not write a file past `limit` bytes (RLIMIT_FSIZE; Python ignores SIGXFSZ, so a
    write past it fails with EFBIG), as a disk that fills up under it."""

    limit = 0

    def _start(self) -> subprocess.Popen[str]:
        limit = self.limit

        def limited() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        process = subprocess.Popen(self._command, stdout=subprocess.PIPE, text=True, preexec_fn=limited)
        assert process.stdout is not None
        assert process.stdout.readline().startswith("store writer:")
        return process


def test_an_append_the_writer_process_fails_for_a_cause_of_its_own_names_that_cause_by_kind(tmp_path):
    """Session 31: `StoreError.remote_cause`, the kind of the writer process's own failure sent with its answer (what
    /readyz names), had no test. Here the writer cannot grow the store's files past a limit, as on a full disk
    (SQLite reports the short write as an I/O error). An append made while another error is handled (a retry in an
    `except` block, as `lapor.commands` makes one) was named after that other error: `error_kind` followed the
    context the client's error was raised in, not the writer's cause."""
    path = tmp_path / "events.db"
    _WriterWithFileSizeLimit.limit = 1_000_000
    with _WriterWithFileSizeLimit(path) as writer, open_store(writer.url) as store:
        store.append("complaint-A", [noted(0)], NO_STREAM)
        large = NewEvent("Noted", {"text": "x" * 2_000_000})
        with pytest.raises(AppendNotRecorded) as raised:
            store.append("complaint-A", [large], 0)
        assert error_kind(raised.value) == "AppendNotRecorded from OperationalError SQLITE_IOERR_WRITE"
        try:
            store.append("complaint-A", [noted(1)], NO_STREAM)  # the stream exists
        except WrongExpectedVersion:
            with pytest.raises(AppendNotRecorded) as raised_again:
                store.append("complaint-A", [large], 0)
        assert error_kind(raised_again.value) == "AppendNotRecorded from OperationalError SQLITE_IOERR_WRITE"
        assert [event.version for event in store.read_stream("complaint-A")] == [0]
        assert store.append("complaint-A", [noted(1)], 0).last_version == 1  # the writer serves on
