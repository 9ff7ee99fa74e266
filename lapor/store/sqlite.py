"""SQLite adapter: the embedded default.

WAL journal with `synchronous=FULL`, so every acknowledged append survives a power cut. One writer thread per
store owns the write connection and commits *groups*: appends that arrive while a commit is in flight wait in
a queue and go into the next transaction together, each behind its own savepoint, so concurrent appenders
share one fsync and a failing append never takes its neighbours down. Other processes writing to the same file
are serialised by SQLite's write lock (`BEGIN IMMEDIATE` + busy timeout), and since a position is assigned
inside that lock, commit order equals position order.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path

import orjson

from lapor.clock import Clock, SystemClock
from lapor.store.model import (
    GENESIS_HASH,
    AppendResult,
    DuplicateEventId,
    EventStore,
    ExpectedVersion,
    NewEvent,
    Notifier,
    RecordedEvent,
    StoreError,
    category_of,
    chain_hash,
    check_expected,
    validate_append,
)
from lapor.store.vault import SqliteVault

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position       INTEGER PRIMARY KEY,
    event_id       TEXT NOT NULL UNIQUE,
    stream         TEXT NOT NULL,
    category       TEXT NOT NULL,
    version        INTEGER NOT NULL,
    type           TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    data           BLOB NOT NULL,
    metadata       BLOB NOT NULL,
    recorded_at    TEXT NOT NULL,
    prev_hash      TEXT NOT NULL,
    hash           TEXT NOT NULL,
    UNIQUE (stream, version)
);
CREATE INDEX IF NOT EXISTS events_by_category ON events (category, position);
"""

COLUMNS = "event_id, stream, version, position, type, schema_version, data, metadata, recorded_at, prev_hash, hash"

# How long a blocked reader waits on the in-process notifier before it looks at the file for commits made
# by another process. Within one process a commit wakes readers at once.
CROSS_PROCESS_POLL = 0.2
MAX_GROUP = 512


def connect(path: str | Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the pragmas every LAPOR SQLite file uses."""
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 30000")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def row_to_event(row: tuple) -> RecordedEvent:
    return RecordedEvent(
        uuid.UUID(row[0]),
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        orjson.loads(row[6]),
        orjson.loads(row[7]),
        datetime.fromisoformat(row[8]),
        row[9],
        row[10],
    )


class _Append:
    __slots__ = ("events", "expected", "future", "stream")

    def __init__(self, stream: str, events: Sequence[NewEvent], expected: ExpectedVersion) -> None:
        self.stream = stream
        self.events = events
        self.expected = expected
        self.future: Future[AppendResult] = Future()


class SqliteEventStore(EventStore):
    def __init__(self, path: str | Path, *, clock: Clock | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.url = f"sqlite:///{self.path}"
        self.clock = clock or SystemClock()
        self._notifier = Notifier()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._write_conn = connect(self.path)
        self._write_conn.executescript(SCHEMA)
        self._queue: queue.SimpleQueue[_Append | None] = queue.SimpleQueue()
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, name=f"lapor-writer:{self.path.name}", daemon=True)
        self._writer.start()
        self.vault = SqliteVault(self.path.with_name(self.path.stem + "-vault.db"), clock=self.clock)

    # -- writing -----------------------------------------------------------------------------------------

    def append(
        self, stream: str, events: Sequence[NewEvent], expected_version: ExpectedVersion = -2
    ) -> AppendResult:
        validate_append(stream, events)
        if self._closed:
            raise StoreError("the store is closed")
        request = _Append(stream, list(events), expected_version)
        self._queue.put(request)
        return request.future.result()

    def _write_loop(self) -> None:
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

    def _commit_group(self, batch: list[_Append]) -> None:
        conn = self._write_conn
        done: list[tuple[_Append, AppendResult]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for request in batch:
                conn.execute("SAVEPOINT one_append")
                try:
                    result = self._apply(conn, request)
                except (StoreError, ValueError) as error:
                    conn.execute("ROLLBACK TO one_append")
                    conn.execute("RELEASE one_append")
                    request.future.set_exception(error)
                else:
                    conn.execute("RELEASE one_append")
                    done.append((request, result))
            conn.execute("COMMIT")
        except Exception as error:  # noqa: BLE001 - the writer thread must fail its waiters, not die
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for request, _ in done:
                request.future.set_exception(StoreError(f"commit failed: {error}"))
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(StoreError(f"commit failed: {error}"))
            return
        for request, result in done:
            request.future.set_result(result)
        if done:
            self._notifier.publish(max(result.last_position for _, result in done))

    def _apply(self, conn: sqlite3.Connection, request: _Append) -> AppendResult:
        stream, events = request.stream, request.events
        original = self._already_recorded(conn, stream, events)
        if original is not None:
            return original
        head = conn.execute(
            "SELECT version, hash FROM events WHERE stream = ? ORDER BY version DESC LIMIT 1", (stream,)
        ).fetchone()
        current, prev_hash = (head[0], head[1]) if head else (-1, GENESIS_HASH)
        check_expected(stream, request.expected, current)
        position = conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]
        recorded_at = self.clock.now()
        recorded_text = recorded_at.isoformat()
        category = category_of(stream)
        rows = []
        first_position = position + 1
        for offset, event in enumerate(events):
            version = current + 1 + offset
            position += 1
            digest = chain_hash(
                prev_hash,
                event.event_id,
                stream,
                version,
                event.type,
                event.schema_version,
                event.data,
                event.metadata,
                recorded_at,
            )
            rows.append(
                (
                    position,
                    str(event.event_id),
                    stream,
                    category,
                    version,
                    event.type,
                    event.schema_version,
                    orjson.dumps(event.data),
                    orjson.dumps(event.metadata),
                    recorded_text,
                    prev_hash,
                    digest,
                )
            )
            prev_hash = digest
        try:
            conn.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        except sqlite3.IntegrityError as error:
            raise DuplicateEventId(f"{stream}: an event id of this append is already recorded") from error
        return AppendResult(stream, current + 1, current + len(events), first_position, position)

    @staticmethod
    def _already_recorded(
        conn: sqlite3.Connection, stream: str, events: Sequence[NewEvent]
    ) -> AppendResult | None:
        found = conn.execute(
            "SELECT stream, version, position FROM events WHERE event_id = ?", (str(events[0].event_id),)
        ).fetchone()
        if found is None:
            return None
        rows = conn.execute(
            "SELECT event_id, stream, version, position FROM events WHERE stream = ? AND version >= ? "
            "ORDER BY version LIMIT ?",
            (found[0], found[1], len(events)),
        ).fetchall()
        if found[0] != stream or [r[0] for r in rows] != [str(e.event_id) for e in events]:
            raise DuplicateEventId(f"{stream}: these event ids were recorded, but not as this same append")
        return AppendResult(stream, rows[0][2], rows[-1][2], rows[0][3], rows[-1][3])

    # -- reading -----------------------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=True)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def read_stream(self, stream: str, from_version: int = 0, limit: int | None = None) -> list[RecordedEvent]:
        rows = self._reader().execute(
            f"SELECT {COLUMNS} FROM events WHERE stream = ? AND version >= ? ORDER BY version LIMIT ?",
            (stream, from_version, -1 if limit is None else limit),
        )
        return [row_to_event(row) for row in rows]

    def read_all(
        self, from_position: int = 0, category: str | None = None, limit: int = 1000
    ) -> list[RecordedEvent]:
        conn = self._reader()
        if category is None:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM events WHERE position >= ? ORDER BY position LIMIT ?",
                (from_position, limit),
            )
        else:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM events WHERE category = ? AND position >= ? ORDER BY position LIMIT ?",
                (category, from_position, limit),
            )
        return [row_to_event(row) for row in rows]

    def read_all_raw(self, from_position: int, limit: int, visit: Callable[[tuple], None]) -> int:
        """Hand raw rows (COLUMNS order) to `visit`; used by the integrity check, which hashes without
        building events twice. Returns the number of rows visited."""
        count = 0
        for row in self._reader().execute(
            f"SELECT {COLUMNS} FROM events WHERE position >= ? ORDER BY position LIMIT ?", (from_position, limit)
        ):
            visit(row)
            count += 1
        return count

    def head_position(self) -> int:
        return self._reader().execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]

    def stream_version(self, stream: str) -> int:
        row = self._reader().execute("SELECT max(version) FROM events WHERE stream = ?", (stream,)).fetchone()
        return -1 if row[0] is None else row[0]

    def wait_for_events(self, after_position: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self.head_position() > after_position:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._notifier.wait(after_position, min(remaining, CROSS_PROCESS_POLL)):
                return True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._writer.join()
        self._write_conn.close()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        self.vault.close()
