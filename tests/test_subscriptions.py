"""Checkpointed subscriptions: exactly-once effects across crashes, parking, replay, blocking wake-ups."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from lapor.commands import caused_event_id
from lapor.db import Tx, open_database
from lapor.store import LockWaitExpired, NewEvent, RecordedEvent, UnreadableEvent, open_store
from lapor.store import writer as writer_module
from lapor.subscriptions import Subscription, SubscriptionRunner
from tests.conftest import wait_until

EFFECTS = (
    "CREATE TABLE IF NOT EXISTS effects (position BIGINT PRIMARY KEY, stream TEXT NOT NULL, times INTEGER NOT NULL)"
)


def record_effect(event: RecordedEvent, tx: Tx) -> None:
    """A deliberately non-idempotent effect: a second delivery of the same event would show as times = 2."""
    tx.execute(
        "INSERT INTO effects (position, stream, times) VALUES (?, ?, 1) "
        "ON CONFLICT (position) DO UPDATE SET times = effects.times + 1",
        (event.position, event.stream),
    )


def effects_subscription(handle=record_effect) -> Subscription:
    return Subscription(name="effects", handle=handle, setup=lambda tx: tx.execute(EFFECTS))


def fill(store, streams: int, per_stream: int) -> int:
    for s in range(streams):
        store.append(f"complaint-S{s}", [NewEvent("Noted", {"n": i}) for i in range(per_stream)])
    return streams * per_stream


def effects(db) -> list[tuple[int, int]]:
    with db.read() as tx:
        return tx.fetchall("SELECT position, times FROM effects ORDER BY position")


CRASHING_CONSUMER = textwrap.dedent(
    """
    import os, sys
    from lapor.db import open_database
    from lapor.store import open_store
    from lapor.subscriptions import Subscription, SubscriptionRunner
    from tests.test_subscriptions import EFFECTS, record_effect

    store_url, db_url, crash_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    seen = 0

    def handle(event, tx):
        global seen
        record_effect(event, tx)
        seen += 1
        if seen == crash_at:
            os._exit(17)  # a kill -9 in the middle of a batch: no cleanup, no commit

    store, db = open_store(store_url), open_database(db_url)
    runner = SubscriptionRunner(store, db, Subscription("effects", handle, setup=lambda tx: tx.execute(EFFECTS)),
                                batch_size=40)
    runner.run_until_caught_up()
    """
)


def test_consumer_killed_mid_batch_applies_every_event_exactly_once_after_restart(paths, tmp_path):
    store_url, db_url = paths
    store = open_store(store_url)
    total = fill(store, streams=10, per_stream=25)
    root = Path(__file__).resolve().parent.parent
    script = tmp_path / "consumer.py"
    script.write_text(CRASHING_CONSUMER)
    for crash_at in (57, 13):  # two crashes, each in the middle of a 40-event batch
        proc = subprocess.run(
            [sys.executable, str(script), store_url, db_url, str(crash_at)],
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 17, proc.stderr
    db = open_database(db_url)
    runner = SubscriptionRunner(store, db, effects_subscription(), batch_size=40)
    assert 0 < runner.checkpoint() < store.head_position()  # the crashes left work behind
    runner.run_until_caught_up()
    rows = effects(db)
    assert len(rows) == total
    assert {times for _, times in rows} == {1}
    assert runner.checkpoint() == store.head_position()
    assert runner.handled_count() == total


def test_restarted_runner_resumes_from_checkpoint_without_replaying(paths):
    store_url, db_url = paths
    store, db = open_store(store_url), open_database(db_url)
    fill(store, streams=3, per_stream=10)
    SubscriptionRunner(store, db, effects_subscription()).run_until_caught_up()
    fill(store, streams=2, per_stream=5)  # streams S0, S1 exist: these go on the end of them
    again = SubscriptionRunner(store, db, effects_subscription())
    assert again.run_until_caught_up() == 10
    assert {times for _, times in effects(db)} == {1}


def test_failing_handler_is_retried_then_parked_and_the_subscription_moves_on(paths):
    store_url, db_url = paths
    store, db = open_store(store_url), open_database(db_url)
    store.append("complaint-A", [NewEvent("Noted", {"n": 1})])
    store.append("complaint-B", [NewEvent("Poison", {"n": 2})])
    store.append("complaint-C", [NewEvent("Noted", {"n": 3})])
    attempts: list[int] = []

    def handle(event: RecordedEvent, tx: Tx) -> None:
        record_effect(event, tx)
        if event.type == "Poison":
            attempts.append(event.position)
            raise ValueError("cannot project this")

    runner = SubscriptionRunner(store, db, effects_subscription(handle), max_attempts=3, backoff=0.001)
    runner.run_until_caught_up()
    poison = store.read_stream("complaint-B")[0]
    assert attempts == [poison.position] * 3
    parked = runner.parked()
    assert [(p.stream, p.version, p.attempts) for p in parked] == [("complaint-B", 0, 3)]
    assert "cannot project this" in parked[0].error
    # the failed attempts left nothing behind; the events around it took effect once
    assert [pos for pos, _ in effects(db)] == [e.position for e in store.read_all() if e.type == "Noted"]
    assert runner.checkpoint() == store.head_position()


def test_parked_event_replays_once_the_cause_is_fixed(paths):
    store_url, db_url = paths
    store, db = open_store(store_url), open_database(db_url)
    store.append("complaint-A", [NewEvent("Poison", {})])
    broken = {"yes": True}

    def handle(event: RecordedEvent, tx: Tx) -> None:
        if broken["yes"]:
            raise RuntimeError("read model column missing")
        record_effect(event, tx)

    runner = SubscriptionRunner(store, db, effects_subscription(handle), max_attempts=2, backoff=0.001)
    runner.run_until_caught_up()
    [parked] = runner.parked()
    broken["yes"] = False
    runner.replay_parked(parked.position)
    assert effects(db) == [(parked.position, 1)]
    assert runner.parked() == []
    with pytest.raises(LookupError):
        runner.replay_parked(parked.position)  # a replayed event is not parked any more


def test_running_subscriber_wakes_for_events_appended_later(paths):
    store_url, db_url = paths
    store, db = open_store(store_url), open_database(db_url)
    done = threading.Event()
    seen: list[int] = []

    def handle(event: RecordedEvent, tx: Tx) -> None:
        record_effect(event, tx)
        seen.append(event.position)
        if len(seen) == 30:
            done.set()

    runner = SubscriptionRunner(store, db, effects_subscription(handle), idle_wait=30.0)
    runner.start()
    try:
        for i in range(30):
            store.append(f"complaint-W{i % 4}", [NewEvent("Noted", {"i": i})])
        assert done.wait(20), f"subscriber saw {len(seen)} of 30 events"
    finally:
        runner.stop()
    assert seen == sorted(seen)
    assert runner.failure is None
    assert {times for _, times in effects(db)} == {1}


@contextmanager
def locked(path: Path) -> Iterator[Callable[[], None]]:
    """Another connection holds the write lock of the SQLite file at `path` until the call it yields (or the end)."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield lambda: holder.execute("ROLLBACK") if holder.in_transaction else None
    finally:
        holder.close()


def writing_to(path: Path, attempts: list[int]) -> Callable[[RecordedEvent, Tx], None]:
    """A handler that also writes to the SQLite file at `path` (as a handler calling out to another database would),
    not waiting for its lock: while another connection holds it, a real "database is locked"."""

    def handle(event: RecordedEvent, tx: Tx) -> None:
        attempts.append(event.position)
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        finally:
            other.close()
        record_effect(event, tx)

    return handle


def test_a_handler_that_finds_a_database_locked_is_tried_again_until_it_is_free_and_nothing_is_parked(tmp_path):
    store, db = open_store(f"sqlite:///{tmp_path}/events.db"), open_database(f"sqlite:///{tmp_path}/readmodels.db")
    store.append("complaint-A", [NewEvent("Noted", {})])
    attempts: list[int] = []
    runner = SubscriptionRunner(store, db, effects_subscription(writing_to(tmp_path / "other.db", attempts)),
                                max_attempts=3, backoff=0.001, idle_wait=0.2)
    with locked(tmp_path / "other.db") as release:
        runner.start()
        try:
            wait_until(lambda: len(attempts) > 3 or bool(runner.parked()))
            assert runner.parked() == []  # a lock not granted is not the event's fault
            assert isinstance(runner.failure, sqlite3.OperationalError)
            release()
            wait_until(lambda: bool(effects(db)))
            wait_until(lambda: runner.failure is None)
        finally:
            runner.stop()
    assert effects(db) == [(store.read_stream("complaint-A")[0].position, 1)]
    assert runner.checkpoint() == store.head_position()
    assert runner.parked() == []


def test_a_handler_whose_sql_is_wrong_still_has_its_event_parked(paths):
    store_url, db_url = paths
    store, db = open_store(store_url), open_database(db_url)
    store.append("complaint-A", [NewEvent("Noted", {})])

    def handle(event: RecordedEvent, tx: Tx) -> None:
        tx.execute("UPDATE no_such_table SET n = 1")

    runner = SubscriptionRunner(store, db, effects_subscription(handle), max_attempts=2, backoff=0.001)
    runner.run_until_caught_up()
    [parked] = runner.parked()
    assert "no_such_table" in parked.error
    assert runner.checkpoint() == store.head_position()


@pytest.mark.postgres
def test_a_running_subscription_carries_on_after_its_database_connections_are_terminated(postgres_url):
    tag = f"lapor_test_{uuid.uuid4().hex[:12]}"  # only this test's connections are terminated: others share the server
    ours = f"{postgres_url}&application_name={tag}"
    store, db = open_store(ours), open_database(ours)
    writer, reader = open_store(postgres_url), open_database(postgres_url)
    runner = SubscriptionRunner(store, db, effects_subscription(), idle_wait=0.2)
    runner.start()
    try:
        writer.append("complaint-K", [NewEvent("Noted", {"n": 0})])
        wait_until(lambda: len(effects(reader)) == 1)
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            [terminated] = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s", (tag,)
            ).fetchone()
        assert terminated >= 2  # the store's and the read models' pooled connections at least
        for n in range(1, 4):
            writer.append("complaint-K", [NewEvent("Noted", {"n": n})])
        wait_until(lambda: len(effects(reader)) == 4 or (runner._thread is not None and not runner._thread.is_alive()))
        assert len(effects(reader)) == 4, f"the subscription stopped: {runner.failure!r}"
        wait_until(lambda: runner.failure is None)
        assert {times for _, times in effects(reader)} == {1}
        assert runner.checkpoint() == writer.head_position()
    finally:
        runner.stop()
        for opened in (store, db, writer, reader):
            opened.close()


def test_category_filter_skips_other_streams_and_reports_no_lag(paths):
    store_url, db_url = paths
    store, db = open_store(store_url), open_database(db_url)
    store.append("complaint-A", [NewEvent("Noted", {})])
    store.append("directory-pemda", [NewEvent("AgencyRegistered", {})])
    runner = SubscriptionRunner(store, db, effects_subscription())
    runner.run_until_caught_up()
    assert [pos for pos, _ in effects(db)] == [store.read_stream("complaint-A")[0].position]
    assert runner.lag() == 0
    assert runner.caught_up()


def test_while_events_keep_coming_a_runner_handles_them_together(paths):
    store_url, db_url = paths
    store, db = open_store(store_url), open_database(db_url)
    batches: list[list[int]] = []
    first_seen, all_seen = threading.Event(), threading.Event()

    def handle_batch(events, tx: Tx) -> None:
        for event in events:
            record_effect(event, tx)
        batches.append([event.position for event in events])
        first_seen.set()
        if sum(map(len, batches)) == 10:
            all_seen.set()

    subscription = Subscription(
        "effects", record_effect, setup=lambda tx: tx.execute(EFFECTS), handle_batch=handle_batch
    )
    # The gather is far longer than the nine appends below take, so they land within it.
    runner = SubscriptionRunner(store, db, subscription, idle_wait=30.0, gather=3.0)
    runner.start()
    try:
        store.append("complaint-G0", [NewEvent("Noted", {"i": 0})])
        assert first_seen.wait(20), "the first event after a quiet spell was not handled"
        for i in range(1, 10):
            store.append(f"complaint-G{i % 3}", [NewEvent("Noted", {"i": i})])
        assert all_seen.wait(30), f"handled {sum(map(len, batches))} of 10 events"
    finally:
        runner.stop()
    assert [len(batch) for batch in batches] == [1, 9]  # not nine transactions of one
    assert {times for _, times in effects(db)} == {1}


# -- a new version of a projection -------------------------------------------------------------------------------

OLD_CHECKPOINTS = (  # the checkpoint table as it was before projections had versions
    "CREATE TABLE subscription_checkpoints (name TEXT PRIMARY KEY, position BIGINT NOT NULL, handled BIGINT NOT NULL,"
    " updated_at TEXT NOT NULL)"
)


def counting(version: int, *, poison: bool = False) -> Subscription:
    """Version 1 counts every event of a stream; version 2 only the Noted ones, in a table with another column and
    an index on it (which the old table cannot take)."""

    def count_all(event: RecordedEvent, tx: Tx) -> None:
        if poison and event.type == "Poison":
            raise ValueError("version 1 cannot project this")
        tx.execute(
            "INSERT INTO counted (stream, n) VALUES (?, 1) ON CONFLICT (stream) DO UPDATE SET n = counted.n + 1",
            (event.stream,),
        )

    def count_noted(event: RecordedEvent, tx: Tx) -> None:
        if event.type == "Noted":
            tx.execute(
                "INSERT INTO counted (stream, n, last_type) VALUES (?, 1, ?) "
                "ON CONFLICT (stream) DO UPDATE SET n = counted.n + 1, last_type = excluded.last_type",
                (event.stream, event.type),
            )

    columns = "stream TEXT PRIMARY KEY, n INTEGER NOT NULL" + (", last_type TEXT" if version == 2 else "")

    def setup(tx: Tx) -> None:
        tx.execute(f"CREATE TABLE IF NOT EXISTS counted ({columns})")
        if version == 2:
            tx.execute("CREATE INDEX IF NOT EXISTS counted_by_type ON counted (last_type)")

    return Subscription(
        "counting", count_all if version == 1 else count_noted, version=version, tables=("counted",), setup=setup,
    )


def counted(db) -> dict[str, int]:
    with db.read() as tx:
        return dict(tx.fetchall("SELECT stream, n FROM counted"))


def test_a_new_version_of_a_projection_reads_the_log_again_into_fresh_tables(paths):
    store_url, db_url = paths
    store, db = open_store(store_url), open_database(db_url)
    with db.transaction() as tx:  # a read-model database from before projections had versions
        tx.execute(OLD_CHECKPOINTS)
    fill(store, streams=3, per_stream=4)
    store.append("complaint-S0", [NewEvent("Poison", {}), NewEvent("Other", {})])
    old = SubscriptionRunner(store, db, counting(1, poison=True), max_attempts=1)
    old.run_until_caught_up()
    assert counted(db) == {"complaint-S0": 5, "complaint-S1": 4, "complaint-S2": 4}
    assert [p.type for p in old.parked()] == ["Poison"]

    # The same version again (an old checkpoint without a version is version 1): nothing is read again.
    assert SubscriptionRunner(store, db, counting(1)).run_until_caught_up() == 0
    assert counted(db)["complaint-S0"] == 5

    new = SubscriptionRunner(store, db, counting(2))
    assert new.checkpoint() == 0
    assert new.parked() == []  # the old logic's failures went with its rows
    assert new.run_until_caught_up() == 14  # every event, again
    assert counted(db) == {"complaint-S0": 4, "complaint-S1": 4, "complaint-S2": 4}
    assert new.saved() == (store.head_position(), 14)
    with db.read() as tx:
        assert {last for (last,) in tx.fetchall("SELECT last_type FROM counted")} == {"Noted"}

    # Started again, version 2 carries on where it is.
    store.append("complaint-S1", [NewEvent("Noted", {})])
    assert SubscriptionRunner(store, db, counting(2)).run_until_caught_up() == 1
    assert counted(db)["complaint-S1"] == 5


def test_only_a_projection_that_names_its_tables_can_have_another_version():
    with pytest.raises(ValueError, match="names its tables"):
        Subscription("counting", record_effect, version=2)
    with pytest.raises(ValueError, match="names its tables"):
        Subscription("reacting", record_effect, projection=False, version=2, tables=("effects",))


def test_a_reaction_whose_append_finds_no_store_writer_is_tried_again_until_it_returns_and_nothing_is_parked(
    tmp_path, monkeypatch
):
    """A reaction appends to the store (followup's answer to the reporter's feedback). The store's writer process
    gone for a moment (restarting) raised StoreError, which was taken for the handler refusing the event: after
    five quick tries it was parked and the reaction never happened (the report never closed or reopened)."""
    monkeypatch.setattr(writer_module, "WRITER_RETURN", 0.05)  # each try gives up at once
    path = tmp_path / "events.db"
    writer = writer_module.WriterProcess(path)
    store, db = open_store(writer.url), open_database(f"sqlite:///{tmp_path}/readmodels.db")
    asked = store.append("complaint-A", [NewEvent("Asked", {})])
    writer.kill()

    def react(event: RecordedEvent, tx: Tx) -> None:
        if event.type == "Asked":
            answer = NewEvent("Answered", {}, event_id=caused_event_id(f"{event.event_id}:answered"))
            store.append(event.stream, [answer], expected_version=event.version)

    reaction = Subscription("reactions", react, projection=False)
    runner = SubscriptionRunner(store, db, reaction, max_attempts=2, backoff=0.001, idle_wait=0.2)
    runner.start()
    try:
        wait_until(lambda: runner.failure is not None or bool(runner.parked()))
        assert runner.parked() == []  # a store that cannot take an append just now is not the event's fault
        assert runner.checkpoint() < asked.last_position
        writer = writer_module.WriterProcess(path)
        wait_until(lambda: len(store.read_stream("complaint-A")) == 2)
        wait_until(lambda: runner.checkpoint() == store.head_position() and runner.failure is None)
    finally:
        runner.stop()
        writer.stop()
    assert [e.type for e in store.read_stream("complaint-A")] == ["Asked", "Answered"]
    assert runner.parked() == []


# -- an event changed in the database past reading -----------------------------------------------------------------

# What makes a stored field unreadable, per backend: SQLite keeps whatever it is given; PostgreSQL's `json` keeps a
# number past a double and a lone surrogate (which orjson refuses), and `timestamptz` keeps 'infinity' (which
# Python's datetime cannot). Metadata is decoded only when a handler asks for it (`RecordedEvent.metadata`).
UNREADABLE = {
    "sqlite": {"data": "X'7b62756b616e206a736f6e'", "recorded_at": "'kemarin sore'", "metadata": "X'ff'"},
    "postgres": {"data": """'{"n": 1e400}'::json""", "recorded_at": "'infinity'::timestamptz",
                 "metadata": """'{"actor": "\\ud800"}'::json"""},
}


def make_unreadable(store_url: str, stream: str, version: int, column: str) -> None:
    """Change one event's `column` with plain SQL on the store's database, past what a read can decode."""
    statement = f"UPDATE events SET {column} = {{}} WHERE stream = '{stream}' AND version = {version}"
    if store_url.startswith("sqlite:///"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as conn:
            assert conn.execute(statement.format(UNREADABLE["sqlite"][column])).rowcount == 1
        conn.close()
        return
    with psycopg.connect(store_url, autocommit=True) as pg:
        assert pg.execute(statement.format(UNREADABLE["postgres"][column])).rowcount == 1


@pytest.mark.parametrize("column", ["data", "recorded_at"])
def test_an_event_changed_in_the_database_past_reading_is_parked_and_the_subscription_goes_on(paths, column: str):
    """Until session 29 the read of the batch holding it failed, and the runner tried again from its checkpoint for
    ever: every projection stopped there. The events before it are handled, it is parked with the reason, and the
    events after it are handled; a later event of its stream is parked too (folding it needs the unreadable one)
    here only if the handler needs it, which this one does not."""
    store_url, db_url = paths
    store, db = open_store(store_url), open_database(db_url)
    store.append("complaint-A", [NewEvent("Noted", {"n": n}) for n in range(3)])
    store.append("complaint-B", [NewEvent("Noted", {"n": 0})])
    a0, a1, a2, b0 = (event.position for event in store.read_all(0, None, 10))
    make_unreadable(store_url, "complaint-A", 1, column)
    with pytest.raises(UnreadableEvent, match=r"complaint-A version 1 .* cannot be read"):  # a read of the batch
        store.read_all(0, "complaint", 10)
    runner = SubscriptionRunner(store, db, effects_subscription(), idle_wait=0.2)
    runner.start()
    try:
        c0 = store.append("complaint-C", [NewEvent("Noted", {"n": 0})]).last_position
        wait_until(lambda: runner.caught_up() or runner.failure is not None)
        assert runner.failure is None
    finally:
        runner.stop()
        store.close()
    [parked] = runner.parked()
    assert (parked.stream, parked.version, parked.position, parked.type) == ("complaint-A", 1, a1, "Noted")
    assert parked.error.startswith(f"cannot be read: its {column} does not decode (")  # the field, not its content
    assert [position for position, _ in effects(db)] == [a0, a2, b0, c0]  # all but the unreadable one
    assert {times for _, times in effects(db)} == {1}


@pytest.mark.postgres
def test_a_read_that_fails_for_a_while_is_tried_again_and_parks_nothing_even_beside_an_unreadable_event(
    postgres_url: str,
):
    """A read the database refuses just now (here a lock on the events table outlasting `lock_timeout`) is not the
    event's fault: the runner tries again, parking nothing, and once the lock goes it parks only the unreadable event.
    (On SQLite a reader in WAL mode is not blocked by other connections' locks.)"""
    store_url = postgres_url.replace("options=", "options=-clock_timeout%3D100%20", 1)
    store, db = open_store(store_url), open_database(postgres_url)
    store.append("complaint-A", [NewEvent("Noted", {"n": n}) for n in range(2)])
    a1 = store.head_position()
    make_unreadable(postgres_url, "complaint-A", 0, "recorded_at")
    runner = SubscriptionRunner(store, db, effects_subscription(), idle_wait=0.2)
    with psycopg.connect(postgres_url) as holder:
        holder.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        runner.start()
        try:
            wait_until(lambda: runner.failure is not None)
            assert isinstance(runner.failure, LockWaitExpired)  # the server's LockNotAvailable, named (session 31)
            assert isinstance(runner.failure.__cause__, psycopg.errors.LockNotAvailable)
            assert runner.parked() == []
            holder.rollback()
            wait_until(lambda: runner.caught_up() and runner.failure is None)
        finally:
            runner.stop()
            store.close()
    [parked] = runner.parked()
    assert (parked.stream, parked.version) == ("complaint-A", 0)
    assert parked.error == "cannot be read: its recorded_at does not decode (ValueError)"
    assert [position for position, _ in effects(db)] == [a1]
