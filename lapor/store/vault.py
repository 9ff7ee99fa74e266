"""The PII vault: reporter identity (name, phone, email, NIK) and the originals of masked text live here,
keyed by an opaque reference; events carry only the reference (UU PDP 27/2022). Erasing an entry keeps a
tombstone, so the history stays intact and a reader can tell "erased" from "never existed". The erased value is
also gone from the vault's files (see docs/store.md for what that does and does not reach)."""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from lapor.clock import Clock

log = logging.getLogger("lapor.store.vault")

SWEEP_BATCH = 500  # entries `erase_unreferenced` erases at most in one call (one scrub of the files for them all)


class VaultEntryErased(LookupError):
    """The entry existed and was erased on request."""


class VaultError(Exception):
    """The vault could not store an entry (the disk, the database); nothing of the entry was kept."""


def new_reference() -> str:
    return "pii_" + secrets.token_urlsafe(18)


class Vault(ABC):
    @abstractmethod
    def put(self, value: dict[str, Any], *, ref: str | None = None) -> str:
        """Store `value` and return its reference (`ref` when given: lets a retried command reuse one)."""

    @abstractmethod
    def get(self, ref: str) -> dict[str, Any] | None:
        """The value, None if no such reference; raises VaultEntryErased for an erased one."""

    @abstractmethod
    def erase(self, ref: str) -> bool:
        """Forget the value; True if there was one to forget."""

    @abstractmethod
    def mark_referenced(self, refs: Collection[str]) -> None:
        """Note that a recorded event refers to each of `refs` (unknown ones are passed over): such an entry is
        never erased by `erase_unreferenced`. Marking one again changes nothing."""

    @abstractmethod
    def erase_unreferenced(self, created_before: datetime, *, limit: int = SWEEP_BATCH) -> list[str]:
        """Erase, as `erase` does, up to `limit` entries written before `created_before` that were never marked
        referenced; returns their references. Each entry is checked and erased in one statement, so an entry
        marked, or written again by a retry, meanwhile is left alone."""

    @abstractmethod
    def close(self) -> None: ...

    def identity(self, ref: str | None) -> dict[str, Any] | None:
        """The value for a reader that scrubs it from texts: None without a reference, for an unknown one, and for
        an erased one (only the masked text remains)."""
        if not ref:
            return None
        try:
            return self.get(ref)
        except VaultEntryErased:
            return None


VAULT_SCHEMA = """
CREATE TABLE IF NOT EXISTS pii_vault (
    ref           TEXT PRIMARY KEY,
    value         BLOB,
    created_at    TEXT NOT NULL,
    erased_at     TEXT,
    referenced_at TEXT
);
"""
# The entries a sweep looks at: those no recorded event has been seen to refer to (few, and young, once the
# marking has caught up), by age.
UNREFERENCED_INDEX = (
    "CREATE INDEX IF NOT EXISTS pii_vault_unreferenced ON pii_vault (created_at)"
    " WHERE referenced_at IS NULL AND erased_at IS NULL"
)
# A put under a reference whose entry was erased unreferenced (a keyed submission retried after the sweep: its
# references are derived from the key) writes the value again; the event it is for is not recorded yet. An entry
# erased on request belongs to a recorded report, whose retry is answered from the log without a put.
PUT_SQL = (
    "INSERT INTO pii_vault (ref, value, created_at) VALUES ({0}, {0}, {0}) ON CONFLICT (ref) DO UPDATE"
    " SET value = excluded.value, created_at = excluded.created_at, erased_at = NULL"
    " WHERE pii_vault.erased_at IS NOT NULL AND pii_vault.referenced_at IS NULL"
)
ERASE_UNREFERENCED_SQL = (
    "UPDATE pii_vault SET value = NULL, erased_at = {0} WHERE ref IN (SELECT ref FROM pii_vault"
    " WHERE referenced_at IS NULL AND erased_at IS NULL AND created_at < {0} ORDER BY created_at LIMIT {0})"
    " AND referenced_at IS NULL AND erased_at IS NULL AND created_at < {0} RETURNING ref"
)


def _utc_text(moment: datetime) -> str:
    """How the SQLite vault writes a moment: ISO 8601 in UTC, so that text order is time order."""
    return moment.astimezone(UTC).isoformat()


class _QueuedPut:
    __slots__ = ("done", "error", "row")

    def __init__(self, row: tuple[str, bytes, str]) -> None:
        self.row = row
        self.done = False
        self.error: BaseException | None = None


class NoVault(Vault):
    """The vault of a store opened read-only (`lapor audit verify`, session 31): none is opened, since opening one
    creates its file or table. Whatever asks it for an entry is told so: what reads a log needs no identity."""

    def _refuse(self) -> VaultError:
        return VaultError("the store was opened read-only, without its vault")

    def put(self, value: dict[str, Any], *, ref: str | None = None) -> str:
        raise self._refuse()

    def get(self, ref: str) -> dict[str, Any] | None:
        raise self._refuse()

    def erase(self, ref: str) -> bool:
        raise self._refuse()

    def mark_referenced(self, refs: Collection[str]) -> None:
        raise self._refuse()

    def erase_unreferenced(self, created_before: datetime, *, limit: int = SWEEP_BATCH) -> list[str]:
        raise self._refuse()

    def close(self) -> None:
        pass


class SqliteVault(Vault):
    """The vault in its own SQLite file (erasing from it never touches the log), durable like the store.

    Concurrent puts share commits, as appends do: a put queues its row and waits for the connection; whichever
    put holds the connection writes every row queued by then in one transaction, so the puts behind it find
    theirs written when their turn comes. One fsync serves them all (under load every submission with a
    named reporter puts, and queued behind one fsync each they held requests up for a quarter of their time).
    A put returns only once its row is committed; if the commit fails, every put of it raises."""

    def __init__(self, path: Path, *, clock: Clock) -> None:
        from lapor.store.sqlite import connect  # local: sqlite imports this module

        self._conn = connect(path)
        # Freed space is overwritten with zeros: an erased value must not stay in the file's pages.
        self._conn.execute("PRAGMA secure_delete = ON")
        self._conn.executescript(VAULT_SCHEMA)
        try:  # a vault written before entries were marked referenced (session 26)
            self._conn.execute("ALTER TABLE pii_vault ADD COLUMN referenced_at TEXT")
        except sqlite3.OperationalError as error:
            if "duplicate column" not in str(error):
                raise
        self._conn.execute(UNREFERENCED_INDEX)
        self._lock = threading.Lock()  # the connection
        self._queue_lock = threading.Lock()
        self._queued: list[_QueuedPut] = []
        self._clock = clock

    def put(self, value: dict[str, Any], *, ref: str | None = None) -> str:
        ref = ref or new_reference()
        mine = _QueuedPut((ref, orjson.dumps(value), _utc_text(self._clock.now())))
        with self._queue_lock:
            self._queued.append(mine)
        with self._lock:
            if not mine.done:  # nobody took it along: write it, with whatever queued meanwhile
                with self._queue_lock:
                    batch, self._queued = self._queued, []
                self._write(batch)
        if mine.error is not None:
            raise VaultError(f"the vault could not store an entry: {mine.error}") from mine.error
        return ref

    def _write(self, batch: list[_QueuedPut]) -> None:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(PUT_SQL.format("?"), [queued.row for queued in batch])
            conn.execute("COMMIT")
        except BaseException as error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for queued in batch:
                queued.error = error
            if not isinstance(error, Exception):
                raise  # KeyboardInterrupt and the like go on up, too
        finally:
            for queued in batch:
                queued.done = True

    def get(self, ref: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute("SELECT value, erased_at FROM pii_vault WHERE ref = ?", (ref,)).fetchone()
        if row is None:
            return None
        if row[1] is not None:
            raise VaultEntryErased(ref)
        return orjson.loads(row[0])

    def erase(self, ref: str) -> bool:
        with self._lock:
            cur = self._conn.execute(
                "UPDATE pii_vault SET value = NULL, erased_at = ? WHERE ref = ? AND erased_at IS NULL",
                (_utc_text(self._clock.now()), ref),
            )
            if cur.rowcount > 0:
                self._scrub()
        return cur.rowcount > 0

    def erase_unreferenced(self, created_before: datetime, *, limit: int = SWEEP_BATCH) -> list[str]:
        cutoff = _utc_text(created_before)
        with self._lock:
            refs = [row[0] for row in self._conn.execute(
                ERASE_UNREFERENCED_SQL.format("?"), (_utc_text(self._clock.now()), cutoff, limit, cutoff)
            ).fetchall()]
            if refs:
                self._scrub()
        return refs

    def _scrub(self) -> None:
        """After an erase: the WAL still holds the pages as they were with the value: copy the new ones back and
        empty it (secure_delete has zeroed the space in the file itself)."""
        busy, _, _ = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning("vault: the WAL could not be emptied after an erase (another connection kept "
                        "using it); the erased value stays in it until a later checkpoint")

    def mark_referenced(self, refs: Collection[str]) -> None:
        if not refs:
            return
        now = _utc_text(self._clock.now())
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "UPDATE pii_vault SET referenced_at = ? WHERE ref = ? AND referenced_at IS NULL",
                    [(now, ref) for ref in refs],
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()
