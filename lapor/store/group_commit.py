"""Group commit, shared by the SQL adapters.

Appends that arrive while a commit is in flight wait and go into the next transaction together: concurrent
appenders share one durable commit, and an append that fails (wrong version, duplicate id) is rejected alone
and reported to its caller while its neighbours commit. If the transaction itself fails, nobody in the group
is acknowledged; a caller may retry with the same event ids, which is idempotent.

There is no writer thread: the caller that finds no commit in flight becomes the *leader* and commits
everything queued (its own append included) on the store's one write connection. Each other caller sleeps
on its own event, woken once: when its append is decided, or when a leader whose own append is decided hands
it the leadership for what is still queued. A lone writer therefore commits on its own thread, without two
thread hand-offs per append, and a commit wakes only the callers it concerns.

An adapter supplies a `GroupTransaction` (its SQL dialect); `GroupCommitWriter` supplies the queue, the
batching, the wake-ups and the shutdown.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime

from lapor.store.model import AppendNotRecorded, AppendResult, ExpectedVersion, NewEvent, StoreError

MAX_GROUP = 512


class PendingAppend:
    """One caller's append, waiting for a leader to commit it (or to hand it the leadership)."""

    __slots__ = ("decided", "error", "events", "expected", "recorded_at", "result", "stream", "wake")

    def __init__(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected: ExpectedVersion,
        recorded_at: datetime | None = None,
    ) -> None:
        self.stream = stream
        self.events = events
        self.expected = expected
        # The moment to record, when the appender's clock (not the writer's) tells it: a writer process serving
        # other processes' appends (lapor.store.writer). None: the adapter reads its own clock.
        self.recorded_at = recorded_at
        self.decided = False
        self.result: AppendResult | None = None
        self.error: BaseException | None = None
        # Set when the append is decided, or when its caller is to lead the next group: each waiter sleeps on
        # its own event, so a commit wakes exactly the callers it concerns (no thundering herd on one lock).
        # A caller that leads at once never waits, and gets none.
        self.wake: threading.Event | None = None

    def succeed(self, result: AppendResult) -> None:
        self.result = result
        self._decide()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._decide()

    def _decide(self) -> None:
        self.decided = True
        if self.wake is not None:
            self.wake.set()

    def outcome(self) -> AppendResult:
        if self.error is not None:
            raise self.error
        assert self.result is not None, "an append is answered only once decided"
        return self.result


def each_outcome(
    batch: Sequence[PendingAppend], decide: Callable[[PendingAppend], AppendResult]
) -> list[AppendResult | Exception]:
    """`decide` applied to every append of a group: its result, or the StoreError/ValueError that rejects it
    alone (the rest of the group goes on)."""
    outcomes: list[AppendResult | Exception] = []
    for request in batch:
        try:
            outcomes.append(decide(request))
        except (StoreError, ValueError) as error:
            outcomes.append(error)
    return outcomes


class GroupTransaction(ABC):
    """The adapter's side of a group commit; every method runs under the leader role (one at a time)."""

    # Whether a `commit` that raised leaves nothing committed, so its appends fail as AppendNotRecorded. True for
    # a local database (SQLite: a failed COMMIT leaves the transaction to roll back); False where the answer can
    # be lost after the server committed (PostgreSQL: the connection gone during COMMIT).
    failed_commit_is_undone: bool = False

    def acquire(self) -> None:
        """Wait for the right to write, before the next group is gathered (appends that queue meanwhile join
        it). For an adapter whose writers in other processes need serialising beyond `begin`'s own lock."""
        return

    def release(self) -> None:
        """Give up what `acquire` took. The writer calls it once the group has committed or rolled back, before
        any of its callers is woken, and also when no group could be gathered; it may find nothing to give up."""
        return

    @abstractmethod
    def begin(self) -> None:
        """Open the transaction and take the store-wide write lock, so that positions are assigned in commit
        order and the checks in `apply` see every commit made before ours."""

    @abstractmethod
    def apply(self, request: PendingAppend) -> AppendResult:
        """Check and write one append, all or nothing: raising StoreError or ValueError rejects this append
        alone and must leave nothing of it written (the rest of the group goes on)."""

    def apply_all(self, batch: Sequence[PendingAppend]) -> list[AppendResult | Exception]:
        """Check and write every append of the group: each one's result, or the StoreError/ValueError that rejects
        it alone. An adapter may override this to write the group at once."""
        return each_outcome(batch, self.apply)

    @abstractmethod
    def commit(self, results: Sequence[AppendResult]) -> None:
        """Make the group durable; `results` are the appends that passed (possibly none)."""

    @abstractmethod
    def rollback(self) -> None:
        """Abandon the transaction after a failure; must leave the writer able to begin again."""


class GroupCommitWriter:
    """The queue and its leader hand-over. `on_commit(last_position)` runs after each commit that wrote events."""

    def __init__(self, name: str, transaction: GroupTransaction, on_commit: Callable[[int], None]) -> None:
        self.name = name
        self._transaction = transaction
        self._on_commit = on_commit
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending: deque[PendingAppend] = deque()
        self._leading = False
        self._closed = False

    def submit(self, stream: str, events: Sequence[NewEvent], expected: ExpectedVersion) -> AppendResult:
        request = PendingAppend(stream, list(events), expected)
        with self._lock:
            if self._closed:
                raise AppendNotRecorded("the store is closed")
            lead = not self._leading
            if not lead:
                request.wake = threading.Event()  # before it is queued: a leader may decide it at once
            self._pending.append(request)
            self._leading = True
        if request.wake is not None:
            request.wake.wait()
            if request.decided:
                return request.outcome()
        self._lead(request)  # this caller was first, or was handed the leadership
        return request.outcome()

    def _lead(self, request: PendingAppend) -> None:
        """Commit groups until our own append is decided, then hand the leadership to the oldest waiter."""
        tx = self._transaction
        while True:
            batch: list[PendingAppend] = []
            try:
                tx.acquire()
                with self._lock:
                    batch = [self._pending.popleft() for _ in range(min(MAX_GROUP, len(self._pending)))]
                last_position = commit_group(tx, batch)
                if last_position is not None:
                    self._on_commit(last_position)
            finally:
                if not batch:  # no group (`acquire` failed or was interrupted): our append fails, a waiter leads on
                    tx.release()
                    with self._lock:
                        if request in self._pending:
                            self._pending.remove(request)
                    request.fail(AppendNotRecorded("could not take the store's write lock"))
                for queued in batch:  # interrupted half-way (KeyboardInterrupt): nobody may wait forever
                    if not queued.decided:
                        queued.fail(StoreError("append interrupted before its commit"))
                with self._lock:
                    if request.decided or not self._pending:
                        if self._pending:
                            successor = self._pending[0].wake
                            assert successor is not None, "every queued append but the leader's has a wake-up"
                            successor.set()  # it leads next; `_leading` stays True
                        else:
                            self._leading = False
                            self._idle.notify_all()
                        done = True
                    else:
                        done = False
            if done:
                return

    def close(self) -> None:
        """Refuse new appends and wait until the queued ones are committed."""
        with self._lock:
            self._closed = True
            while self._leading or self._pending:
                self._idle.wait()


def commit_group(tx: GroupTransaction, batch: Sequence[PendingAppend]) -> int | None:
    """Write `batch` in one transaction and decide every append in it: committed, rejected alone, or failed with
    the transaction. Gives up the write lock (`tx.release`) before anyone is woken. Returns the last position
    committed, None when nothing was."""
    done: list[tuple[PendingAppend, AppendResult]] = []
    rejected: list[tuple[PendingAppend, Exception]] = []
    failure: Exception | None = None
    committing = False
    try:
        tx.begin()
        for request, outcome in zip(batch, tx.apply_all(batch), strict=True):
            if isinstance(outcome, Exception):
                rejected.append((request, outcome))
            else:
                done.append((request, outcome))
        committing = True
        tx.commit([result for _, result in done])
    except Exception as error:  # noqa: BLE001 - the leader must fail its group's waiters
        tx.rollback()
        failure = error
    finally:
        tx.release()  # before anyone is woken: other processes' writers need not wait on our wake-ups
    # Those rejected alone are answered only now, once the group is committed (or rolled back): a caller told that
    # its expected version is stale reads the stream again at once, and must find there the append of its own
    # group that made it so. Session 30: it was answered before the COMMIT, read the version it had, and a
    # followup action that had lost to a return in the same group was judged on the report as it was before.
    for request, outcome in rejected:
        request.fail(outcome)
    if failure is not None:
        # Before COMMIT nothing can have been recorded; during it, only the adapter knows (see its attribute).
        undone = not committing or tx.failed_commit_is_undone
        for request in batch:
            if not request.decided:  # those rejected alone keep their own error
                failed = (AppendNotRecorded if undone else StoreError)(f"commit failed: {failure}")
                failed.__cause__ = failure  # raised later, in the caller's thread: its kind stays known (/readyz)
                request.fail(failed)
        return None
    for request, result in done:
        request.succeed(result)
    return max(result.last_position for _, result in done) if done else None


class ReadOnlyWriter:
    """The writer of a store opened read-only (`lapor audit verify`, session 31): every append is refused, nothing
    recorded, and it holds no connection, lock or file."""

    def submit(self, stream: str, events: Sequence[NewEvent], expected: ExpectedVersion) -> AppendResult:
        raise AppendNotRecorded(f"the store was opened read-only: nothing was appended to {stream}")

    def close(self) -> None:
        pass
