"""SQLite adapter: the embedded default.

WAL journal with `synchronous=FULL`, so every acknowledged append survives a power cut. The store's one write
connection commits *groups* (`lapor.store.group_commit`): appends that arrive while a commit is in flight
wait and go into the next transaction together, each behind its own savepoint,
so concurrent appenders share one fsync and a failing append never takes its neighbours down. Stores in other
processes (or other stores in this one) writing to the same file take turns on an advisory lock beside it
(`<file>-writer.lock`, flock(2)) and then on SQLite's own write lock (`BEGIN IMMEDIATE` + busy timeout); since a
position is assigned inside those locks, commit order equals position order. Like SQLite's own locking, this
wants a local file system, not a network share.

With `writer=<socket>` a store commits nothing itself: it sends its appends to a writer process
(`lapor.store.writer`), which commits every process's appends in shared groups, and reads the file directly.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from lapor.clock import Clock, SystemClock
from lapor.per_thread import PerThread
from lapor.store.group_commit import (
    GroupCommitWriter,
    GroupTransaction,
    PendingAppend,
    ReadOnlyWriter,
    each_outcome,
)
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
    StreamShare,
    WrongExpectedVersion,
    category_of,
    check_expected,
    decoded,
    decoded_events,
    link_events,
    read_all_query,
    read_all_statements,
    read_window,
    replayed_result,
    stream_bucket,
    validate_append,
)
from lapor.store.open import sqlite_url
from lapor.store.vault import NoVault, SqliteVault, Vault

if TYPE_CHECKING:
    from lapor.store.writer import RemoteWriter

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

BUSY_TIMEOUT = 30.0  # seconds a connection waits for another's lock


def connect(path: str | Path, *, readonly: bool = False, uri: bool = False) -> sqlite3.Connection:
    """A connection with the pragmas every LAPOR SQLite file uses. `uri`: `path` is a `file:` URI."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False, uri=uri)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
    if not readonly:
        _enter_wal(conn)
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _enter_wal(conn: sqlite3.Connection) -> None:
    """`journal_mode = WAL`, waiting like any other statement would. Switching a new file to WAL needs it to
    itself, and SQLite answers "database is locked" at once, without its busy handler, when two processes (or
    two stores) open the same new file together."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    delay = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def rows_to_events(rows: Sequence[tuple]) -> list[RecordedEvent]:
    """Rows of COLUMNS as recorded events: event id and metadata are decoded on first access (see RecordedEvent).
    One comprehension with its callables bound locally: a replay turns millions of rows into events. A row that does
    not decode (changed in the file: SQLite keeps whatever it is given) is an `UnreadableEvent` naming it."""
    event, loads, moment = RecordedEvent, orjson.loads, datetime.fromisoformat
    try:
        return [event(r[0], r[1], r[2], r[3], r[4], r[5], loads(r[6]), r[7], moment(r[8]), r[9], r[10]) for r in rows]
    except (ValueError, TypeError):
        return decoded_events(rows, _row_to_event)


def _row_to_event(r: Sequence[Any]) -> RecordedEvent:
    """A row of COLUMNS as a recorded event, naming the field that does not decode (`UndecodableField`)."""
    return RecordedEvent(
        r[0], r[1], r[2], r[3], r[4], r[5], decoded("data", orjson.loads, r[6]), r[7],
        decoded("recorded_at", datetime.fromisoformat, r[8]), r[9], r[10],
    )


# A share is filtered in SQL, before a row is decoded, by `stream_bucket` registered on each read connection.
BUCKET_FUNCTION = "lapor_stream_bucket"
_READ_ALL = read_all_statements(f"SELECT {COLUMNS} FROM events", f"{BUCKET_FUNCTION}(stream)", "?")

_ROW_MARKS = "(?,?,?,?,?,?,?,?,?,?,?,?)"
INSERT_ROWS = 800  # rows per multi-row INSERT: 12 parameters each, well under SQLite's 32,766
HEAD_CACHE = 100_000  # stream heads remembered by the writer


class _Staged:
    """What a group has decided but not yet written: its rows, the stream heads and event ids they create, and
    the last position they take."""

    __slots__ = ("heads", "ids", "position", "rows")

    def __init__(self, position: int) -> None:
        self.position = position
        self.rows: list[tuple[Any, ...]] = []
        self.heads: dict[str, tuple[int, str]] = {}
        self.ids: dict[str, tuple[str, str, int, int]] = {}  # event id -> (event id, stream, version, position)


class SqliteGroup(GroupTransaction):
    """SQLite's side of a group commit: `acquire` takes turns with writers in other processes on a lock file,
    and `BEGIN IMMEDIATE` then takes the database's own write lock.

    A group is written in few statements, since every SQLite call gives up the GIL and a leader surrounded by
    busy threads waits to get it back: the stream heads and the last position come from memory (valid while
    `PRAGMA data_version` says no other connection has committed), each append is checked and hash-linked in
    Python, and all the group's rows go in by one multi-row INSERT. Only if that INSERT meets an event id that
    is already recorded is the group rolled back and written again one append at a time, each behind a
    savepoint (the retried append is then answered with its original result, a clash rejected alone)."""

    # A COMMIT that SQLite reports failed (a full disk, an I/O error) is rolled back here, in this process: no
    # answer can be lost on the way, as a server's can.
    failed_commit_is_undone = True

    def __init__(self, conn: sqlite3.Connection, clock: Clock, lock_path: str | Path) -> None:
        self.conn = conn
        self.clock = clock
        # Writers in other processes queue on an advisory lock beside the database, not on SQLite's own lock:
        # SQLite's busy handler polls, sleeping 1 ms and more between tries, while a process blocked in
        # flock(2) is woken the moment the lock is free (measured: 32 writer threads in 2 processes went from
        # ~3,300 to 3,900-4,500 commands/s). SQLite's lock still guards against any other program writing the file.
        self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        self._data_version: int | None = None
        self._position = 0  # the last committed position, as of `_data_version`
        self._heads: OrderedDict[str, tuple[int, str]] = OrderedDict()  # committed (version, hash) per stream
        self._staged = _Staged(0)

    def acquire(self) -> None:
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)  # gives up the GIL while it waits

    def release(self) -> None:
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._lock_fd)

    def begin(self) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        # Under the write lock nobody else can append, so the group counts positions on from here.
        data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        if data_version != self._data_version:  # another connection committed: bring what we remember up to date
            last = conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]
            if last < self._position or self._data_version is None:
                self._heads.clear()  # a file we do not know (or first use): read heads as they are needed
            elif last > self._position:
                # Recorded events never change, and positions are taken under this lock in commit order, so
                # what others wrote is exactly the positions after ours: one query moves just those heads.
                heads = self._heads
                for stream, version, hash_ in conn.execute(
                    "SELECT stream, version, hash FROM events WHERE position > ? ORDER BY position", (self._position,)
                ):  # (by position, not grouped: SQLite would group by walking the whole (stream, version) index)
                    if stream in heads:
                        heads[stream] = (version, hash_)
            self._position = last
            self._data_version = data_version
        self._staged = _Staged(self._position)

    def commit(self, results: Sequence[AppendResult]) -> None:
        self.conn.execute("COMMIT")
        staged = self._staged
        self._position = staged.position
        heads = self._heads
        for stream, head in staged.heads.items():
            heads[stream] = head
            heads.move_to_end(stream)
        while len(heads) > HEAD_CACHE:
            heads.popitem(last=False)

    def rollback(self) -> None:
        self._staged = _Staged(self._position)
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    # -- the group at once ------------------------------------------------------------------------------------

    def apply_all(self, batch: Sequence[PendingAppend]) -> list[AppendResult | Exception]:
        outcomes = each_outcome(batch, self._stage)
        rows = self._staged.rows
        try:
            for start in range(0, len(rows), INSERT_ROWS):
                chunk = rows[start : start + INSERT_ROWS]
                self.conn.execute(
                    f"INSERT INTO events VALUES {','.join([_ROW_MARKS] * len(chunk))}",
                    [value for row in chunk for value in row],
                )
        except sqlite3.IntegrityError:
            # An event id of the group is recorded already: start the group again, one append at a time.
            self.rollback()
            self.begin()
            return super().apply_all(batch)
        return outcomes

    def _head(self, stream: str) -> tuple[int, str]:
        staged = self._staged.heads.get(stream)
        if staged is not None:
            return staged
        head = self._heads.get(stream)
        if head is None:
            row = self.conn.execute(
                "SELECT version, hash FROM events WHERE stream = ? ORDER BY version DESC LIMIT 1", (stream,)
            ).fetchone()
            head = (row[0], row[1]) if row else (-1, GENESIS_HASH)
        return head

    def _stage(self, request: PendingAppend) -> AppendResult:
        stream, events, staged = request.stream, request.events, self._staged
        current, prev_hash = self._head(stream)
        try:
            check_expected(stream, request.expected, current)
        except WrongExpectedVersion:
            # A retry of an append that already committed finds the stream moved on by its own events.
            original = self._already_recorded(stream, events)
            if original is not None:
                return original
            raise
        if any(str(event.event_id) in staged.ids for event in events):
            original = self._already_recorded(stream, events)  # the same append twice in one group
            if original is not None:
                return original
            raise DuplicateEventId(f"{stream}: an event id of this append is already recorded")
        linked = link_events(
            stream,
            events,
            current_version=current,
            prev_hash=prev_hash,
            first_position=staged.position + 1,
            recorded_at=self.clock.now() if request.recorded_at is None else request.recorded_at,
        )
        category = category_of(stream)
        for e in linked:
            event_id = str(e.event_id)
            staged.rows.append(
                (
                    e.position,
                    event_id,
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
            )
            staged.ids[event_id] = (event_id, stream, e.version, e.position)
        last = linked[-1]
        staged.heads[stream] = (last.version, last.hash)
        staged.position = last.position
        return AppendResult(stream, linked[0].version, last.version, linked[0].position, last.position)

    # -- one append at a time, behind a savepoint -------------------------------------------------------------

    def apply(self, request: PendingAppend) -> AppendResult:
        # A savepoint per append: a duplicate id can surface half-way through the inserts.
        self.conn.execute("SAVEPOINT one_append")
        staged = self._staged
        rows, heads, position = len(staged.rows), dict(staged.heads), staged.position
        try:
            result = self._stage(request)
            self.conn.executemany(f"INSERT INTO events VALUES {_ROW_MARKS}", staged.rows[rows:])
        except sqlite3.IntegrityError as error:
            # An event id is already recorded: a retried append (answer with its original result) or a clash.
            self._undo(rows, heads, position)
            original = self._already_recorded(request.stream, request.events)
            if original is None:
                raise DuplicateEventId(f"{request.stream}: an event id of this append is already recorded") from error
            return original
        except (StoreError, ValueError):
            self._undo(rows, heads, position)
            raise
        self.conn.execute("RELEASE one_append")
        return result

    def _undo(self, rows: int, heads: dict[str, tuple[int, str]], position: int) -> None:
        self.conn.execute("ROLLBACK TO one_append")
        self.conn.execute("RELEASE one_append")
        staged = self._staged
        for row in staged.rows[rows:]:
            staged.ids.pop(row[1], None)
        del staged.rows[rows:]
        staged.heads, staged.position = heads, position

    def _already_recorded(self, stream: str, events: Sequence[NewEvent]) -> AppendResult | None:
        """The original result of `events` if they are recorded already: committed, or written earlier in
        this group."""
        staged = self._staged.ids
        first = staged.get(str(events[0].event_id))
        if first is not None:
            _, found_stream, found_version, _ = first
            recorded = [row for row in staged.values() if row[1] == found_stream and row[2] >= found_version]
            recorded.sort(key=lambda row: row[2])
            return replayed_result(stream, events, recorded[: len(events)])
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


def read_only_uri(path: Path) -> tuple[str, bool]:
    """The URI a read-only store opens `path` by, and whether it takes the file as immutable.

    A read-only connection (`mode=ro`) to a WAL file still creates the `-wal` and `-shm` files beside it when they
    are not there, and where they cannot be created (a directory on read-only media, or one the auditor may only
    read) it fails: "attempt to write a readonly database". Decided (session 31): where the file has no `-wal`
    beside it, nobody has it open (SQLite removes it when the last connection closes) and it is a copy or a store
    at rest, so it is read as `immutable=1`: no lock taken, nothing created, its WAL ignored (it has none). Where
    it has one, it is live or a copy taken with its WAL, whose latest events are there only: it is read by `mode=ro`,
    through the `-shm` that is already beside it. `SqliteEventStore.changed_while_read` says whether a writer
    opened an immutable one meanwhile, which the read could not see."""
    uri = "file:" + quote(str(path.absolute()))
    if Path(f"{path}-wal").exists():
        return f"{uri}?mode=ro", False
    return f"{uri}?mode=ro&immutable=1", True


class SqliteEventStore(EventStore):
    """`writer`: the socket of a writer process (`lapor.store.writer`) to send appends to, instead of committing
    them on a write connection of this store's own. `read_only`: reads only, writing nothing to the file or beside
    it (`read_only_uri`): no schema, no journal switch, no lock file, no vault; every append is refused."""

    def __init__(
        self, path: str | Path, *, clock: Clock | None = None, writer: str | Path | None = None, read_only: bool = False
    ) -> None:
        self.path = Path(path)
        self.url = sqlite_url(self.path, writer)
        self.read_only = read_only
        self._read_only_uri, self._immutable = read_only_uri(self.path) if read_only else ("", False)
        self._at_rest = self._file_state() if read_only else None
        self.clock = clock or SystemClock()
        self._notifier = Notifier()
        self._readers = PerThread(self._open_reader, sqlite3.Connection.close)
        # One thread of a process reads a stream at a time; the others wait on this lock. Python's sqlite3 gives
        # up the GIL for every step of a statement and must win it back: with dozens of command threads reading
        # at once, each step hands the GIL to another thread (a futex wake and a context switch), and an
        # in-process group-commit leader waits behind all of them for every statement it runs (32 writer threads
        # fell to ~1,700 commands/s; ~3,000 with two readers at a time). Through a writer process, one reader at
        # a time instead of any number took 32 threads from 6,654-8,436 to 8,910-9,987 commands/s with ~20 %
        # less CPU per command (docs/performance.md, session 9). The GIL runs one thread's Python at a time anyway.
        self._stream_reads = threading.Lock()
        self._closed = False
        self._write_conn: sqlite3.Connection | None = None
        self._group: SqliteGroup | None = None
        self._writer: GroupCommitWriter | RemoteWriter | ReadOnlyWriter
        if read_only:
            if writer is not None:
                raise ValueError("a store opened read-only has no writer")
            self._writer = ReadOnlyWriter()
            self.vault: Vault = NoVault()
            self._reader()  # a file SQLite cannot open is said here, as when opening for writing
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect(self.path)
        conn.executescript(SCHEMA)  # readable even before a writer process has opened the file
        if writer is None:
            self._write_conn = conn
            self._group = SqliteGroup(conn, self.clock, lock_path=f"{self.path}-writer.lock")
            self._writer = GroupCommitWriter(f"lapor-writer:{self.path.name}", self._group, self._notifier.publish)
        else:
            conn.close()
            from lapor.store.writer import RemoteWriter  # the writer process's module imports this one

            self._writer = RemoteWriter(writer, self.clock.now, self._notifier.publish)
        self.vault = SqliteVault(self.path.with_name(self.path.stem + "-vault.db"), clock=self.clock)

    def _file_state(self) -> tuple[int, int, bool]:
        stat = self.path.stat()
        return stat.st_mtime_ns, stat.st_size, Path(f"{self.path}-wal").exists()

    def changed_while_read(self) -> bool:
        """A store opened read-only as immutable (`read_only_uri`): whether a writer has opened or changed the file
        since it was opened, so that what was read may not be what the file holds. False for any other store."""
        if not self._immutable:
            return False
        try:
            return self._file_state() != self._at_rest
        except OSError:  # gone meanwhile
            return True

    def append(self, stream: str, events: Sequence[NewEvent], expected_version: ExpectedVersion = -2) -> AppendResult:
        validate_append(stream, events, expected_version)
        return self._writer.submit(stream, events, expected_version)

    # -- reading -----------------------------------------------------------------------------------------

    def _open_reader(self) -> sqlite3.Connection:
        if self.read_only:
            conn = connect(self._read_only_uri, readonly=True, uri=True)
        else:
            conn = connect(self.path, readonly=True)
        conn.create_function(BUCKET_FUNCTION, 1, stream_bucket, deterministic=True)
        return conn

    def _reader(self) -> sqlite3.Connection:
        return self._readers.get()

    def read_stream(self, stream: str, from_version: int = 0, limit: int | None = None) -> list[RecordedEvent]:
        from_version, limit = read_window(from_version, limit)
        with self._stream_reads:
            rows = (
                self._reader()
                .execute(
                    f"SELECT {COLUMNS} FROM events WHERE stream = ? AND version >= ? ORDER BY version LIMIT ?",
                    (stream, from_version, limit),
                )
                .fetchall()
            )
        return rows_to_events(rows)

    def read_all(
        self, from_position: int = 0, category: str | None = None, limit: int = 1000, share: StreamShare | None = None
    ) -> list[RecordedEvent]:
        statement, params = read_all_query(from_position, category, limit, share)
        rows = self._reader().execute(_READ_ALL[statement], params).fetchall()
        return rows_to_events(rows)

    def head_position(self, *, wait: float | None = None) -> int:
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
        if self._group is not None:
            self._group.close()
        if self._write_conn is not None:
            self._write_conn.close()
        self._readers.close()
        self.vault.close()
