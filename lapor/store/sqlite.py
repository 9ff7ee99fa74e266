"""SQLite adapter: the embedded default.

WAL journal with `synchronous=FULL`, so every acknowledged append survives a power cut. The store's one write
connection commits *groups* (`lapor.store.group_commit`): appends that arrive while a commit is in flight
wait and go into the next transaction together, each behind its own savepoint,
so concurrent appenders share one fsync and a failing append never takes its neighbours down. Other processes
writing to the same file are serialised by SQLite's write lock (`BEGIN IMMEDIATE` + busy timeout), and since
a position is assigned inside that lock, commit order equals position order.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import orjson

from lapor.clock import Clock, SystemClock
from lapor.store.group_commit import GroupCommitWriter, GroupTransaction, PendingAppend
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
    WrongExpectedVersion,
    category_of,
    check_expected,
    link_events,
    replayed_result,
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
        row[0],  # event id and metadata are decoded on first access (see RecordedEvent)
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        orjson.loads(row[6]),
        row[7],
        datetime.fromisoformat(row[8]),
        row[9],
        row[10],
    )


class SqliteGroup(GroupTransaction):
    """SQLite's side of a group commit: `BEGIN IMMEDIATE` takes the database's write lock, which also queues
    writers in other processes."""

    def __init__(self, conn: sqlite3.Connection, clock: Clock) -> None:
        self.conn = conn
        self.clock = clock
        self._position = 0

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        # Under the write lock nobody else can append, so the group counts positions on from here.
        self._position = self.conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]

    def commit(self, results: Sequence[AppendResult]) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def apply(self, request: PendingAppend) -> AppendResult:
        # A savepoint per append: a duplicate id can surface half-way through the inserts.
        self.conn.execute("SAVEPOINT one_append")
        try:
            result = self._write(request)
        except sqlite3.IntegrityError as error:
            # An event id is already recorded: a retried append (answer with its original result) or a clash.
            self._undo()
            original = self._already_recorded(request.stream, request.events)
            if original is None:
                raise DuplicateEventId(f"{request.stream}: an event id of this append is already recorded") from error
            return original
        except (StoreError, ValueError):
            self._undo()
            raise
        self.conn.execute("RELEASE one_append")
        self._position = max(self._position, result.last_position)
        return result

    def _undo(self) -> None:
        self.conn.execute("ROLLBACK TO one_append")
        self.conn.execute("RELEASE one_append")

    def _write(self, request: PendingAppend) -> AppendResult:
        conn = self.conn
        stream, events = request.stream, request.events
        head = conn.execute(
            "SELECT version, hash FROM events WHERE stream = ? ORDER BY version DESC LIMIT 1", (stream,)
        ).fetchone()
        current, prev_hash = (head[0], head[1]) if head else (-1, GENESIS_HASH)
        try:
            check_expected(stream, request.expected, current)
        except WrongExpectedVersion:
            # A retry of an append that already committed finds the stream moved on by its own events.
            original = self._already_recorded(stream, events)
            if original is not None:
                return original
            raise
        linked = link_events(
            stream,
            events,
            current_version=current,
            prev_hash=prev_hash,
            first_position=self._position + 1,
            recorded_at=self.clock.now(),
        )
        category = category_of(stream)
        rows = [
            (
                e.position,
                str(e.event_id),
                stream,
                category,
                e.version,
                e.type,
                e.schema_version,
                orjson.dumps(e.data),
                orjson.dumps(e.metadata),
                e.recorded_at.isoformat(),
                e.prev_hash,
                e.hash,
            )
            for e in linked
        ]
        conn.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        return AppendResult(stream, linked[0].version, linked[-1].version, linked[0].position, linked[-1].position)

    def _already_recorded(self, stream: str, events: Sequence[NewEvent]) -> AppendResult | None:
        conn = self.conn
        found = conn.execute(
            "SELECT stream, version FROM events WHERE event_id = ?", (str(events[0].event_id),)
        ).fetchone()
        if found is None:
            return None
        recorded = conn.execute(
            "SELECT event_id, stream, version, position FROM events WHERE stream = ? AND version >= ? "
            "ORDER BY version LIMIT ?",
            (found[0], found[1], len(events)),
        ).fetchall()
        return replayed_result(stream, events, recorded)


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
        self._writer = GroupCommitWriter(
            f"lapor-writer:{self.path.name}", SqliteGroup(self._write_conn, self.clock), self._notifier.publish
        )
        self._closed = False
        self.vault = SqliteVault(self.path.with_name(self.path.stem + "-vault.db"), clock=self.clock)

    def append(self, stream: str, events: Sequence[NewEvent], expected_version: ExpectedVersion = -2) -> AppendResult:
        validate_append(stream, events)
        return self._writer.submit(stream, events, expected_version)

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

    def read_all(self, from_position: int = 0, category: str | None = None, limit: int = 1000) -> list[RecordedEvent]:
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

    def head_position(self) -> int:
        return self._reader().execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]

    def stream_version(self, stream: str) -> int:
        row = self._reader().execute("SELECT max(version) FROM events WHERE stream = ?", (stream,)).fetchone()
        return -1 if row[0] is None else row[0]

    def wait_for_events(self, after_position: int, timeout: float) -> bool:
        return self._notifier.wait_for_commit(self.head_position, after_position, timeout, CROSS_PROCESS_POLL)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        self._write_conn.close()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        self.vault.close()
