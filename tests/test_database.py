"""Read-model databases: a transaction is durable unless it holds only what the log can rebuild, on SQLite and on
PostgreSQL, and a subscription's batches are the non-durable kind."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from lapor.db import Database, open_database
from lapor.store import NewEvent, open_store
from lapor.subscriptions import Subscription, SubscriptionRunner

# What each dialect reports inside a transaction that flushes at commit, and inside one that does not.
FLUSHING = {"sqlite": ("PRAGMA synchronous", 2), "postgresql": ("SHOW synchronous_commit", "on")}
NOT_FLUSHING = {"sqlite": 1, "postgresql": "off"}


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = (
        f"sqlite:///{tmp_path / 'readmodels.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    opened = open_database(url)
    yield opened
    opened.close()


def flush_setting(db: Database, *, durable: bool | None = None) -> object:
    query, _ = FLUSHING[db.dialect]
    chosen = db.transaction() if durable is None else db.transaction(durable=durable)
    with chosen as tx:
        return tx.scalar(query)


def test_a_transaction_is_durable_unless_told_otherwise(db):
    durable = FLUSHING[db.dialect][1]
    assert flush_setting(db) == durable
    assert flush_setting(db, durable=False) == NOT_FLUSHING[db.dialect]
    # The setting belongs to that one transaction: the next one flushes again.
    assert flush_setting(db) == durable


def test_a_subscription_commits_its_batches_without_waiting_for_the_disk(db, tmp_path):
    seen: list[object] = []
    query, _ = FLUSHING[db.dialect]

    def handle(event, tx) -> None:
        seen.append(tx.scalar(query))

    with open_store(f"sqlite:///{tmp_path / 'events.db'}") as store:
        store.append("complaint-D1", [NewEvent("Noted", {})])
        SubscriptionRunner(store, db, Subscription("flush-probe", handle)).run_until_caught_up()
    assert seen == [NOT_FLUSHING[db.dialect]]
    assert flush_setting(db) == FLUSHING[db.dialect][1]  # and the services' own writes still flush


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts this process's open files in /proc")
def test_reading_from_threads_that_come_and_go_leaves_no_connections_open(db):
    """A web server's worker threads end when idle and new ones start: their read connections must not pile up."""
    with db.transaction() as tx:
        tx.execute("CREATE TABLE IF NOT EXISTS probe (n INTEGER)")
        tx.execute("INSERT INTO probe (n) VALUES (1)")
    seen: list[object] = []

    def read_in_a_thread_of_its_own() -> None:
        def read() -> None:
            with db.read() as tx:
                seen.append(tx.scalar("SELECT n FROM probe"))

        thread = threading.Thread(target=read)
        thread.start()
        thread.join()

    read_in_a_thread_of_its_own()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(100):
        read_in_a_thread_of_its_own()
    assert len(os.listdir("/proc/self/fd")) - before < 20
    assert seen == [1] * 101


@pytest.mark.postgres
def test_pooled_connections_the_server_ended_are_replaced_not_failed(postgres_url):
    """A PostgreSQL restart (or an administrator's pg_terminate_backend) ends every connection the pools hold. Each
    dead one was handed to the next request, which failed with "the connection is closed" (a 500 or a retry), until
    every pooled connection had failed once. The pools check a connection before handing it out."""
    name = f"lapor-test-{uuid.uuid4().hex[:12]}"  # this test's connections only: others share the server
    url = f"{postgres_url}&application_name={name}"
    with open_store(url) as store:
        db = open_database(url)
        try:
            store.append("complaint-T1", [NewEvent("Noted", {"n": 1})])
            with db.transaction() as tx:
                tx.execute("CREATE TABLE IF NOT EXISTS pool_probe (n INTEGER)")
            assert [e.version for e in store.read_stream("complaint-T1")] == [0]
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                ended = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s", (name,)
                ).fetchone()
            assert ended is not None
            assert ended[0] >= 2  # the store's pool and the database's at least
            for _ in range(3):  # more reads than either pool held connections
                assert [e.version for e in store.read_stream("complaint-T1")] == [0]
                with db.read() as tx:
                    assert tx.scalar("SELECT count(*) FROM pool_probe") == 0
        finally:
            db.close()
