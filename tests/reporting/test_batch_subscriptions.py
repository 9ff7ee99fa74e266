"""Batch handlers (`Subscription.handle_batch`, which the reporting projections use): a batch takes effect with its
checkpoint at once, and a batch that fails is handled again one event at a time, so only the bad event is parked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lapor.db import Tx, open_database
from lapor.store import NewEvent, RecordedEvent, open_store
from lapor.subscriptions import Subscription, SubscriptionRunner

TABLE = "CREATE TABLE IF NOT EXISTS seen (position BIGINT PRIMARY KEY, times INTEGER NOT NULL)"


def see(event: RecordedEvent, tx: Tx) -> None:
    if event.data.get("poison"):
        raise ValueError("cannot read this one")
    tx.execute("INSERT INTO seen (position, times) VALUES (?, 1) ON CONFLICT (position) DO UPDATE SET "
               "times = seen.times + 1", (event.position,))


def test_a_failing_batch_is_retried_event_by_event_and_only_the_bad_event_is_parked(tmp_path: Path):
    store = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    db = open_database(f"sqlite:///{tmp_path / 'readmodels.db'}")
    for number in range(10):
        store.append(f"complaint-B{number}", [NewEvent("Noted", {"poison": number == 6})])
    batches: list[int] = []

    def see_all(events: Sequence[RecordedEvent], tx: Tx) -> None:
        batches.append(len(events))
        for event in events:
            see(event, tx)

    subscription = Subscription("batched", see, setup=lambda tx: tx.execute(TABLE), handle_batch=see_all)
    runner = SubscriptionRunner(store, db, subscription, batch_size=4, max_attempts=2, backoff=0.0)
    assert runner.run_until_caught_up() == 10
    with db.read() as tx:
        seen = tx.fetchall("SELECT position, times FROM seen ORDER BY position")
    assert seen == [(p, 1) for p in range(1, 11) if p != 7]  # each once, the poisoned one never
    assert [event.position for event in runner.parked()] == [7]
    assert batches[:2] == [4, 4]  # whole batches while they go through
    assert runner.checkpoint() == 10
    store.close()
    db.close()


def test_feed_handles_only_events_of_the_category_past_the_checkpoint(tmp_path: Path):
    store = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    db = open_database(f"sqlite:///{tmp_path / 'readmodels.db'}")
    store.append("complaint-F1", [NewEvent("Noted", {})])
    store.append("directory-F2", [NewEvent("Noted", {})])
    store.append("complaint-F3", [NewEvent("Noted", {})])
    runner = SubscriptionRunner(store, db, Subscription("fed", see, setup=lambda tx: tx.execute(TABLE)))
    events = store.read_all(0, None, 10)
    assert runner.feed(events[:1]) == 1
    assert runner.feed(events) == 1  # the first again is past, the directory event is not its category
    assert runner.checkpoint() == 3
    with db.read() as tx:
        assert tx.fetchall("SELECT position, times FROM seen ORDER BY position") == [(1, 1), (3, 1)]
    store.close()
    db.close()
