"""The PII vault: reporter identity (name, phone, email, NIK) and the originals of masked text live here,
keyed by an opaque reference; events carry only the reference (UU PDP 27/2022). Erasing an entry keeps a
tombstone, so the history stays intact and a reader can tell "erased" from "never existed"."""

from __future__ import annotations

import secrets
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import orjson

from lapor.clock import Clock


class VaultEntryErased(LookupError):
    """The entry existed and was erased on request."""


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
    def close(self) -> None: ...


VAULT_SCHEMA = """
CREATE TABLE IF NOT EXISTS pii_vault (
    ref        TEXT PRIMARY KEY,
    value      BLOB,
    created_at TEXT NOT NULL,
    erased_at  TEXT
);
"""


class SqliteVault(Vault):
    def __init__(self, path: Path, *, clock: Clock) -> None:
        from lapor.store.sqlite import connect  # local: sqlite imports this module

        self._conn = connect(path)
        self._conn.executescript(VAULT_SCHEMA)
        self._lock = threading.Lock()
        self._clock = clock

    def put(self, value: dict[str, Any], *, ref: str | None = None) -> str:
        ref = ref or new_reference()
        with self._lock:
            self._conn.execute(
                "INSERT INTO pii_vault (ref, value, created_at) VALUES (?, ?, ?) ON CONFLICT (ref) DO NOTHING",
                (ref, orjson.dumps(value), self._clock.now().isoformat()),
            )
        return ref

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
                (self._clock.now().isoformat(), ref),
            )
        return cur.rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._conn.close()
