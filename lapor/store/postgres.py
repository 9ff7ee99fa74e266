"""PostgreSQL adapter (psycopg 3), opened by `open_store("postgresql://...")`.

Writing: the store's one write connection commits *groups* of appends (`lapor.store.group_commit`). Every write
transaction first locks the single row of `lapor_head`
(`SELECT ... FOR UPDATE`), so writers in all processes queue on it; positions are assigned while the lock is
held and the row is updated to the last one before COMMIT releases it. Hence commit order equals position
order, and a subscriber that has read position p will never later find a smaller position committing.
A plain sequence would be wrong here: `nextval()` hands out numbers at insert time, not at commit time, so a
transaction holding position 7 may commit after one holding 8; a reader that saw 8 and moved its checkpoint
past it would skip 7 for ever. The lock is taken before the expected-version and idempotency checks, so in
READ COMMITTED every check sees all commits made before ours.

Reading: a `psycopg_pool.ConnectionPool` of autocommit connections and binary cursors. `data` and `metadata`
are stored as `json` (the exact text written, NUL escapes included, which `jsonb` refuses) and read as text
through orjson, about twice as fast as letting psycopg decode `jsonb` (docs/store.md).

Waking: the write transaction NOTIFYs `lapor_events_<schema>` with its last position; one listener thread per
store (its own connection) feeds the in-process `Notifier`, so `wait_for_events` wakes on commits from any
process. Every statement is unqualified, so a URL carrying `options=-csearch_path%3D<schema>` keeps each store
(and each test) in its own schema.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
import psycopg
from psycopg import generators, pq, sql
from psycopg.abc import RV, Buffer, PQGen
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.datetime import TimestamptzBinaryLoader
from psycopg_pool import ConnectionPool

from lapor.clock import Clock, SystemClock
from lapor.lease import KEEPALIVE, SERVER_KEEPALIVE
from lapor.store.group_commit import GroupCommitWriter, GroupTransaction, PendingAppend, ReadOnlyWriter
from lapor.store.model import (
    ANY,
    GENESIS_HASH,
    SHARE_BUCKETS,
    SHARE_DIGITS,
    AppendResult,
    EventStore,
    ExpectedVersion,
    LockWaitExpired,
    NewEvent,
    Notifier,
    RecordedEvent,
    StoreError,
    StreamShare,
    UndecodableField,
    category_of,
    check_expected,
    decoded_events,
    link_events,
    read_all_query,
    read_all_statements,
    read_window,
    replayed_result,
    validate_append,
)
from lapor.store.vault import (
    ERASE_UNREFERENCED_SQL,
    PUT_SQL,
    SWEEP_BATCH,
    UNREFERENCED_INDEX,
    NoVault,
    Vault,
    VaultEntryErased,
    new_reference,
)

EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS events (
    position       bigint PRIMARY KEY,
    event_id       uuid NOT NULL CONSTRAINT events_event_id_unique UNIQUE,
    stream         text NOT NULL,
    category       text NOT NULL,
    version        integer NOT NULL,
    type           text NOT NULL,
    schema_version integer NOT NULL,
    data           json NOT NULL,
    metadata       json NOT NULL,
    recorded_at    timestamptz NOT NULL,
    prev_hash      text NOT NULL,
    hash           text NOT NULL,
    CONSTRAINT events_stream_version_unique UNIQUE (stream, version)
);
CREATE INDEX IF NOT EXISTS events_by_category ON events (category, position);
CREATE TABLE IF NOT EXISTS lapor_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    position  bigint NOT NULL
);
INSERT INTO lapor_head (position) SELECT coalesce(max(position), 0) FROM events ON CONFLICT DO NOTHING;
"""

VAULT_DDL = f"""
CREATE TABLE IF NOT EXISTS pii_vault (
    ref        text PRIMARY KEY,
    value      bytea,
    created_at timestamptz NOT NULL,
    erased_at  timestamptz
);
ALTER TABLE pii_vault ADD COLUMN IF NOT EXISTS referenced_at timestamptz;
{UNREFERENCED_INDEX};
"""

SELECT_EVENTS = (
    "SELECT event_id, stream, version, position, type, schema_version, data::text, metadata::text, recorded_at,"
    " prev_hash, hash FROM events"
)
# A share is filtered in SQL by the same hash as `lapor.store.model.stream_bucket`: the first 28 bits of the
# stream name's MD5, modulo SHARE_BUCKETS.
_BUCKET = f"('x' || substr(md5(stream), 1, {SHARE_DIGITS}))::bit({SHARE_DIGITS * 4})::int %% {SHARE_BUCKETS}"
_READ_ALL = read_all_statements(SELECT_EVENTS, _BUCKET, "%s")
INSERT_EVENT = (
    "INSERT INTO events (position, event_id, stream, category, version, type, schema_version, data, metadata,"
    " recorded_at, prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)

# Two-key advisory lock around DDL: a constant class ("LAPR") and the schema, so stores starting at once in
# one schema create the tables once, and different schemas do not wait for each other.
DDL_LOCK_CLASS = 0x4C415052
POOL_MAX_SIZE = 10
# A blocked `wait_for_events` also looks at the head this often, in case the listener lost its connection
# and is reconnecting; while it is connected, NOTIFY wakes readers at once.
LISTENER_SAFETY_POLL = 5.0
LISTENER_RECONNECT_DELAY = 1.0
# Seconds closing the store waits to stop its listener (for a pooled connection to notify it on, then for the
# thread). During an outage it gives up after that: a stopping service does not wait the pool's 30 s (session 28).
LISTENER_STOP_WAIT = 1.0
# No server-side prepared statements: psycopg prepares a query after five runs, and after five more PostgreSQL
# may keep a generic plan chosen on the statistics of that moment. A store that started on a small table (or a
# server whose statistics lag, autovacuum off) then kept scanning it: appends went from 1.5 ms to 12.8 ms after
# 40,000 events, and to 22 ms after 10^5 (benchmarks/bench_store.py), while a store opened afterwards, or the
# same one after ANALYZE, appended in 1.6 ms. Planned for each call's parameters, every query uses its index.
NEVER_PREPARE = None
# Every query of the store reads an index in its order ("from this position, in order, the first n"). Without
# fresh statistics (a store that grew since the last ANALYZE; autovacuum off) the planner took a bitmap scan of
# everything past the position and sorted it for each page: 777 ms a page of 10,000 at 10^6 events against 9 ms
# in index order, and a replay of 10^6 events at 11,574 events/s. With bitmap scans off it keeps the index order.
STORE_SESSION = "SET enable_bitmapscan = off"
# Seconds a pooled connection's check (an empty query, before the pool hands it out) waits for the server's answer.
# A server that accepts and acknowledges but never answers (hung, or a proxy in front of it that is) is noticed by
# no TCP timeout; the check waited for ever, and with it /readyz and every request (session 28).
CHECK_TIMEOUT = 2.0
# Seconds a statement of the store (a read, a group's write, its commit) waits for the server's answer by default
# (`LAPOR_STORE_TIMEOUT`). A server that accepts and acknowledges but never answers (a partition behind a proxy, a
# hung server) is noticed by no TCP timeout once the statement is sent: it waited for ever (session 30).
ANSWER_TIMEOUT = 30.0
# A vault erase's VACUUM of `pii_vault` scans the whole table: on a large vault it may rightly take longer than a
# statement is given, yet a server gone silent must not hold it for ever either.
VACUUM_TIMEOUT = 900.0
# Where a connection's answer bound comes from, as its timeout's message names it.
STORE_TIMEOUT_SETTING = "LAPOR_STORE_TIMEOUT"
VACUUM_SOURCE = "VACUUM_TIMEOUT, a vault erase's VACUUM"

log = logging.getLogger(__name__)


def network_timeouts(url: str) -> str:
    """`url` as a conninfo string with the network bounds of `lapor.lease.KEEPALIVE` it does not set itself (the
    operator's URL wins): a connection attempt gives up after `connect_timeout`, and a connection whose server went
    silent (a partition, a host gone) fails after `tcp_user_timeout`, or after the keepalives when idle, instead of
    waiting for ever (session 28)."""
    given = conninfo_to_dict(url)
    return make_conninfo(url, **{key: value for key, value in KEEPALIVE.items() if key not in given})


def check_connection(conn: psycopg.Connection) -> None:
    """The pools' check of a connection before handing it out: psycopg_pool's own empty query, but an answer that
    does not come within CHECK_TIMEOUT closes the connection and fails the check (the pool tries another).
    `Connection.wait`'s `timeout` came with psycopg 3.3.6, the version pyproject.toml asks for at least."""
    try:
        with conn.lock:
            conn.pgconn.send_query(b"")
            results = conn.wait(generators.execute(conn.pgconn), timeout=CHECK_TIMEOUT)
    except psycopg.OperationalError:  # no answer in time (psycopg's wait timeout is one), or the connection broke
        conn.close()
        raise
    if [result.status for result in results] != [pq.ExecStatus.EMPTY_QUERY]:
        conn.close()
        raise psycopg.OperationalError(f"the connection check got {[result.status for result in results]}")


class AnsweredConnection(psycopg.Connection[Any]):
    """A connection of the store, or of PostgreSQL read models (`lapor.db.PostgresDatabase`), whose every wait for
    the server (a statement, a commit, a pipeline's sync) ends after `answer_timeout` seconds with a `StoreError`, the
    connection closed: a statement may still be under way, so it cannot be used again. A wait given its own timeout
    (the pools' check, `CHECK_TIMEOUT`) keeps it.

    A wait for a lock another session holds ends a little sooner, and on the server (session 31): the session's
    `lock_timeout` is kept below the answer timeout (`lock_wait_within`), so PostgreSQL itself answers
    LockNotAvailable, raised as `LockWaitExpired` (a `StoreError` saying how long it waited), and the connection
    stays usable. Until then such a statement ran into the answer timeout as a silent server does: the connection
    was closed, and the message could only guess between the two."""

    answer_timeout: float | None = None  # set by `_store_session`; None waits as psycopg does, for ever
    # Where `answer_timeout` came from, which the timeout's message names (session 31: it always said
    # LAPOR_STORE_TIMEOUT, also for a vault erase's VACUUM_TIMEOUT or a schema change's bound).
    answer_source: str = STORE_TIMEOUT_SETTING
    # The session's `lock_timeout` before ours (the URL's options, the role's or the database's settings), seconds:
    # kept where it is shorter. None: none (0).
    own_lock_timeout: float | None = None
    # The `lock_timeout` in force, seconds (None: none), and where it came from, for `LockWaitExpired`'s message.
    lock_wait: float | None = None
    lock_source: str = STORE_TIMEOUT_SETTING

    def bound_answers(self, seconds: float | None, source: str, *, lock_scope: LockScope | None = None) -> None:
        """Waits for the server bounded by `seconds` (None: for ever) from now on, a bound `source` set, and lock
        waits a little less (`lock_wait_within`). `lock_scope`: whether to set the server's `lock_timeout` so, for
        the session or until the transaction ends; None when it is already so (a pooled connection handed out again,
        whose transaction's own bound ended with it)."""
        self.answer_timeout, self.answer_source = seconds, source
        derived, own = lock_wait_within(seconds), self.own_lock_timeout
        if own is not None and (derived is None or own <= derived):
            self.lock_wait, self.lock_source = own, "the session's own lock_timeout"
        else:
            self.lock_wait, self.lock_source = derived, source
        if lock_scope is not None:
            value = "0" if self.lock_wait is None else f"{max(1, round(self.lock_wait * 1000))}ms"
            self.execute("SELECT set_config('lock_timeout', %s, %s)", (value, lock_scope == "transaction"))

    def bound_lock_waits(self, answer_timeout: float | None, source: str) -> None:
        """At the session's start: note its own `lock_timeout`, then bound answers and lock waits (for the session)."""
        setting = _single(self.execute("SELECT setting::bigint FROM pg_settings WHERE name = 'lock_timeout'"))
        self.own_lock_timeout = setting / 1000 if setting else None
        self.bound_answers(answer_timeout, source, lock_scope="session")

    @contextmanager
    def answering_within(self, seconds: float, source: str) -> Iterator[None]:
        """Waits for the server (and for locks) bounded by `seconds` instead, while in the block (a statement known
        to be long, outside a transaction); `source` names where that bound comes from."""
        before = self.answer_timeout, self.answer_source
        self.bound_answers(seconds, source, lock_scope="session")
        try:
            yield
        finally:
            if not self.closed:  # closed by a wait that got no answer: nothing to restore
                self.bound_answers(*before, lock_scope="session")

    def wait(self, gen: PQGen[RV], interval: float | None = None, timeout: float | None = None) -> RV:
        bound = self.answer_timeout if timeout is None else None
        source, lock_wait, lock_source = self.answer_source, self.lock_wait, self.lock_source
        options = {} if interval is None else {"interval": interval}
        started = time.monotonic()
        try:
            return super().wait(gen, timeout=timeout if bound is None else bound, **options)
        except psycopg.errors.LockNotAvailable as error:  # the server's answer: the connection is fine
            waited = "would not wait" if lock_wait is None else f"waited {lock_wait:g} s ({lock_source})"
            raise LockWaitExpired(
                f"PostgreSQL {waited} for a lock another session holds, and gave up: the statement failed (its "
                "transaction rolled back); the connection is kept"
            ) from error
        except psycopg.OperationalError as error:  # psycopg's wait timeout is one; so is a connection that broke
            if bound is None or time.monotonic() - started < bound:
                raise
            self.close()
            raise StoreError(
                f"PostgreSQL did not answer within {bound:g} s ({source}): the server or the network to it "
                "went silent, or the statement itself ran that long (a wait for a lock ends sooner, on the server: "
                "LockWaitExpired); the connection is closed"
            ) from error


LockScope = Literal["session", "transaction"]
# A session's `lock_timeout`, below its answer timeout by this much (or a tenth of it, whichever is more): the
# server's LockNotAvailable comes before the client gives up on the answer and closes the connection.
LOCK_MARGIN = 2.0
LOCK_SHARE = 0.9


def lock_wait_within(answer_timeout: float | None) -> float | None:
    """The `lock_timeout`, seconds, of a session whose answers are bounded by `answer_timeout` (None: none)."""
    if answer_timeout is None:
        return None
    return max(answer_timeout - LOCK_MARGIN, answer_timeout * LOCK_SHARE)


def _store_session(conn: AnsweredConnection, answer_timeout: float) -> None:
    """Settings of every connection the store opens (see STORE_SESSION, ANSWER_TIMEOUT)."""
    conn.execute(STORE_SESSION)
    conn.bound_lock_waits(answer_timeout, STORE_TIMEOUT_SETTING)
    if not conn.autocommit:
        conn.commit()


def _connect(url: str, answer_timeout: float) -> AnsweredConnection:
    """The group's connection: a transaction per group, settings of the store. It holds `lapor_head`'s row lock
    while a group is written, so the server watches it as the leases' connections (`SERVER_KEEPALIVE`): a writer
    whose host or network vanished mid-group released the lock only when the server's own TCP timers gave up on it
    (about two hours by default), and every other process's appends failed until then (session 30)."""
    conn = AnsweredConnection.connect(network_timeouts(url), prepare_threshold=NEVER_PREPARE)
    _store_session(conn, answer_timeout)
    conn.execute(SERVER_KEEPALIVE)
    conn.commit()
    return conn


def events_table_exists(url: str) -> bool:
    """Whether the store's `events` table is in the URL's schema (its search_path), without creating anything."""
    with psycopg.connect(network_timeouts(url), autocommit=True) as conn:
        return bool(_single(conn.execute("SELECT to_regclass('events') IS NOT NULL")))


def create_tables(conn: psycopg.Connection, ddl: str) -> None:
    """Idempotent DDL in the connection's current schema, safe when several processes start at once."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (DDL_LOCK_CLASS,))
        conn.execute(ddl)


def _single(cursor: psycopg.Cursor[Any]) -> Any:
    """The value of a query that always returns one row of one column."""
    row = cursor.fetchone()
    if row is None:
        raise RuntimeError("the query returned no row")
    return row[0]


def channel_for(schema: str) -> str:
    """The NOTIFY channel of the store in `schema`; hashed when the name would exceed PostgreSQL's 63 bytes."""
    channel = f"lapor_events_{schema}"
    if len(channel.encode()) > 63:
        channel = "lapor_events_" + hashlib.sha256(schema.encode()).hexdigest()[:32]
    return channel


def _event(row: Sequence[Any]) -> RecordedEvent:
    return RecordedEvent(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        orjson.loads(row[6]),
        row[7],  # metadata is decoded on first access (see RecordedEvent)
        # The session's TimeZone decides the offset psycopg returns; the hash chain was computed in UTC.
        row[8].astimezone(UTC),
        row[9],
        row[10],
    )


class _LenientTimestamptz(TimestamptzBinaryLoader):
    """A `timestamptz` Python cannot hold ('infinity', a year past 9999: a row changed in the database) loaded as
    psycopg's words about it, for `_checked_event` to name the event, where it failed the whole read."""

    def load(self, data: Buffer) -> datetime | str:  # type: ignore[override]  # the text, for `_checked_event`
        try:
            return super().load(data)
        except psycopg.DataError as error:
            return str(error)


def _checked_event(row: Sequence[Any]) -> RecordedEvent:
    """`_event` of a row read with `_LenientTimestamptz`, or of one that failed it: naming the field that does not
    decode (`UndecodableField`)."""
    if isinstance(row[8], str):
        raise UndecodableField("recorded_at", ValueError(row[8]))
    try:
        return _event(row)
    except (ValueError, TypeError) as error:  # with its time read, what is left to decode is the data
        raise UndecodableField("data", error) from error


class PostgresGroup(GroupTransaction):
    """PostgreSQL's side of a group commit. Reconnects after a failed group when the connection broke."""

    def __init__(self, url: str, clock: Clock, channel: str, answer_timeout: float) -> None:
        self.url = url
        self.clock = clock
        self.channel = channel
        self.answer_timeout = answer_timeout
        self.conn = _connect(url, answer_timeout)
        self.head = 0  # the last position assigned in the open transaction

    def begin(self) -> None:
        if self.conn.closed:
            self.conn = _connect(self.url, self.answer_timeout)
        self.head = _single(self.conn.execute("SELECT position FROM lapor_head FOR UPDATE"))

    def apply(self, request: PendingAppend) -> AppendResult:
        # No savepoint needed: every id and the version are checked before anything is written, and under the
        # head lock nobody else can record one of these ids in between. A failing INSERT fails the whole group.
        conn = self.conn
        stream, events = request.stream, request.events
        with conn.pipeline():  # both checks in one round trip
            recorded_query = conn.execute(
                "SELECT event_id, stream, version, position FROM events WHERE event_id = ANY(%s)"
                " ORDER BY stream, version",
                ([event.event_id for event in events],),
            )
            last_query = conn.execute(
                "SELECT version, hash FROM events WHERE stream = %s ORDER BY version DESC LIMIT 1", (stream,)
            )
        recorded, last = recorded_query.fetchall(), last_query.fetchone()
        if recorded:
            return replayed_result(stream, events, recorded)
        current, prev_hash = (last[0], last[1]) if last else (-1, GENESIS_HASH)
        check_expected(stream, request.expected, current)
        linked = link_events(
            stream,
            events,
            current_version=current,
            prev_hash=prev_hash,
            first_position=self.head + 1,
            # Stored as an instant, read back in UTC: hash it in UTC so the chain verifies after the round trip.
            recorded_at=self.clock.now().astimezone(UTC),
        )
        category = category_of(stream)
        rows = [
            (
                e.position,
                e.event_id,
                stream,
                category,
                e.version,
                e.type,
                e.schema_version,
                orjson.dumps(e.data).decode(),
                orjson.dumps(e.metadata).decode(),
                e.recorded_at,
                e.prev_hash,
                e.hash,
            )
            for e in linked
        ]
        with conn.cursor() as cur:
            cur.executemany(INSERT_EVENT, rows)
        self.head = linked[-1].position
        return AppendResult(stream, linked[0].version, linked[-1].version, linked[0].position, linked[-1].position)

    def commit(self, results: Sequence[AppendResult]) -> None:
        with self.conn.pipeline():
            if results:
                self.conn.execute("UPDATE lapor_head SET position = %s", (self.head,))
                self.conn.execute("SELECT pg_notify(%s, %s)", (self.channel, str(self.head)))
            self.conn.commit()

    def rollback(self) -> None:
        try:
            self.conn.rollback()
        except psycopg.OperationalError:
            # The connection is gone (the failure the group already reported); `begin` opens a new one.
            self.conn.close()

    def close(self) -> None:
        self.conn.close()


class _Listener:
    """LISTENs on the store's channel with a dedicated connection and publishes each committed head to the
    notifier. LISTEN is in place before the constructor returns, so no commit after it goes unnoticed."""

    def __init__(self, url: str, channel: str, notifier: Notifier, current_head: Callable[[], int]) -> None:
        self._url = url
        self._channel = channel
        self._notifier = notifier
        self._current_head = current_head
        # A private channel to stop the thread at once: `notifies()` blocks in the driver.
        self._stop_channel = f"lapor_stop_{uuid.uuid4().hex}"
        self._stopping = threading.Event()
        conn = self._connect()
        self._thread = threading.Thread(target=self._run, args=(conn,), name=f"lapor-listener:{channel}", daemon=True)
        self._thread.start()

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(network_timeouts(self._url), autocommit=True)
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._stop_channel)))
        return conn

    def _run(self, conn: psycopg.Connection | None) -> None:
        while conn is not None:
            try:
                with conn:
                    for notify in conn.notifies():
                        if notify.channel == self._stop_channel:
                            return
                        self._notifier.publish(int(notify.payload))
            except psycopg.OperationalError:
                conn = self._reconnect()

    def _reconnect(self) -> psycopg.Connection | None:
        """A new listening connection after the server went away, or None when the store is closing. Publishes
        the head, to wake readers for commits made while nobody listened."""
        while not self._stopping.wait(LISTENER_RECONNECT_DELAY):
            try:
                conn = self._connect()
            except psycopg.OperationalError:
                continue
            if self._stopping.is_set():  # `stop` may have notified before this LISTEN was in place
                conn.close()
                return None
            self._notifier.publish(self._current_head())
            return conn
        return None

    def stop(self, pool: ConnectionPool[Any]) -> None:
        """Stop the thread, notifying it on a connection of `pool`. When the server is out of reach, gives up after
        LISTENER_STOP_WAIT (a warning): the thread is a daemon, and it ends when its connection fails or at exit."""
        self._stopping.set()
        try:
            # After a server restart the pooled connections are dead: the pool's check hands out a new one, so
            # stopping does not fail in turn and hide what the caller was saying about it.
            with pool.connection(timeout=LISTENER_STOP_WAIT) as conn:
                conn.execute("SELECT pg_notify(%s, '')", (self._stop_channel,))
        except psycopg.OperationalError as error:  # psycopg_pool's PoolTimeout is one
            log.warning("closing the store without stopping its listener %s: %s: %s", self._thread.name,
                        type(error).__name__, error)
            return
        self._thread.join(LISTENER_STOP_WAIT)
        if self._thread.is_alive():
            log.warning("closing the store without stopping its listener %s: it did not stop within %s s",
                        self._thread.name, LISTENER_STOP_WAIT)


# What a store opened read-only sets on each of its sessions: the server itself refuses any write of theirs.
READ_ONLY_SESSION = "SET default_transaction_read_only = on"


class PostgresEventStore(EventStore):
    def __init__(
        self, url: str, *, clock: Clock | None = None, answer_timeout: float | None = None, read_only: bool = False
    ) -> None:
        """`answer_timeout`: see ANSWER_TIMEOUT, the default. `read_only` (`lapor audit verify`, session 31): no
        DDL, no writer's connection, no LISTEN, no vault, every append refused, and each session read-only
        (READ_ONLY_SESSION), so it needs no more than SELECT on `events` and `lapor_head`."""
        answer_timeout = ANSWER_TIMEOUT if answer_timeout is None else answer_timeout
        self.url = url
        self.clock = clock or SystemClock()
        self._notifier = Notifier()
        with psycopg.connect(network_timeouts(url), autocommit=True) as conn:
            if not read_only:
                create_tables(conn, EVENTS_DDL + VAULT_DDL)
            schema = _single(conn.execute("SELECT current_schema()"))
        channel = channel_for(schema)

        def configure(conn: AnsweredConnection) -> None:
            if read_only:
                conn.execute(READ_ONLY_SESSION)
            _store_session(conn, answer_timeout)

        self._pool = ConnectionPool(
            network_timeouts(url),
            min_size=1,
            max_size=POOL_MAX_SIZE,
            connection_class=AnsweredConnection,
            kwargs={"autocommit": True, "prepare_threshold": NEVER_PREPARE},
            configure=configure,
            # A connection the server ended (a restart) is replaced before it is handed out, not failed by a read.
            check=check_connection,
            name=f"lapor-readers:{schema}",
            open=True,
        )
        self._closed = False
        self._group: PostgresGroup | None = None
        self._listener: _Listener | None = None
        self._writer: GroupCommitWriter | ReadOnlyWriter
        self.vault: Vault
        if read_only:  # a reader polls the head (`wait_for_events`), as when a NOTIFY is lost
            self._writer, self.vault = ReadOnlyWriter(), NoVault()
            return
        self._group = PostgresGroup(url, self.clock, channel, answer_timeout)
        self._writer = GroupCommitWriter(f"lapor-writer:{schema}", self._group, self._notifier.publish)
        self._listener = _Listener(url, channel, self._notifier, self.head_position)
        self.vault = PostgresVault(self._pool, clock=self.clock)

    def append(self, stream: str, events: Sequence[NewEvent], expected_version: ExpectedVersion = ANY) -> AppendResult:
        validate_append(stream, events, expected_version)
        return self._writer.submit(stream, events, expected_version)

    def _fetch(
        self, query: str, params: Sequence[Any], wait: float | None = None, *, lenient: bool = False
    ) -> list[tuple[Any, ...]]:
        """`wait`: how long to wait for a pooled connection; None is the pool's own 30 s. `lenient`: a `timestamptz`
        Python cannot hold is read as text (`_LenientTimestamptz`)."""
        with self._pool.connection(timeout=wait) as conn, conn.cursor(binary=True) as cur:
            if lenient:
                cur.adapters.register_loader("timestamptz", _LenientTimestamptz)
            return cur.execute(query, params).fetchall()

    def _events(self, query: str, params: Sequence[Any]) -> list[RecordedEvent]:
        """The events a query of SELECT_EVENTS finds; `UnreadableEvent` at the first that does not decode (`json`
        keeps a lone surrogate escape or a number past a double, which orjson refuses; `timestamptz` keeps years
        Python cannot hold): each failed the whole read, for good."""
        try:
            rows = self._fetch(query, params)
        except psycopg.DataError:  # a `recorded_at` out of Python's range: read again to find whose
            return decoded_events(self._fetch(query, params, lenient=True), _checked_event)
        try:
            return [_event(row) for row in rows]
        except (ValueError, TypeError):
            return decoded_events(rows, _checked_event)

    def read_stream(self, stream: str, from_version: int = 0, limit: int | None = None) -> list[RecordedEvent]:
        from_version, limit = read_window(from_version, limit)
        return self._events(
            f"{SELECT_EVENTS} WHERE stream = %s AND version >= %s ORDER BY version LIMIT %s",
            (stream, from_version, limit),
        )

    def read_all(
        self, from_position: int = 0, category: str | None = None, limit: int = 1000, share: StreamShare | None = None
    ) -> list[RecordedEvent]:
        statement, params = read_all_query(from_position, category, limit, share)
        return self._events(_READ_ALL[statement], params)

    def head_position(self, *, wait: float | None = None) -> int:
        return self._fetch("SELECT position FROM lapor_head", (), wait)[0][0]

    def stream_version(self, stream: str) -> int:
        version = self._fetch("SELECT max(version) FROM events WHERE stream = %s", (stream,))[0][0]
        return -1 if version is None else version

    def wait_for_events(self, after_position: int, timeout: float) -> bool:
        return self._notifier.wait_for_commit(self.head_position, after_position, timeout, LISTENER_SAFETY_POLL)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        if self._group is not None:
            self._group.close()
        if self._listener is not None:
            self._listener.stop(self._pool)
        self._pool.close()
        self.vault.close()


def _scrub(conn: AnsweredConnection) -> None:
    """After an erase: the row as it was, value and all, stays on the table's pages (and its TOAST table's) until
    a VACUUM removes it; autovacuum may never come for one row. The pool's connections are in autocommit, so
    VACUUM runs outside a transaction, as it must. It is given VACUUM_TIMEOUT, not the store's answer timeout."""
    with conn.answering_within(VACUUM_TIMEOUT, VACUUM_SOURCE):
        conn.execute("VACUUM pii_vault")


class PostgresVault(Vault):
    """The PII vault in the store's database (table `pii_vault`), on the store's connection pool."""

    def __init__(self, pool: ConnectionPool[Any], *, clock: Clock) -> None:
        self._pool = pool
        self._clock = clock

    def put(self, value: dict[str, Any], *, ref: str | None = None) -> str:
        ref = ref or new_reference()
        with self._pool.connection() as conn:
            conn.execute(PUT_SQL.format("%s"), (ref, orjson.dumps(value), self._clock.now()))
        return ref

    def get(self, ref: str) -> dict[str, Any] | None:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT value, erased_at FROM pii_vault WHERE ref = %s", (ref,)).fetchone()
        if row is None:
            return None
        if row[1] is not None:
            raise VaultEntryErased(ref)
        return orjson.loads(row[0])

    def erase(self, ref: str) -> bool:
        with self._pool.connection() as conn:
            cur = conn.execute(
                "UPDATE pii_vault SET value = NULL, erased_at = %s WHERE ref = %s AND erased_at IS NULL",
                (self._clock.now(), ref),
            )
            if cur.rowcount == 0:
                return False
            _scrub(conn)
            return True

    def erase_unreferenced(self, created_before: datetime, *, limit: int = SWEEP_BATCH) -> list[str]:
        with self._pool.connection() as conn:
            refs = [row[0] for row in conn.execute(
                ERASE_UNREFERENCED_SQL.format("%s"), (self._clock.now(), created_before, limit, created_before)
            ).fetchall()]
            if refs:
                _scrub(conn)
        return refs

    def mark_referenced(self, refs: Collection[str]) -> None:
        if refs:
            with self._pool.connection() as conn:
                conn.execute(
                    "UPDATE pii_vault SET referenced_at = %s WHERE ref = ANY(%s) AND referenced_at IS NULL",
                    (self._clock.now(), list(refs)),
                )

    def close(self) -> None:
        """Nothing to release: the pool belongs to the store, which closes it."""
