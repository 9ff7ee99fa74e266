"""Read-model databases: where projections, checkpoints and parked events live.

One small wrapper over SQLite and PostgreSQL so that a projection is written once: SQL uses `?` placeholders
and the common subset of both dialects (`INSERT ... ON CONFLICT ... DO UPDATE`, `coalesce`, ...). A handler
gets a `Tx` and everything it writes commits together with its subscription's checkpoint.

Transactions are durable unless asked otherwise: the services keep a little state of their own here (follow-up
drafts, approval settings, notification targets) that nothing could restore, so an acknowledged write survives
a power cut (SQLite `synchronous=FULL`, PostgreSQL `synchronous_commit=on`). A subscription's transactions are
not (`durable=False`: SQLite `synchronous=NORMAL`, PostgreSQL `synchronous_commit=off`): a power cut may lose
the last committed projection batches, but never half of one, and since the checkpoint commits with the rows the
lost tail is simply read again from the event store, which itself is durable. Skipping that flush is what lets
projections keep up cheaply.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from lapor.lease import AdvisoryLease, FileLease, Lease
from lapor.per_thread import PerThread
from lapor.store.postgres import ANSWER_TIMEOUT, STORE_TIMEOUT_SETTING
from lapor.store.sqlite import connect

Dialect = Literal["sqlite", "postgresql"]
Params = Sequence[Any] | dict[str, Any]

# Seconds a statement on PostgreSQL's read models may wait for the server's answer once its transaction changes the
# schema (`Tx.lock_schema_changes`): CREATE INDEX on a table of millions of rows, and the wait for another process's
# schema changes, may rightly take minutes, where every other statement gets the answer timeout (session 30).
SCHEMA_CHANGE_TIMEOUT = 3600.0
SCHEMA_CHANGE_SOURCE = "lapor.db.SCHEMA_CHANGE_TIMEOUT, a schema change"


@lru_cache(maxsize=1024)
def _to_psycopg(sql: str) -> str:
    return re.sub(r"\?", "%s", sql.replace("%", "%%"))


class Tx:
    """One transaction (or read snapshot) on a read-model database."""

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self._conn = conn
        self.dialect: Dialect = dialect
        self._savepoints = 0

    def _sql(self, sql: str) -> str:
        return sql if self.dialect == "sqlite" else _to_psycopg(sql)

    def execute(self, sql: str, params: Params = ()) -> Any:
        return self._conn.execute(self._sql(sql), params)

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        if self.dialect == "sqlite":
            self._conn.executemany(sql, rows)
        else:
            with self._conn.cursor() as cur:
                cur.executemany(_to_psycopg(sql), rows)

    def fetchone(self, sql: str, params: Params = ()) -> tuple | None:
        return self.execute(sql, params).fetchone()

    def fetchall(self, sql: str, params: Params = ()) -> list[tuple]:
        return self.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: Params = ()) -> Any:
        row = self.fetchone(sql, params)
        return None if row is None else row[0]

    def lock_schema_changes(self) -> None:
        """Take turns with other processes changing this schema's tables, until this transaction ends. On
        PostgreSQL two `CREATE TABLE IF NOT EXISTS` of one table run at once can both go ahead and one fail (a
        unique violation in the catalogue); the store's DDL takes the same advisory lock. SQLite's write
        transactions already take turns."""
        if self.dialect == "postgresql":
            from lapor.store.postgres import DDL_LOCK_CLASS

            # The lock waits for another process's DDL, and so may ours.
            self.answer_within(SCHEMA_CHANGE_TIMEOUT, SCHEMA_CHANGE_SOURCE)
            self.execute("SELECT pg_advisory_xact_lock(?, hashtext(current_schema()))", (DDL_LOCK_CLASS,))

    def answer_within(self, seconds: float | None, source: str) -> None:
        """Until this transaction ends, each statement waits at most `seconds` for PostgreSQL's answer (None: for
        ever) instead of the database's answer timeout, and for a lock a little less (`lock_timeout`, session 31): for
        statements that may rightly take long. `source` names where the bound comes from, for the timeout's message.
        SQLite has no server to wait for."""
        if self.dialect == "postgresql":
            self._conn.bound_answers(seconds, source, lock_scope="transaction")  # lock waits too

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undo only what happens inside the block if it raises; the transaction goes on."""
        self._savepoints += 1
        name = f"sp_{self._savepoints}"
        self._conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException as error:
            try:
                self._conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                self._conn.execute(f"RELEASE SAVEPOINT {name}")
            except Exception:  # noqa: BLE001 - the block's error says why
                # The transaction itself is gone (SQLite rolls it back when the disk is full, a server ended the
                # connection): "no such savepoint" would hide the cause. Its own cause stays (session 31: `from None`
                # dropped it, and /readyz named a statement that got no answer a bare "StoreError").
                raise error from error.__cause__
            raise
        else:
            self._conn.execute(f"RELEASE SAVEPOINT {name}")


class Database(ABC):
    dialect: Dialect
    url: str

    @abstractmethod
    def transaction(self, *, durable: bool = True) -> Any:
        """Context manager yielding a `Tx`; commits on success, rolls back on error. `durable=False` for what
        can be rebuilt from the log (a subscription's rows with its checkpoint): the commit does not wait for the
        disk."""

    @abstractmethod
    def read(self, *, wait: float | None = None) -> Any:
        """Context manager yielding a `Tx` for reading (a consistent snapshot). `wait`: the longest, in seconds, to
        wait for a pooled connection (PostgreSQL) before failing; None is the pool's own bound, which every other
        read and transaction has. /readyz gives a short one (session 28). SQLite opens a local file and ignores it."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def lease(self, name: str) -> Lease:
        """The lease of `name` on this database (`lapor.lease`): one holder at a time across processes."""

    def executescript(self, statements: str) -> None:
        """Idempotent DDL (CREATE ... IF NOT EXISTS), `;`-separated."""
        with self.transaction() as tx:
            tx.lock_schema_changes()
            for statement in statements.split(";"):
                if statement.strip():
                    tx.execute(statement)


def table_exists(tx: Tx, table: str) -> bool:
    """Whether `table` is in the database (SQLite) or in the connection's schema (PostgreSQL)."""
    if tx.dialect == "sqlite":
        return tx.fetchone("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)) is not None
    return (
        tx.fetchone(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?",
            (table,),
        )
        is not None
    )


def table_columns(tx: Tx, table: str) -> list[str]:
    """The columns of `table`, in order (none when there is no such table)."""
    if tx.dialect == "sqlite":
        return [row[1] for row in tx.fetchall(f'PRAGMA table_info("{table}")')]
    rows = tx.fetchall(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = ? ORDER BY ordinal_position",
        (table,),
    )
    return [name for (name,) in rows]


def add_column(db: Database, table: str, column: str, definition: str) -> None:
    """Add `column` to a `table` created before it existed (rows written before get NULL). Looked for first, so the
    table is locked only the once; two processes starting together are kept apart by SQLite's one writer, and on
    PostgreSQL by the schema lock and IF NOT EXISTS."""
    with db.transaction() as tx:
        if column not in table_columns(tx, table):
            tx.lock_schema_changes()
            exists = " IF NOT EXISTS" if tx.dialect == "postgresql" else ""
            tx.execute(f"ALTER TABLE {table} ADD COLUMN{exists} {column} {definition}")


WRITER_CACHE_MB = 64  # SQLite's page cache for the one write connection (SQLite's own default is 2 MB)


class SqliteDatabase(Database):
    dialect: Dialect = "sqlite"

    def __init__(self, path: str | Path, *, writer_cache_mb: int = WRITER_CACHE_MB) -> None:
        """`writer_cache_mb`: pages the write connection may keep (taken only as used). Projections upsert rows
        all over their tables and indexes; a cache that holds them saves a read of the file per page touched."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.url = f"sqlite:///{self.path}"
        self._write_lock = threading.Lock()
        self._writer = connect(self.path)
        self._writer.execute(f"PRAGMA cache_size = {-1024 * writer_cache_mb}")
        self._durable = True
        self._readers = PerThread(lambda: connect(self.path), sqlite3.Connection.close)

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[Tx]:
        # One writer per process: threads queue here instead of spinning on SQLITE_BUSY.
        with self._write_lock:
            conn = self._writer
            if durable is not self._durable:  # set between transactions: it decides how COMMIT flushes
                conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
                self._durable = durable
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(conn, "sqlite")
            except BaseException:
                if conn.in_transaction:  # SQLite rolls back by itself on a full disk, an I/O error, ...
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def read(self, *, wait: float | None = None) -> Iterator[Tx]:
        conn = self._readers.get()
        conn.execute("BEGIN")
        try:
            yield Tx(conn, "sqlite")
        finally:
            conn.execute("ROLLBACK")

    def close(self) -> None:
        with self._write_lock:
            self._writer.close()
        self._readers.close()

    def lease(self, name: str) -> Lease:
        return FileLease(self.path.with_name(f"{self.path.name}-leases") / f"{name}.lease", name)


class PostgresDatabase(Database):
    dialect: Dialect = "postgresql"

    def __init__(self, url: str, *, max_size: int = 8, answer_timeout: float | None = ANSWER_TIMEOUT) -> None:
        """`answer_timeout`: seconds each statement waits for the server's answer (`LAPOR_STORE_TIMEOUT`) before it
        fails with a `StoreError`, its connection closed (`lapor.store.postgres.AnsweredConnection`); None waits for
        ever (`lapor rebuild`'s fresh tables). A statement under way when the server or the network to it went silent
        held its request thread or subscription for ever until session 30."""
        from psycopg_pool import ConnectionPool

        # As the store's: no plans kept on stale statistics, bounded waits for a server gone silent, and a
        # connection a server restart ended is replaced.
        from lapor.store.postgres import NEVER_PREPARE, AnsweredConnection, check_connection, network_timeouts

        self.url = url
        self.answer_timeout = answer_timeout
        self._pool = ConnectionPool(
            network_timeouts(url), min_size=1, max_size=max_size, open=True, connection_class=AnsweredConnection,
            kwargs={"autocommit": True, "prepare_threshold": NEVER_PREPARE},
            # Lock waits end on the server a little before the answer timeout (session 31: `AnsweredConnection`).
            configure=lambda conn: conn.bound_lock_waits(answer_timeout, STORE_TIMEOUT_SETTING),
            check=check_connection,
        )

    @contextmanager
    def _connection(self, wait: float | None = None) -> Iterator[Any]:
        """A pooled connection bounded by the database's answer timeout (whatever a transaction before lifted it to)."""
        with self._pool.connection(timeout=wait) as conn:
            conn.bound_answers(self.answer_timeout, STORE_TIMEOUT_SETTING)
            yield conn

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[Tx]:
        with self._connection() as conn, conn.transaction():
            if not durable:
                conn.execute("SET LOCAL synchronous_commit = off")
            yield Tx(conn, "postgresql")

    @contextmanager
    def read(self, *, wait: float | None = None) -> Iterator[Tx]:
        with self._connection(wait) as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                yield Tx(conn, "postgresql")
            finally:
                if not conn.closed:  # closed by a statement that got no answer (its error says so) or a lost server
                    conn.execute("ROLLBACK")

    def close(self) -> None:
        self._pool.close()

    def lease(self, name: str) -> Lease:
        return AdvisoryLease(self.url, name)


@lru_cache(maxsize=65_536)
def sortable_moment(at: datetime) -> str:
    """Fixed-width UTC text (microseconds always written), so that text order is time order in SQL on both
    dialects. Cached: projections write the same deadlines and moments again with every version of a report
    (equal datetimes are the same instant, so they share one text whatever their time zone)."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def setup_tables(statements: Sequence[str]) -> Callable[[Tx], None]:
    """A subscription's `setup`: run idempotent DDL statements (CREATE ... IF NOT EXISTS) in order."""

    def setup(tx: Tx) -> None:
        for statement in statements:
            tx.execute(statement)

    return setup


def sqlite_path(url: str) -> str | None:
    """The file path of a `sqlite://` read-model URL (empty when it names none), None for another URL."""
    scheme, sep, rest = url.partition("://")
    if scheme != "sqlite" or not sep:
        return None
    return rest[1:] if rest.startswith("/") else rest


def open_database(url: str, *, answer_timeout: float | None = ANSWER_TIMEOUT) -> Database:
    """`answer_timeout`: see `PostgresDatabase` (SQLite has no server to wait for)."""
    scheme = url.partition("://")[0]
    path = sqlite_path(url)
    if path is not None:
        if not path:
            raise ValueError("sqlite database URL needs a file path: sqlite:///var/readmodels.db")
        return SqliteDatabase(path)
    if scheme in {"postgresql", "postgres"}:
        return PostgresDatabase(url, answer_timeout=answer_timeout)
    raise ValueError(f"unknown read-model database URL {url!r}; expected sqlite:///path or postgresql://...")
