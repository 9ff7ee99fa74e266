"""Leases: one holder at a time, across processes, of a subscription (or a background loop) on a read-model database.

Two processes on one read-model database (a second replica, pods overlapping in a rolling update, `lapor up` beside
`lapor serve`) would otherwise both run every subscription: counts added twice, reactions acting twice, checkpoints
overwritten. A runner takes its subscription's lease before it handles anything and holds it while it runs; one that
cannot take it waits as a standby and tries again (`SubscriptionRunner`). The lease is named by the subscription and
lives with the read-model database, so `lapor rebuild` (fresh tables in another file or schema) never meets it.

- SQLite: an exclusive `flock(2)` on `<readmodels file>-leases/<name>.lease`, held by an open file descriptor. The
  kernel releases it when the descriptor is closed, so when the process dies in any way. Like SQLite's own locking,
  it wants a local file system.
- PostgreSQL: a session-level advisory lock, `pg_try_advisory_lock(LEASE_CLASS, hashtext(schema/name))`, held by a
  connection of its own (the pool's connections come and go). The server releases it when that session ends, so
  when the process dies or the connection is lost; `held()` then says so at the next look, and the holder stops.
  Advisory locks are per database, and the key includes the schema, so installations sharing a server (or a
  rebuild's fresh schema) do not meet.

A lease lost unnoticed for a moment (the PostgreSQL connection dropped after the last look) cannot double a batch:
the checkpoint is only moved from where its runner last saw it (`SubscriptionRunner._save_checkpoint`).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

log = logging.getLogger("lapor.lease")

# Class of the two-key advisory locks of leases ("LEAS"), beside the store's DDL lock class (`DDL_LOCK_CLASS`).
LEASE_CLASS = 0x4C454153
LEASE_RETRY = 2.0  # seconds a standby waits before it tries to take its lease again (a stop ends the wait at once)
# Seconds between a PostgreSQL lease's looks at its session (a round trip each). A runner asks `held()` on every turn
# of its loop, up to 20 a second under load: between looks it is taken as still held, which the checkpoint fence
# makes safe (`lapor.subscriptions`: a holder that lost its lease unnoticed cannot commit a batch twice).
LEASE_CHECK = 1.0
# A PostgreSQL lease's connection when the network between holder and server fails silently (a host gone, a
# partition): without keepalives the server would keep the dead session, and the lock, for its default two hours,
# and the holder's `SELECT 1` could hang for many minutes. Both ends give up after about 30 s instead.
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 4,
             "tcp_user_timeout": 30_000, "connect_timeout": 10}
SERVER_KEEPALIVE = ("SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 4; "
                    "SET tcp_user_timeout = 30000")


class Lease(ABC):
    """The right to run `name`, held by one `Lease` object at a time across every process of the database."""

    name: str
    standing_by = False  # whether its holder-to-be has said it stands by (so that it says so once)

    def take(self, stop: threading.Event, what: str) -> bool:
        """Take the lease for `what` (a subscription or a loop, as the log names it), or else stand by: wait
        `LEASE_RETRY` (less if `stop` is set meanwhile) and return False. Logs once on standing by, and on taking."""
        if self.acquire():
            log.info("%s: took its lease; running", what)
            self.standing_by = False
            return True
        if not self.standing_by:
            log.info("%s: another process runs it; standing by", what)
            self.standing_by = True
        stop.wait(LEASE_RETRY)
        return False

    @abstractmethod
    def acquire(self) -> bool:
        """Take the lease if nobody holds it; True when this object holds it now (also if it already did)."""

    @abstractmethod
    def held(self) -> bool:
        """Whether this object still holds the lease: False once it was released or lost."""

    @abstractmethod
    def release(self) -> None:
        """Give the lease up (nothing happens if it is not held)."""


class FileLease(Lease):
    """SQLite's lease: `flock(2)` on a file of its own, each `FileLease` opening it anew (flock belongs to the open
    file, so two leases of one name in one process exclude each other as two processes do)."""

    def __init__(self, path: Path, name: str) -> None:
        self.name = name
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor of the open file releases the lock
            self._fd = None


class AdvisoryLease(Lease):
    """PostgreSQL's lease: a session advisory lock on a connection of its own, kept open while standing by too."""

    def __init__(self, url: str, name: str) -> None:
        self.name = name
        self._url = url
        self._conn: psycopg.Connection | None = None
        self._held = False
        self._looked = 0.0  # when the session was last seen alive (time.monotonic())

    def acquire(self) -> bool:
        if self.held():
            return True
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(make_conninfo(self._url, **KEEPALIVE), autocommit=True)
                self._conn.execute(SERVER_KEEPALIVE)
            row = self._conn.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(current_schema() || '/' || %s))", (LEASE_CLASS, self.name)
            ).fetchone()
        except psycopg.Error:
            self._close()
            raise
        self._held = bool(row and row[0])
        self._looked = time.monotonic()
        return self._held

    def held(self) -> bool:
        """Asks the server (one round trip) at most every `LEASE_CHECK` seconds: a connection lost or terminated is
        only noticed by using it."""
        if not self._held or self._conn is None:
            return False
        if time.monotonic() - self._looked < LEASE_CHECK:
            return True
        try:
            self._conn.execute("SELECT 1")
        except psycopg.Error as error:
            log.warning("lease %s: its connection is lost (%s); the lease went with it", self.name, error)
            self._close()
            return False
        self._looked = time.monotonic()
        return True

    def release(self) -> None:
        if self._conn is None:
            return
        if self._held:
            try:
                self._conn.execute(
                    "SELECT pg_advisory_unlock(%s, hashtext(current_schema() || '/' || %s))",
                    (LEASE_CLASS, self.name),
                )
            except psycopg.Error as error:  # the session is gone, and the lock with it
                log.warning("lease %s: releasing it failed (%s); closing its connection releases it", self.name,
                            error)
        self._close()

    def _close(self) -> None:
        self._held = False
        if self._conn is not None:
            self._conn.close()
            self._conn = None
