"""Read-model databases: a transaction is durable unless it holds only what the log can rebuild, on SQLite and on
PostgreSQL, and a subscription's batches are the non-durable kind."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

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
