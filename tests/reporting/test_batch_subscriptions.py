"""Batch handlers (`Subscription.handle_batch`, which the reporting projections use): a batch takes effect with its
checkpoint at once, and a batch that fails is handled again one event at a time, so only the bad event is parked.
Rows held across batches (`Subscription.holding`) are written with their checkpoint, and dropped and done again
the careful way when a batch fails."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from lapor.db import Database, Tx, open_database
from lapor.observability import Metrics
from lapor.store import EventStore, NewEvent, RecordedEvent, open_store
from lapor.subscriptions import Subscription, SubscriptionRunner, holding_subscription

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


# -- rows held across batches (`Subscription.holding`, a runner with `hold`: how `lapor rebuild` runs) ---------

COUNTS = "CREATE TABLE IF NOT EXISTS counts (stream TEXT PRIMARY KEY, n INTEGER NOT NULL)"


class Counts:
    """Events per stream, held in memory: loaded from the table once, written by `write`. A poisoned event raises
    after the events before it in the batch were counted, as a projection failing halfway would."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.changed: set[str] = set()
        self.unwritable = False  # an event whose row the database refuses (only when written)

    def apply(self, events: Sequence[RecordedEvent], tx: Tx) -> None:
        for event in events:
            if event.data.get("poison"):
                raise ValueError("cannot read this one")
            if event.stream not in self.counts:
                self.counts[event.stream] = tx.scalar("SELECT n FROM counts WHERE stream = ?", (event.stream,)) or 0
            self.counts[event.stream] += 1
            self.changed.add(event.stream)
            self.unwritable = self.unwritable or bool(event.data.get("unwritable"))

    def held(self) -> int:
        return len(self.counts)

    def write(self, tx: Tx) -> None:
        if self.unwritable:
            tx.execute("INSERT INTO counts (stream, n) VALUES (?, NULL)", ("unwritable",))  # n is NOT NULL
        tx.executemany("INSERT INTO counts (stream, n) VALUES (?, ?) ON CONFLICT (stream) DO UPDATE SET n = excluded.n",
                       [(stream, self.counts[stream]) for stream in sorted(self.changed)])


def counting(hold: int, store: EventStore, db: Database) -> SubscriptionRunner:
    subscription = holding_subscription("counted", Counts, setup=lambda tx: tx.execute(COUNTS))
    return SubscriptionRunner(store, db, subscription, batch_size=4, max_attempts=1, backoff=0.0, hold=hold)


def counts(db: Database) -> dict[str, int]:
    with db.read() as tx:
        return dict(tx.fetchall("SELECT stream, n FROM counts"))


def stores(
    tmp_path: Path, poisoned: int | None = None, unwritable: int | None = None
) -> tuple[EventStore, Database, list[RecordedEvent]]:
    store = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    db = open_database(f"sqlite:///{tmp_path / 'readmodels.db'}")
    for number in range(12):  # three streams, four events each
        data = {"poison": number == poisoned, "unwritable": number == unwritable}
        store.append(f"complaint-H{number % 3}", [NewEvent("Noted", data)])
    return store, db, store.read_all(0, None, 100)


def test_held_rows_are_written_with_the_checkpoint_only_when_hold_is_reached_or_flushed(tmp_path: Path):
    store, db, events = stores(tmp_path)
    runner = counting(3, store, db)
    assert runner.feed(events[:2], 2) == 2
    assert (counts(db), runner.checkpoint(), runner.handled_count()) == ({}, 0, 0)  # two streams held, not written
    runner.feed(events[2:5], 5)  # the third stream: hold reached
    assert (counts(db), runner.checkpoint(), runner.handled_count()) == (
        {"complaint-H0": 2, "complaint-H1": 2, "complaint-H2": 1}, 5, 5)
    runner.feed(events[5:6], 6)
    assert counts(db)["complaint-H2"] == 1  # held again, after loading what was written
    runner.feed(events[6:], 12)
    assert counts(db) == {"complaint-H0": 4, "complaint-H1": 4, "complaint-H2": 4}
    assert (runner.checkpoint(), runner.handled_count()) == (12, 12)
    runner.feed([], 14)  # past events of other categories: the position moves, nothing is held
    assert runner.checkpoint() == 12
    runner.flush()
    assert (runner.checkpoint(), runner.handled_count()) == (14, 12)
    store.close()
    db.close()


def test_a_metrics_scrape_reports_the_committed_checkpoint_and_the_lag_from_it(tmp_path: Path):
    """The gauges of one scrape agree: while rows are held (as in the moment after any commit, before the runner
    moves its own position) the lag is the head less the *committed* checkpoint, not the runner's position."""
    store, db, events = stores(tmp_path)
    runner = counting(100, store, db)
    metrics = Metrics()
    metrics.watch(store, lambda: [runner])

    def scrape() -> dict[str, float | None]:
        return {
            name: metrics.registry.get_sample_value(f"lapor_subscription_{name}", {"consumer": "counted"})
            for name in ("lag_positions", "checkpoint_position", "handled_events")
        }

    runner.feed(events[:5], 5)  # held, not written
    head = metrics.registry.get_sample_value("lapor_store_head_position", {})
    assert head == 12
    assert scrape() == {"lag_positions": 12, "checkpoint_position": 0, "handled_events": 0}
    runner.flush()
    assert scrape() == {"lag_positions": 7, "checkpoint_position": 5, "handled_events": 5}
    store.close()
    db.close()


@pytest.mark.parametrize(
    ("bad", "cuts", "expected", "parked"),
    [
        # A held batch fails halfway: it counts H2 (position 9), then fails on position 10, H0's fourth event.
        ({"poisoned": 9}, [4, 8, 12], {"complaint-H0": 3, "complaint-H1": 4, "complaint-H2": 4}, 10),
        # The held rows cannot be written: position 5, H1's second event, makes the database refuse them.
        ({"unwritable": 4}, [6, 12], {"complaint-H0": 4, "complaint-H1": 3, "complaint-H2": 4}, 5),
    ],
    ids=["a batch fails", "the write fails"],
)
def test_held_rows_that_fail_are_dropped_and_done_again_carefully_from_the_written_checkpoint(
    tmp_path: Path, bad: dict[str, int], cuts: list[int], expected: dict[str, int], parked: int
):
    store, db, events = stores(tmp_path, **bad)
    runner = counting(100, store, db)
    start = 0
    for cut in cuts[:-1]:
        runner.feed(events[start:cut], cut)
        start = cut
    assert counts(db) == {}  # held
    runner.feed(events[start:], cuts[-1])
    runner.flush()
    # Every event took effect once (those held before were dropped and read again), but the bad one.
    assert counts(db) == expected
    assert [event.position for event in runner.parked()] == [parked]
    assert (runner.checkpoint(), runner.handled_count()) == (12, 11)
    runner.flush()
    assert runner.handled_count() == 11
    store.close()
    db.close()
