"""Checkpointed catch-up subscriptions.

A subscription reads the log in position order from its checkpoint and hands each event to its handler
together with a read-model transaction. The handler's writes and the new checkpoint commit in ONE
transaction, so after a crash at any point every event has taken effect exactly once: either its batch
committed (rows and checkpoint) or it did not (neither), and the batch is read again.

When the runner has seen everything it blocks in `store.wait_for_events` (woken by the writer's notify),
not in a polling loop. While events keep coming it reads at most once per `gather` seconds: under load the
events of that moment are handled in one transaction instead of one each (every transaction costs its
statements, its commit and a thread wake-up), and a lone event after a quiet spell is still read at once.
A handler that raises is retried with exponential backoff; after `max_attempts` failures the event is *parked*
— recorded with its error for an operator — and the subscription moves on. `replay_parked` runs a parked
event again once the cause is fixed. An event the store cannot read at all (`UnreadableEvent`: changed in the
database) is parked at once, after the events before it, and the runner goes on. Parking is for events the handler
refuses or the store cannot read, not for a database that cannot be used just now (`transient_failure`: a lost
connection, a lock not granted in time): such an error, in a handler or anywhere else in the loop (reading the log,
committing, parking), is logged, and the loop waits (`backoff`, doubling up to `RETRY_WAIT_MAX`) and carries on
from the committed checkpoint, for as long as it takes; `failure` holds the error meanwhile, which /readyz and
/metrics report. A stop request ends the wait at once.

A started runner handles events only while it holds its subscription's lease on the read-model database
(`lapor.lease`), so two processes on one database never both run it: one that cannot take the lease stands by,
tries again every `LEASE_RETRY` seconds, and takes over from the committed checkpoint when the holder stops or
dies; the lease is looked at on every turn of the loop (on PostgreSQL the server is asked at most every
`lapor.lease.LEASE_CHECK` seconds). The checkpoint moves only from where this runner last
committed it, so a runner that lost its lease unnoticed cannot commit a batch the new holder handles too.

A projection that gains from seeing many events at once (load its rows once, write each row once) gives a
`handle_batch`: the runner hands it a whole batch in one transaction, and only when that raises falls back to
`handle`, one event at a time, to find the event that fails. `lapor rebuild` reads the log once and `feed`s the
same batches to every subscription's runner on a fresh database.

A projection whose rows can stay in memory between batches also gives a `holding` (see `Holding`). A rebuild
runs it with `hold=N`: each batch is folded into the rows it holds, and they are written (with the checkpoint,
in one transaction) only once it holds N rows or the rebuild reaches the head, so a report touched in twenty
batches is loaded once and written once instead of twenty times. The held rows are only a cache of what the log
says after the last written checkpoint: when a batch fails, they are dropped, and the events since that
checkpoint are read again and handled the careful way (batch, then one by one, parking what fails).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

import psycopg

from lapor.clock import Clock, SystemClock
from lapor.db import Database, Tx, add_column, table_exists
from lapor.lease import LEASE_RETRY, Lease
from lapor.store import (
    DuplicateEventId,
    EventStore,
    RecordedEvent,
    StoreError,
    UnreadableEvent,
    WrongExpectedVersion,
    read_readable,
)
from lapor.store.model import unreadable_of

log = logging.getLogger("lapor.subscriptions")

Handler = Callable[[RecordedEvent, Tx], None]
BatchHandler = Callable[[Sequence[RecordedEvent], Tx], None]

RETRY_WAIT_MAX = 10.0  # seconds: the longest wait before a runner tries again after a transient failure

# SQLite's primary result codes that say the database could not be used just now. "no such column" and a syntax
# error are OperationalErrors too, with the generic SQLITE_ERROR: a handler's mistake, which parks its event.
_SQLITE_TRANSIENT = frozenset({
    sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PROTOCOL,
})

CHECKPOINT_SCHEMA = """
CREATE TABLE IF NOT EXISTS subscription_checkpoints (
    name       TEXT PRIMARY KEY,
    position   BIGINT NOT NULL,
    handled    BIGINT NOT NULL,
    updated_at TEXT NOT NULL,
    projection_version INTEGER
);
CREATE TABLE IF NOT EXISTS parked_events (
    name        TEXT NOT NULL,
    position    BIGINT NOT NULL,
    stream      TEXT NOT NULL,
    version     BIGINT NOT NULL,
    type        TEXT NOT NULL,
    error       TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    parked_at   TEXT NOT NULL,
    replayed_at TEXT,
    PRIMARY KEY (name, position)
)
"""


class Holding(Protocol):
    """A projection's rows kept in memory across batches. `apply` folds events (of the subscription's category, in
    position order, none applied before) into the rows it holds, loading through `tx` those it lacks; `held`
    says how many rows it holds; `write` writes every row it changed and forgets them all. `apply` and `write`
    of one batch in one transaction have the effect of the subscription's `handle_batch` (see `holding_batches`)."""

    def apply(self, events: Sequence[RecordedEvent], tx: Tx) -> None: ...

    def held(self) -> int: ...

    def write(self, tx: Tx) -> None: ...


def holding_batches(holding: Callable[[], Holding]) -> BatchHandler:
    """The batch handler of a projection that can hold its rows: a fresh holding per batch, written at its end."""

    def handle_batch(events: Sequence[RecordedEvent], tx: Tx) -> None:
        rows = holding()
        rows.apply(events, tx)
        rows.write(tx)

    return handle_batch


def holding_subscription(
    name: str, holding: Callable[[], Holding], *, category: str | None = "complaint",
    setup: Callable[[Tx], None] | None = None, counters: Mapping[str, str] | None = None, version: int = 1,
    tables: tuple[str, ...] = (),
) -> Subscription:
    """The subscription of a projection that can hold its rows: one event, a batch (`holding_batches`) and a
    rebuild's held rows all go through `holding`."""
    batches = holding_batches(holding)
    return Subscription(
        name, lambda event, tx: batches([event], tx), category=category, setup=setup, handle_batch=batches,
        holding=holding, counters=counters or {}, version=version, tables=tables,
    )


@dataclass(frozen=True)
class Subscription:
    name: str
    handle: Handler
    category: str | None = "complaint"
    setup: Callable[[Tx], None] | None = None  # idempotent DDL for the subscription's tables
    handle_batch: BatchHandler | None = None  # same effect as `handle` on each event in turn, but faster
    # False for a reaction (a handler that appends events or calls out): `lapor rebuild` leaves it out.
    projection: bool = True
    # Rows held in memory across batches, for a runner with `hold` (a rebuild); see `Holding`.
    holding: Callable[[], Holding] | None = None
    # How a rebuild in shares (`lapor rebuild --processes N`, each process a share of the complaints) puts the
    # rows together; a wrong declaration shows there as a difference from the live tables, never changes them.
    # False when a stream's rows depend on other streams' events (intake prunes its recent reports by the newest
    # event's time): the first share then runs it on every stream.
    per_stream: bool = True
    # Tables whose rows count what happened across streams (table -> its count column): the shares' rows that
    # are alike but for the count are added up.
    counters: Mapping[str, str] = field(default_factory=dict)
    # The projection's logic, as a number: raise it with a change that makes other rows of the same log (the
    # figures count differently, a column is added). A runner that finds its checkpoint written by another
    # version drops `tables`, sets them up afresh and reads the log again from position 0 (`upgrade`).
    version: int = 1
    tables: tuple[str, ...] = ()  # the tables the projection alone writes, dropped when its version changes

    def __post_init__(self) -> None:
        if self.version != 1 and not (self.projection and self.tables):
            raise ValueError(f"{self.name}: only a projection that names its tables can have another version")


@dataclass(frozen=True)
class ParkedEvent:
    name: str
    position: int
    stream: str
    version: int
    type: str
    error: str
    attempts: int
    parked_at: str
    replayed_at: str | None


class CheckpointMoved(RuntimeError):
    """Another runner committed the subscription's checkpoint since this one last did (see `_save_checkpoint`)."""


class SubscriptionRunner:
    def __init__(
        self,
        store: EventStore,
        db: Database,
        subscription: Subscription,
        *,
        clock: Clock | None = None,
        batch_size: int = 500,
        max_attempts: int = 5,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
        idle_wait: float = 1.0,
        gather: float = 0.0,
        hold: int = 0,
    ) -> None:
        self.store = store
        self.db = db
        self.subscription = subscription
        self.clock = clock or SystemClock()
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.idle_wait = idle_wait
        self.gather = gather
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The error the running loop is trying again after (see the docstring); None while all is well.
        self.failure: BaseException | None = None
        db.executescript(CHECKPOINT_SCHEMA)
        # Checkpoints written before projections had versions: NULL, read as version 1.
        add_column(db, "subscription_checkpoints", "projection_version", "INTEGER")
        with db.transaction() as tx:
            tx.lock_schema_changes()  # processes starting at once on a new schema
            # Another version's tables go first: this version's setup may not fit them (an index on a column they
            # lack). Until session 22 setup ran first: a PostgreSQL store built by version 2 of reporting's
            # projection failed to start with version 3 (`column "red_marked_agency" does not exist`: PostgreSQL
            # resolves the columns of `CREATE INDEX IF NOT EXISTS` before it finds the index there, where SQLite
            # skips it by name), and any store of version 3 with version 4 (a new index on a new column).
            self._upgrade(tx)
            if subscription.setup is not None:
                subscription.setup(tx)
        self._position = self.checkpoint()
        # With `hold` and a subscription that can hold its rows: up to `hold` rows kept in memory by `feed` and
        # written by `flush` (see the module's docstring). `_written` is the checkpoint written with them.
        self.hold = hold if subscription.holding is not None else 0
        self._holding: Holding | None = None
        self._held_events = 0
        self._held_last = 0  # the position of the last event held
        self._written = self._position
        self.leased = False  # whether the running loop holds the subscription's lease (see `lapor.lease`)

    @property
    def name(self) -> str:
        return self.subscription.name

    @property
    def standby(self) -> bool:
        """Started, but another runner holds the lease: this one handles nothing until it can take it over."""
        return self._thread is not None and not self.leased

    # -- state ------------------------------------------------------------------------------------------

    def checkpoint(self) -> int:
        return self.saved()[0]

    def handled_count(self) -> int:
        return self.saved()[1]

    def saved(self, *, wait: float | None = None) -> tuple[int, int]:
        """The checkpoint and the handled count as committed, read together. (The runner's own position moves on
        just after its commit, or while it holds rows, so it is not used here.) `wait`: as `Database.read`'s."""
        with self.db.read(wait=wait) as tx:
            return self._saved(tx)

    def scraped(self, *, wait: float | None = None) -> tuple[int, int, int]:
        """What a scrape reports, from one read: the committed checkpoint and handled count (`saved`) and how many
        parked events wait for a replay. `wait`: as `Database.read`'s."""
        with self.db.read(wait=wait) as tx:
            parked = tx.scalar(
                "SELECT count(*) FROM parked_events WHERE name = ? AND replayed_at IS NULL", (self.name,)
            )
            return (*self._saved(tx), int(parked))

    def _saved(self, tx: Tx) -> tuple[int, int]:
        row = tx.fetchone("SELECT position, handled FROM subscription_checkpoints WHERE name = ?", (self.name,))
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    def lag(self, head: int | None = None, *, wait: float | None = None) -> int:
        """How far behind the head of the log (`head`, or read now) the committed checkpoint is, in positions (0
        when caught up): what readiness and `caught_up` go by, so "caught up" means the rows are there to read.
        `wait`: the longest to wait for each database (`EventStore.head_position`, `Database.read`)."""
        if head is None:
            head = self.store.head_position(wait=wait)
        return max(0, head - self.saved(wait=wait)[0])

    def caught_up(self, within: int = 0) -> bool:
        return self.lag() <= within

    def parked(self, *, include_replayed: bool = False) -> list[ParkedEvent]:
        sql = "SELECT * FROM parked_events WHERE name = ?"
        if not include_replayed:
            sql += " AND replayed_at IS NULL"
        with self.db.read() as tx:
            rows = tx.fetchall(sql + " ORDER BY position", (self.name,))
        return [ParkedEvent(*row) for row in rows]

    # -- running ----------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"subscription {self.name} already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"subscription:{self.name}", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the loop to stop without waiting for it (see `stop`)."""
        self._stop.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        lease = self.db.lease(self.name)
        try:
            self._run_leased(lease)
        finally:
            self.leased = False
            lease.release()

    def _run_leased(self, lease: Lease) -> None:
        """The loop: handle events while holding `lease`, stand by (handling nothing) while another runner holds it."""
        delay = self.backoff
        stale = False  # the committed checkpoint is not where this runner last saw it
        while not self._stop.is_set():
            try:
                if not lease.held():
                    if self.leased:
                        log.warning("subscription %s: lost its lease; standing by", self.name)
                        self.leased, lease.standing_by = False, True
                        # Leave it to the standbys first: this runner's database connection may be what failed.
                        self._stop.wait(2 * LEASE_RETRY)
                        continue
                    if not lease.take(self._stop, f"subscription {self.name}"):
                        continue
                    self.leased, stale = True, True  # carry on from the committed checkpoint
                if stale or self.failure is not None:
                    # Whatever the failed step (or the previous holder) did or did not commit.
                    self._moved_to(self.checkpoint())
                    stale = False
                started, before = time.monotonic(), self._position
                self.poll()
                if self.failure is not None:
                    log.warning("subscription %s: running again", self.name)
                    self.failure, delay = None, self.backoff
                if self._position == before:  # nothing new in the log at all
                    self.store.wait_for_events(self._position, self.idle_wait)
                    continue
                # Busy (events of ours, or others' it moved past): let the next ones gather rather than commit
                # them, or move the checkpoint past them, one by one.
                rest = self.gather - (time.monotonic() - started)
                if rest > 0:
                    self._stop.wait(rest)
            except CheckpointMoved as moved:  # a runner that lost its lease committed late: carry on from there
                log.warning("subscription %s: %s; carrying on from the committed checkpoint", self.name, moved)
                stale = True
            except Exception as error:  # not the event's fault: a handler's refusal is parked, not raised
                log.error(
                    "subscription %s: %s; trying again from its checkpoint in %.2f s", self.name,
                    describe_failure(error), delay, exc_info=self.failure is None,  # the trace once, not at every try
                )
                self.failure = error
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_WAIT_MAX)

    def run_until_caught_up(self) -> int:
        """Process everything committed so far in this thread; returns how many events were handled. It takes no
        lease (a test, a benchmark, a service's first catch-up): another runner that commits meanwhile moves the
        checkpoint past this one's batch, which is rolled back, and this one carries on from there."""
        total = 0
        while True:
            try:
                handled = self.poll()
            except CheckpointMoved:
                self._moved_to(self.checkpoint())
                continue
            if not handled:
                return total
            total += handled

    def poll(self) -> int:
        """Read and process one batch; returns the number of events read (0 when caught up)."""
        head = self.store.head_position()
        events, unreadable = self._read(self._position + 1)
        if not events and unreadable is None:
            if head > self._position:
                # Nothing of our category up to `head` (commit order == position order, so nothing below it
                # can still appear): move the checkpoint so lag and the wait start from the head.
                self._advance_to(head)
            return 0
        return self._process_all(events, unreadable)

    def _read(self, position: int) -> tuple[list[RecordedEvent], UnreadableEvent | None]:
        """A batch of the subscription's events from `position` on, and None; or, when the read meets one that cannot
        be read, the events before it and that one (`UnreadableEvent`), which `_process_all` parks."""
        return read_readable(self.store, position, self.subscription.category, self.batch_size)

    def _process_all(self, events: Sequence[RecordedEvent], unreadable: UnreadableEvent | None = None) -> int:
        """Handle `events` (retrying or parking what fails), then park `unreadable`, which came after them. Returns
        how many were done (fewer when stopped)."""
        index = 0
        while index < len(events) and not self._stop.is_set():
            index = self._process_from(events, index)
        if unreadable is not None and index == len(events) and not self._stop.is_set():
            self.park_unreadable(unreadable)
            index += 1
        return index

    def feed(self, events: Sequence[RecordedEvent], through: int | None = None) -> int:
        """Process events someone else read (a rebuild reads the log once for every subscription): those of
        this subscription's category past its checkpoint. With `through`, `events` are already those of its
        category among everything read up to that position. Returns how many were handled."""
        category = self.subscription.category
        position = self._position
        if through is None:
            mine = [e for e in events if e.position > position and (category is None or e.category == category)]
            through = events[-1].position if events else position
        else:
            mine = [e for e in events if e.position > position]
        if self.hold:
            return self._hold(mine, through)
        index = self._process_all(mine)
        if through > self._position and not self._stop.is_set():
            self._advance_to(through)  # the rest were of other categories
        return index

    def _hold(self, events: Sequence[RecordedEvent], through: int) -> int:
        """`feed` for a runner that holds its rows: fold `events` into the held rows; write them once `hold` are
        held. A batch that fails drops the held rows and is done again the careful way (see the docstring)."""
        assert self.subscription.holding is not None
        if events:
            if self._holding is None:
                self._holding = self.subscription.holding()
            try:
                with self.db.read() as tx:  # only to load rows written by an earlier `flush`
                    self._holding.apply(events, tx)
            except Exception as error:  # noqa: BLE001 - the careful path below retries or parks the culprit
                log.warning("subscription %s: held batch failed, handling it again carefully: %s", self.name, error)
                return self._redo_carefully(events[-1].position, through)
            self._held_events += len(events)
            self._held_last = events[-1].position
        self._position = max(self._position, through)
        if self._holding is not None and self._holding.held() >= self.hold:
            self.flush()
        return len(events)

    def flush(self) -> None:
        """Write the rows held by `feed` (if any) with the checkpoint reached. If writing them fails, they are
        dropped and the events since the written checkpoint are done again the careful way."""
        if self._position == self._written:
            return
        holding = self._holding
        try:
            with self._transaction() as tx:
                if holding is not None:
                    holding.write(tx)
                self._save_checkpoint(tx, self._position, self._held_events)
        except Exception as error:
            if holding is None:
                raise  # only the checkpoint: nothing to do again
            log.warning("subscription %s: writing held rows failed, handling them again carefully: %s", self.name,
                        error)
            self._redo_carefully(self._held_last, self._position)
            return
        self._holding = None
        self._held_events = 0
        self._written = self._position

    def _redo_carefully(self, last: int, through: int) -> int:
        """Drop the held rows and handle every event since the written checkpoint through `_process_from`, read
        again from the store. Returns how many events it handled (those of earlier, held batches included)."""
        self._holding = None
        self._held_events = 0
        self._position = self._written
        handled = 0
        while self._position < last and not self._stop.is_set():
            page, unreadable = self._read(self._position + 1)
            events = [event for event in page if event.position <= last]
            if unreadable is not None and unreadable.position > last:
                unreadable = None
            if not events and unreadable is None:
                break
            handled += self._process_all(events, unreadable)
        if through > self._position and not self._stop.is_set():
            self._advance_to(through)
        self._written = self._position
        return handled

    def _process_from(self, events: Sequence[RecordedEvent], start: int) -> int:
        """Handle events[start:] in one transaction, stopping before the first that fails. Returns the index
        to continue from."""
        if self.subscription.handle_batch is not None and self._process_batch(events[start:]):
            return len(events)
        failed: tuple[int, BaseException] | None = None
        with self._transaction() as tx:
            done = start
            for event in events[start:]:
                try:
                    with tx.savepoint():
                        self.subscription.handle(event, tx)
                except Exception as error:  # a handler failure is retried, then parked
                    if transient_failure(error):
                        # Not the event's fault, and the transaction may be gone with the database (SQLite rolls
                        # it back on a full disk): its commit would fail with "no transaction is active" instead.
                        raise
                    failed = (done, error)
                    break
                done += 1
            if done > start:
                self._save_checkpoint(tx, events[done - 1].position, done - start)
        if done > start:
            self._moved_to(events[done - 1].position)
        if failed is None:
            return done
        index, failure = failed
        if self._retry_or_park(events[index], failure):
            return index + 1
        return len(events)  # stopped while backing off: leave the rest for the next run

    def _process_batch(self, events: Sequence[RecordedEvent]) -> bool:
        """All of `events` through `handle_batch` in one transaction; False (nothing written) if it raised."""
        assert self.subscription.handle_batch is not None
        try:
            with self._transaction() as tx:
                self.subscription.handle_batch(events, tx)
                self._save_checkpoint(tx, events[-1].position, len(events))
        except CheckpointMoved:
            raise  # not the batch's fault: the loop carries on from the committed checkpoint
        except Exception as error:  # noqa: BLE001 - handled again one by one below, which retries or parks
            log.warning("subscription %s: batch failed, handling it event by event: %s", self.name, error)
            return False
        self._moved_to(events[-1].position)
        return True

    def _retry_or_park(self, event: RecordedEvent, error: BaseException) -> bool:
        """True once the event took effect or was parked; False if stop() interrupted the backoff."""
        attempts = 1
        delay = self.backoff
        while attempts < self.max_attempts:
            log.warning(
                "subscription %s: %s@%s failed (attempt %d): %s",
                self.name,
                event.stream,
                event.version,
                attempts,
                error,
            )
            if self._stop.wait(delay):
                return False
            delay = min(delay * 2, self.max_backoff)
            attempts += 1
            try:
                with self._transaction() as tx:
                    self.subscription.handle(event, tx)
                    self._save_checkpoint(tx, event.position, 1)
            except Exception as retry_error:  # counted; parked when attempts run out
                if transient_failure(retry_error) or isinstance(retry_error, CheckpointMoved):
                    raise
                error = retry_error
            else:
                self._moved_to(event.position)
                return True
        log.error(
            "subscription %s: parking %s@%s after %d attempts: %s",
            self.name,
            event.stream,
            event.version,
            attempts,
            error,
        )
        self._park(event.position, event.stream, event.version, event.type, describe_failure(error), attempts)
        return True

    def park_unreadable(self, unreadable: UnreadableEvent) -> None:
        """Park an event the store cannot read, and go on past it. It is not read again first: the same bytes give the
        same error (a database that cannot be used just now raises something else, which the loop tries again).
        Its stream, version and type are parked as stored, "?" and -1 where even they cannot be read. A runner fed
        by a rebuild writes the rows it holds first. Until session 29 such an event failed every read of its batch,
        and the runner tried again from its checkpoint for ever: every projection stopped there."""
        if unreadable.position <= self._position:
            return
        self.flush()
        log.error("subscription %s: parking %s", self.name, unreadable)
        version = -1 if unreadable.version is None else unreadable.version
        self._park(unreadable.position, unreadable.stream or "?", version, unreadable.type or "?", unreadable.reason, 1)

    def _park(self, position: int, stream: str, version: int, event_type: str, error: str, attempts: int) -> None:
        """Record the event at `position` as parked, with the checkpoint moved past it."""
        with self._transaction() as tx:
            tx.execute(
                "INSERT INTO parked_events (name, position, stream, version, type, error, attempts, parked_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name, position) DO UPDATE SET "
                "error = excluded.error, attempts = excluded.attempts, parked_at = excluded.parked_at, "
                "replayed_at = NULL",
                (self.name, position, stream, version, event_type, error, attempts, self.clock.now().isoformat()),
            )
            self._save_checkpoint(tx, position, 0)
        self._moved_to(position)

    def _advance_to(self, position: int) -> None:
        with self._transaction() as tx:
            self._save_checkpoint(tx, position, 0)
        self._moved_to(position)

    def _moved_to(self, position: int) -> None:
        """The checkpoint is committed at `position`: carry on from there."""
        self._position = self._written = position

    def _transaction(self) -> AbstractContextManager[Tx]:
        """A transaction for the subscription's rows and checkpoint: not flushed to disk at commit, since after a
        power cut the lost tail is read again from the durable log (see `lapor.db`)."""
        return self.db.transaction(durable=False)

    def _save_checkpoint(self, tx: Tx, position: int, handled: int) -> None:
        """Move the checkpoint to `position`, but only from where this runner last committed it (`_written`): a
        runner that lost its lease unnoticed and another that took it over cannot both commit the same events. The
        loser's transaction raises `CheckpointMoved` and rolls back with its rows."""
        moved = tx.execute(
            "INSERT INTO subscription_checkpoints (name, position, handled, updated_at, projection_version) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET position = excluded.position, "
            "handled = subscription_checkpoints.handled + excluded.handled, updated_at = excluded.updated_at, "
            "projection_version = excluded.projection_version WHERE subscription_checkpoints.position = ?",
            (self.name, position, handled, self.clock.now().isoformat(), self.subscription.version, self._written),
        ).rowcount
        if moved == 0:
            raise CheckpointMoved(f"the checkpoint of {self.name} is no longer at {self._written}: another runner "
                                  "moved it")

    def _upgrade(self, tx: Tx) -> None:
        """When the checkpoint was written by another version of the projection (none recorded: version 1), its
        rows are another logic's: drop its tables and start again from position 0, in the transaction that then
        sets them up afresh. The log is the truth; the figures are right again once caught up, and until then
        every view's `as_of` says how far they reach."""
        row = tx.fetchone("SELECT projection_version FROM subscription_checkpoints WHERE name = ?", (self.name,))
        subscription = self.subscription
        if row is None or (row[0] or 1) == subscription.version:
            return
        log.warning(
            "subscription %s: its rows were built by version %s of the projection, this is version %s: "
            "dropping %s and reading the log again from position 0",
            self.name, row[0] or 1, subscription.version, ", ".join(subscription.tables),
        )
        for table in subscription.tables:
            tx.execute(f'DROP TABLE IF EXISTS "{table}"')
        tx.execute("DELETE FROM parked_events WHERE name = ?", (self.name,))  # the old logic's failures
        tx.execute(
            "UPDATE subscription_checkpoints SET position = 0, handled = 0, updated_at = ?, projection_version = ? "
            "WHERE name = ?",
            (self.clock.now().isoformat(), subscription.version, self.name),
        )

    def replay_parked(self, position: int) -> None:
        """Run a parked event through the handler again (after the cause was fixed). Raises if it still fails;
        the event stays parked then."""
        events = self.store.read_all(position, None, 1)
        if not events or events[0].position != position:
            raise LookupError(f"no event at position {position}")
        event = events[0]
        with self.db.transaction() as tx:
            row = tx.fetchone(
                "SELECT replayed_at FROM parked_events WHERE name = ? AND position = ?", (self.name, position)
            )
            if row is None or row[0] is not None:
                raise LookupError(f"event at position {position} is not parked for {self.name}")
            self.subscription.handle(event, tx)
            tx.execute(
                "UPDATE parked_events SET replayed_at = ? WHERE name = ? AND position = ?",
                (self.clock.now().isoformat(), self.name, position),
            )


def committed_checkpoints(tx: Tx) -> dict[str, int]:
    """Every subscription's committed checkpoint in this read-model database, by name (none before the first runner
    made the table)."""
    if not table_exists(tx, "subscription_checkpoints"):
        return {}
    rows = tx.fetchall("SELECT name, position FROM subscription_checkpoints")
    return {name: int(position) for name, position in rows}


def transient_failure(error: BaseException) -> bool:
    """Whether `error` says the database could not be used just now (the connection lost, the server shutting down,
    a lock not granted in time, the disk full) rather than that the handler cannot take the event. So does the event
    store refusing a reaction's append for its own reasons (a `StoreError` that is neither a conflict nor a clash of
    ids: a commit that failed, a writer process that does not answer, a KurrentDB past its deadline): until a bug
    hunt (session 26) that parked the event, and the reaction (closing or reopening a report) never happened."""
    if isinstance(error, StoreError):
        return not isinstance(error, WrongExpectedVersion | DuplicateEventId)
    if isinstance(error, psycopg.OperationalError):
        return not isinstance(error, psycopg.errors.ProgramLimitExceeded)  # e.g. a row too large: the event's
    code = getattr(error, "sqlite_errorcode", None)  # None on one raised by other code than SQLite's
    return isinstance(error, sqlite3.OperationalError) and code is not None and code & 0xFF in _SQLITE_TRANSIENT


def describe_failure(error: BaseException) -> str:
    """Why a handler failed, as a parked event keeps it and `lapor parked list` and `lapor parked replay` show it:
    its class and message. Of one that is or comes from an event the store cannot read (a later event of its
    report, whose fold reads it), which event and which field did not decode, never the decode's words: they quote
    the stored content, which may hold a reporter's personal data (session 32, as session 31 decided for the
    auditors' views); the server's log keeps them."""
    unreadable = unreadable_of(error)
    return f"{type(error).__name__}: {error if unreadable is None else unreadable.described}"[:2000]
