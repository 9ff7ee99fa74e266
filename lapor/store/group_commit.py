"""Group commit, shared by the SQL adapters.

One writer thread per store owns the write connection. Appends that arrive while a commit is in flight wait in
a queue and go into the next transaction together: concurrent appenders share one durable commit, and an
append that fails (wrong version, duplicate id) is rejected alone and reported to its caller while its
neighbours commit. If the transaction itself fails, nobody in the group is
acknowledged; a caller may retry with the same event ids, which is idempotent.

An adapter supplies a `GroupTransaction` (its SQL dialect); `GroupCommitWriter` supplies the queue, the
batching, the futures and the shutdown.
"""

from __future__ import annotations

import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from lapor.store.model import AppendResult, ExpectedVersion, NewEvent, StoreError

MAX_GROUP = 512


class PendingAppend:
    """One caller's append, waiting for the writer thread."""

    __slots__ = ("events", "expected", "future", "stream")

    def __init__(self, stream: str, events: Sequence[NewEvent], expected: ExpectedVersion) -> None:
        self.stream = stream
        self.events = events
        self.expected = expected
        self.future: Future[AppendResult] = Future()


class GroupTransaction(ABC):
    """The adapter's side of a group commit; every method runs on the writer thread only."""

    @abstractmethod
    def begin(self) -> None:
        """Open the transaction and take the store-wide write lock, so that positions are assigned in commit
        order and the checks in `apply` see every commit made before ours."""

    @abstractmethod
    def apply(self, request: PendingAppend) -> AppendResult:
        """Check and write one append, all or nothing: raising StoreError or ValueError rejects this append
        alone and must leave nothing of it written (the rest of the group goes on)."""

    @abstractmethod
    def commit(self, results: Sequence[AppendResult]) -> None:
        """Make the group durable; `results` are the appends that passed (possibly none)."""

    @abstractmethod
    def rollback(self) -> None:
        """Abandon the transaction after a failure; must leave the writer able to begin again."""


class GroupCommitWriter:
    """The writer thread and its queue. `on_commit(last_position)` runs after each commit that wrote events."""

    def __init__(self, name: str, transaction: GroupTransaction, on_commit: Callable[[int], None]) -> None:
        self._transaction = transaction
        self._on_commit = on_commit
        self._queue: queue.SimpleQueue[PendingAppend | None] = queue.SimpleQueue()
        # Guards `_closed` together with the queue, so no append slips in behind the stop marker and waits
        # forever.
        self._submit_lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, stream: str, events: Sequence[NewEvent], expected: ExpectedVersion) -> AppendResult:
        request = PendingAppend(stream, list(events), expected)
        with self._submit_lock:
            if self._closed:
                raise StoreError("the store is closed")
            self._queue.put(request)
        return request.future.result()

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_GROUP:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                batch.append(nxt)
            self._commit_group(batch)

    def _commit_group(self, batch: list[PendingAppend]) -> None:
        tx = self._transaction
        done: list[tuple[PendingAppend, AppendResult]] = []
        try:
            tx.begin()
            for request in batch:
                try:
                    result = tx.apply(request)
                except (StoreError, ValueError) as error:
                    request.future.set_exception(error)
                else:
                    done.append((request, result))
            tx.commit([result for _, result in done])
        except Exception as error:  # noqa: BLE001 - the writer thread must fail its waiters, not die
            tx.rollback()
            for request in batch:
                if not request.future.done():  # those rejected alone keep their own error
                    request.future.set_exception(StoreError(f"commit failed: {error}"))
            return
        for request, result in done:
            request.future.set_result(result)
        if done:
            self._on_commit(max(result.last_position for _, result in done))
