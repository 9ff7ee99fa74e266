"""Leases: two runners of one subscription on one read-model database, in separate processes, never both handle
events; the one standing by takes over when the holder stops, dies or loses its connection, from the committed
checkpoint, with nothing lost or handled twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from lapor import app as app_module
from lapor.app import _RunningLoop
from lapor.context import BackgroundLoop
from lapor.db import Database, Tx, open_database
from lapor.observability import check_readiness
from lapor.store import EventStore, RecordedEvent, open_store
from lapor.subscriptions import CHECKPOINT_SCHEMA, Subscription, SubscriptionRunner
from tests.conftest import fresh_schema
from tests.platform._servers import wait_until
from tests.test_subscriptions import EFFECTS, fill, record_effect

ROOT = Path(__file__).resolve().parents[1]
HANDLED_BY = "CREATE TABLE IF NOT EXISTS handled_by (position BIGINT NOT NULL, pid INTEGER NOT NULL)"


def record_effect_and_handler(event: RecordedEvent, tx: Tx) -> None:
    """`record_effect` (a second delivery shows as times = 2), and which process handled the event."""
    record_effect(event, tx)
    tx.execute("INSERT INTO handled_by (position, pid) VALUES (?, ?)", (event.position, os.getpid()))


def setup_tables(tx: Tx) -> None:
    tx.execute(EFFECTS)
    tx.execute(HANDLED_BY)


CONSUMER = textwrap.dedent(
    """
    import logging, signal, sys, threading
    from lapor.db import open_database
    from lapor.store import open_store
    from lapor.subscriptions import Subscription, SubscriptionRunner
    from tests.test_lease import record_effect_and_handler, setup_tables

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    store, db = open_store(sys.argv[1]), open_database(sys.argv[2])
    subscription = Subscription("effects", record_effect_and_handler, setup=setup_tables)
    runner = SubscriptionRunner(store, db, subscription, idle_wait=0.1)
    runner.start()
    print("runner started", file=sys.stderr, flush=True)
    stop.wait()
    runner.stop()
    db.close()
    store.close()
    """
)


@dataclass
class Consumer:
    process: subprocess.Popen
    stderr: Path

    def logs(self) -> str:
        return self.stderr.read_text()

    @property
    def holds(self) -> bool:
        return "took its lease" in self.logs()

    @property
    def stands_by(self) -> bool:
        return "standing by" in self.logs()


@contextmanager
def consumers(tmp_path: Path, store_url: str, db_url: str, count: int) -> Iterator[list[Consumer]]:
    started = []
    try:
        for n in range(count):
            stderr = tmp_path / f"consumer-{n}-{len(list(tmp_path.glob('consumer-*')))}.err"
            with stderr.open("w") as err:
                process = subprocess.Popen(
                    [sys.executable, "-c", CONSUMER, store_url, db_url], cwd=ROOT, stderr=err,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )
            started.append(Consumer(process, stderr))
        yield started
    finally:
        for consumer in started:
            if consumer.process.poll() is None:
                consumer.process.kill()
            consumer.process.wait()


def handled(db: Database) -> tuple[int, int, set[int]]:
    """How many events were handled, how many of them more than once, and by which processes."""
    with db.read() as tx:
        count, twice = tx.fetchone("SELECT count(*), coalesce(sum(CASE WHEN times > 1 THEN 1 ELSE 0 END), 0) "
                                   "FROM effects") or (0, 0)
        pids = {pid for (pid,) in tx.fetchall("SELECT DISTINCT pid FROM handled_by")}
    return int(count), int(twice), pids


def open_both(store_url: str, db_url: str) -> tuple[EventStore, Database]:
    """The store and the read models, with the consumers' tables there before they start."""
    store, db = open_store(store_url), open_database(db_url)
    db.executescript(CHECKPOINT_SCHEMA)
    with db.transaction() as tx:
        setup_tables(tx)
    return store, db


def handlers_after(db: Database, position: int) -> set[int]:
    with db.read() as tx:
        return {pid for (pid,) in tx.fetchall("SELECT DISTINCT pid FROM handled_by WHERE position > ?", (position,))}


def test_two_processes_of_one_subscription_handle_each_event_once_and_the_standby_takes_over(tmp_path, paths):
    store_url, db_url = paths
    store, db = open_both(store_url, db_url)
    try:
        total = fill(store, 4, 25)
        with consumers(tmp_path, store_url, db_url, 2) as pair:
            wait_until(lambda: all("runner started" in c.logs() for c in pair), describe="both runners started")
            wait_until(lambda: handled(db)[0] == total, describe="the first 100 events handled")
            total += fill(store, 4, 25)  # while both run
            wait_until(lambda: handled(db)[0] == total, describe="200 events handled")
            count, twice, pids = handled(db)
            assert (count, twice) == (total, 0)
            wait_until(lambda: all(c.holds or c.stands_by for c in pair), describe="both consumers decided")
            [holder] = [c for c in pair if c.holds]
            [standby] = [c for c in pair if not c.holds]
            assert pids == {holder.process.pid}  # the standby handled nothing

            # The holder dies (no clean stop): the kernel or the server releases its lease.
            holder.process.kill()
            holder.process.wait()
            before = store.head_position()
            total += fill(store, 4, 25)
            wait_until(lambda: handled(db)[0] == total, describe="the standby took over")
            assert handled(db)[:2] == (total, 0)
            assert handlers_after(db, before) == {standby.process.pid}
            assert "took its lease" in standby.logs()
            assert standby.logs().count("standing by") == 1  # logged once, not at every try

            # A third stands by; the second stops cleanly (releasing its lease) and the third carries on.
            with consumers(tmp_path, store_url, db_url, 1) as [third]:
                wait_until(lambda: third.stands_by, describe="the third standing by")
                standby.process.send_signal(signal.SIGTERM)
                assert standby.process.wait(timeout=30) == 0
                before = store.head_position()
                total += fill(store, 4, 25)
                wait_until(lambda: handled(db)[0] == total, describe="the third took over")
                assert handled(db)[:2] == (total, 0)
                assert handlers_after(db, before) == {third.process.pid}
        with db.read() as tx:
            assert tx.scalar("SELECT position FROM subscription_checkpoints WHERE name = 'effects'") == (
                store.head_position()
            )
    finally:
        db.close()
        store.close()


def backend_pid(url: str, query: str, params: tuple[object, ...]) -> int | None:
    """The server process (backend pid) in the first column of `query`'s first row, or None without a row."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
    return None if row is None else int(row[0])


def lease_holder_pid(url: str, name: str) -> int | None:
    """The server process (backend pid) whose session holds the advisory lock of the lease `name`."""
    from lapor.lease import LEASE_CLASS  # here, so that the other tests run (and fail) on code without leases

    return backend_pid(
        url,
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid = %s "
        "AND objid::bigint = (hashtext(current_schema() || '/' || %s)::bigint & 4294967295)",
        (LEASE_CLASS, name),
    )


def test_a_runner_whose_lease_connection_is_lost_stops_handling_and_the_standby_takes_over(tmp_path, postgres_url):
    store, db = open_both(postgres_url, postgres_url)
    try:
        total = fill(store, 4, 25)
        with consumers(tmp_path, postgres_url, postgres_url, 2) as pair:
            wait_until(lambda: handled(db)[0] == total, describe="100 events handled")
            wait_until(lambda: all(c.holds or c.stands_by for c in pair), describe="both consumers decided")
            [holder] = [c for c in pair if c.holds]
            [standby] = [c for c in pair if not c.holds]
            backend = lease_holder_pid(postgres_url, "effects")
            assert backend is not None
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(%s)", (backend,))
            wait_until(lambda: "lost its lease" in holder.logs(), describe="the holder noticed")
            wait_until(lambda: "took its lease" in standby.logs(), describe="the standby took over")
            before = store.head_position()
            total += fill(store, 4, 25)
            wait_until(lambda: handled(db)[0] == total, describe="200 events handled")
            assert handled(db)[:2] == (total, 0)
            assert handlers_after(db, before) == {standby.process.pid}
            assert holder.process.poll() is None  # still running, standing by
    finally:
        db.close()
        store.close()


def test_a_lease_is_its_databases_own_so_a_rebuilds_fresh_tables_never_wait_for_the_live_ones(
    tmp_path, postgres_server, postgres_url
):
    with fresh_schema(postgres_server) as fresh_url:  # a rebuild's fresh schema beside the live one
        databases = [
            open_database(f"sqlite:///{tmp_path}/readmodels.db"), open_database(f"sqlite:///{tmp_path}/fresh.db"),
            open_database(postgres_url), open_database(fresh_url),
        ]
        try:
            leases = [db.lease("reporting.complaints") for db in databases]
            assert all(lease.acquire() for lease in leases)
            # ... while a second lease of one name on one database is refused until the first is released.
            for db, lease in zip(databases, leases, strict=True):
                second = db.lease("reporting.complaints")
                assert not second.acquire()
                lease.release()
                assert second.acquire()
                second.release()
        finally:
            for db in databases:
                db.close()


def test_a_runner_cannot_commit_events_another_runner_committed_since_it_last_looked(paths):
    """The fence behind the lease: a holder that lost its lease unnoticed (or any runner whose idea of the checkpoint
    is stale) has its transaction rolled back, rows and all, instead of handling the events a second time."""
    store_url, db_url = paths
    store, db = open_store(store_url), open_database(db_url)
    try:
        fill(store, 2, 5)
        subscription = Subscription("effects", record_effect_and_handler, setup=setup_tables)
        late, current = SubscriptionRunner(store, db, subscription), SubscriptionRunner(store, db, subscription)
        assert current.run_until_caught_up() == 10
        # The late runner's first batch is rolled back (CheckpointMoved) and it carries on from the committed
        # checkpoint: nothing left to handle, nothing handled twice.
        assert late.run_until_caught_up() == 0
        assert handled(db)[:2] == (10, 0)
        assert late.checkpoint() == store.head_position()
    finally:
        db.close()
        store.close()


def lease_session(url: str, application_name: str) -> int | None:
    """The backend pid of a session of `application_name` whose last statement tried to take a lease."""
    return backend_pid(
        url,
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND query LIKE %s ORDER BY pid LIMIT 1",
        (application_name, "%pg_try_advisory_lock%"),
    )


@pytest.mark.postgres
def test_a_background_loop_standing_by_outlives_its_lease_connection_lost_and_takes_over_later(postgres_url):
    """A standby's lease connection ended (a server restart, a network blip, an idle-session timeout): its next try
    to take the lease raised, and the loop thread ended for good ("background loop ... stopped" in /readyz), so when
    the holder later stopped, nobody ran routing's deadlines or followup's closings any more."""
    tag = f"lapor_test_{uuid.uuid4().hex[:12]}"  # only this test's sessions are terminated: others share the server
    databases = [open_database(postgres_url), open_database(f"{postgres_url}&application_name={tag}")]
    ticks = {"holder": 0, "standby": 0}

    def ticking(who: str) -> BackgroundLoop:
        return BackgroundLoop.every("test.ticks", 0.05, lambda: ticks.__setitem__(who, ticks[who] + 1))

    holder, standby = (_RunningLoop(ticking(who), db) for who, db in zip(ticks, databases, strict=True))
    try:
        holder.start()
        wait_until(lambda: holder.leased, describe="the holder runs")
        standby.start()
        wait_until(lambda: standby.standby and lease_session(postgres_url, tag) is not None,
                   describe="the standby stands by")
        lost = lease_session(postgres_url, tag)
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (lost,))
        wait_until(lambda: not standby.alive or lease_session(postgres_url, tag) not in (None, lost),
                   describe="the standby tried again")
        assert standby.alive
        assert standby.standby
        holder.stop()
        wait_until(lambda: standby.leased and ticks["standby"] > 0, describe="the standby took over")
    finally:
        holder.stop()
        standby.stop()
        for db in databases:
            db.close()


def test_a_loop_of_every_process_outlives_a_database_that_cannot_be_used_for_a_moment(tmp_path: Path):
    """The live stream's hub runs in every process, under no lease (`exclusive=False`). A read of the store's head
    failing with the server restarting ended its thread for good, as it did a leased loop's until session 26: no
    open feed was woken again, and /readyz said the loop had stopped."""
    db = open_database(f"sqlite:///{tmp_path / 'readmodels.db'}")
    runs = {"count": 0}

    def hub(stop) -> None:
        runs["count"] += 1
        if runs["count"] == 1:
            raise psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly")
        stop.wait()

    loop = _RunningLoop(BackgroundLoop("test.hub", hub, exclusive=False), db)
    try:
        loop.start()
        wait_until(lambda: runs["count"] == 2 or not loop.alive, describe="the loop ran again or stopped")
        assert loop.alive
        assert runs["count"] == 2
    finally:
        loop.stop()
        db.close()


def test_a_loop_waiting_to_try_again_is_not_ready_and_says_why(tmp_path: Path, monkeypatch):
    """While a loop waits out its back-off after a transient failure it does no work (the live stream's hub wakes no
    feed), yet /readyz said ready: subscriptions trying again were listed, loops not."""
    monkeypatch.setattr(app_module, "RETRY_WAIT_MIN", 3600.0)  # it stays in its back-off until stopped
    db = open_database(f"sqlite:///{tmp_path / 'readmodels.db'}")
    failed = threading.Event()

    def hub(stop) -> None:
        failed.set()
        raise psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly")

    loop = _RunningLoop(BackgroundLoop("test.hub", hub, exclusive=False), db)
    with open_store(f"sqlite:///{tmp_path / 'events.db'}") as store:
        try:
            loop.start()
            wait_until(failed.is_set, describe="the loop's first run")
            wait_until(lambda: not check_readiness(store, [], [loop], max_lag=100, wait=0.5).ready, timeout=10,
                       describe="/readyz saying the loop waits to try again")
            report = check_readiness(store, [], [loop], max_lag=100, wait=0.5)
            assert report.retrying == ["background loop test.hub: OperationalError"]  # the log has its words
            assert report.stopped == []
        finally:
            loop.stop()
            db.close()
    assert failed.is_set()
