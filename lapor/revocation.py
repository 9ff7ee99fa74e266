"""Bearer tokens withdrawn before they expire: an officer who leaves, a token copied where it should not be.

Tokens are signed, not stored, so a revocation is a row that every process consults when it verifies a token
(`TokenService.verify`). Two kinds:

- **One token**, named by its id: the SHA-256 of its signed part (`header.payload`). The signature covers both,
  so the id cannot be changed without breaking the token, and tokens issued before this module need no new
  claim (a hash of the whole text would not do: a signature's base64 can be written more than one way).
- **A subject**, optionally within one agency: every token with that `sub` (and that `agency` claim) issued
  at or before the revocation's second (`iat` has whole seconds) is refused; tokens issued after it work. An
  officer who keeps the job gets a new token a second later; one who leaves simply gets none.

Revocations live in the read-model database (`auth_revocations`), beside the services' own state, so every
process of one installation (`lapor up --workers`, `lapor serve` side by side) sees the same rows, and they are
kept with who revoked and why. A process reloads them every `REFRESH` seconds, so a revocation recorded by
another process takes effect there within about that; in the recording process at once.
Revocations of one token are loaded only until that token would have expired anyway.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from lapor.clock import Clock
from lapor.db import Database, Tx, sortable_moment

log = logging.getLogger(__name__)

REFRESH = 1.0  # seconds a process trusts the revocations it loaded

SETUP = """
CREATE TABLE IF NOT EXISTS auth_revocations (
    revocation_id TEXT PRIMARY KEY,
    token_id TEXT UNIQUE,
    subject TEXT NOT NULL,
    agency_id TEXT,
    issued_before BIGINT,
    expires_at BIGINT,
    revoked_at TEXT NOT NULL,
    revoked_by TEXT NOT NULL,
    reason TEXT NOT NULL
)
"""
_COLUMNS = "revocation_id, token_id, subject, agency_id, issued_before, expires_at, revoked_at, revoked_by, reason"


def token_id(token: str) -> str:
    """The id of a bearer token: SHA-256 (hex) of its signed part, `header.payload`."""
    signed, _, _ = token.strip().rpartition(".")
    return hashlib.sha256(signed.encode()).hexdigest()


@dataclass(frozen=True)
class Revocation:
    revocation_id: str
    token_id: str | None  # one token; None for a subject's tokens
    subject: str  # the token's `sub`, or the subject whose tokens are revoked
    agency_id: str | None  # the token's agency claim; for a subject, None means in every agency
    issued_before: int | None  # a subject's tokens with `iat` up to this (epoch seconds) are refused
    expires_at: int | None  # one token: its `exp`
    revoked_at: datetime
    revoked_by: str
    reason: str

    @classmethod
    def of_row(cls, row: tuple) -> Revocation:
        revocation_id, token, subject, agency_id, issued_before, expires_at, revoked_at, by, reason = row
        return cls(
            revocation_id, token, subject, agency_id, issued_before, expires_at, datetime.fromisoformat(revoked_at),
            by, reason,
        )


@dataclass(frozen=True)
class _Loaded:
    tokens: frozenset[str]
    subjects: dict[tuple[str, str | None], int]  # (subject, agency or None) -> latest issued_before


class Revocations:
    """The revocations of one installation. `revoked` is what token verification asks: it answers from a copy in
    memory, so a request never waits for the database (`TokenService.verify` runs on the event loop). The copy is
    loaded at once, again by the process that records a revocation, and every `refresh` seconds by a thread
    started when the first token is checked; `close` stops it."""

    def __init__(self, db: Database, clock: Clock, *, refresh: float = REFRESH) -> None:
        self._db = db
        self._clock = clock
        self._refresh = refresh
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        db.executescript(SETUP)
        self._loaded = self._load()

    def revoke_token(
        self, token_id: str, *, subject: str, agency_id: str | None, expires_at: int, by: str, reason: str
    ) -> Revocation:
        """Refuse one token from now on. Revoking it again returns the first revocation."""
        with self._db.transaction() as tx:
            existing = tx.fetchone(f"SELECT {_COLUMNS} FROM auth_revocations WHERE token_id = ?", (token_id,))
            if existing is not None:
                return Revocation.of_row(existing)
            revocation = self._record(
                tx, token_id=token_id, subject=subject, agency_id=agency_id, issued_before=None,
                expires_at=expires_at, by=by, reason=reason,
            )
        self._after_recording(revocation)
        return revocation

    def revoke_subject(self, subject: str, agency_id: str | None, *, by: str, reason: str) -> Revocation:
        """Refuse every token of `subject` (with that agency claim; None: any) issued up to this second."""
        issued_before = int(self._clock.now().timestamp())
        with self._db.transaction() as tx:
            revocation = self._record(
                tx, token_id=None, subject=subject, agency_id=agency_id, issued_before=issued_before,
                expires_at=None, by=by, reason=reason,
            )
        self._after_recording(revocation)
        return revocation

    def revoked(self, token_id: str, subject: str, agency_id: str | None, issued_at: int) -> bool:
        self._refreshing()
        loaded = self._loaded
        if token_id in loaded.tokens:
            return True
        return any(
            issued_at <= loaded.subjects.get((subject, scope), -1) for scope in (agency_id, None)
        )

    def all(self, agency_id: str | None = None) -> list[Revocation]:
        """Every revocation, newest first; with `agency_id`, those of tokens with that agency claim."""
        where, params = ("WHERE agency_id = ?", (agency_id,)) if agency_id is not None else ("", ())
        with self._db.read() as tx:
            rows = tx.fetchall(
                f"SELECT {_COLUMNS} FROM auth_revocations {where} ORDER BY revoked_at DESC, revocation_id", params
            )
        return [Revocation.of_row(row) for row in rows]

    # -- internals ------------------------------------------------------------------------------------------

    def _record(
        self, tx: Tx, *, token_id: str | None, subject: str, agency_id: str | None, issued_before: int | None,
        expires_at: int | None, by: str, reason: str,
    ) -> Revocation:
        revocation = Revocation(
            revocation_id=str(uuid.uuid4()), token_id=token_id, subject=subject, agency_id=agency_id,
            issued_before=issued_before, expires_at=expires_at, revoked_at=self._clock.now().astimezone(UTC),
            revoked_by=by, reason=reason,
        )
        tx.execute(
            f"INSERT INTO auth_revocations ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                revocation.revocation_id, token_id, subject, agency_id, issued_before, expires_at,
                sortable_moment(revocation.revoked_at), by, reason,
            ),
        )
        return revocation

    def _after_recording(self, revocation: Revocation) -> None:
        log.info(
            "bearer tokens revoked",
            extra={
                "revocation_id": revocation.revocation_id,
                "token_id": revocation.token_id,
                "subject": revocation.subject,
                "agency_id": revocation.agency_id,
                "revoked_by": revocation.revoked_by,
            },
        )
        self._loaded = self._load()  # this process refuses it at once

    def close(self) -> None:
        """Stop refreshing (before the database closes)."""
        with self._lock:
            self._stop.set()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=10)

    def _refreshing(self) -> None:
        if self._thread is not None or self._stop.is_set():
            return
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._refresh_loop, name="lapor-revocations", daemon=True)
                self._thread.start()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self._refresh):
            try:
                self._loaded = self._load()
            except Exception:  # the database is away: keep the last copy, say so, try again
                log.exception("could not reload the token revocations; using those loaded before")

    def _load(self) -> _Loaded:
        # Tokens that expired (allowing the verifier's clock skew) can no longer be presented anyway.
        horizon = int(self._clock.now().timestamp()) - 60
        with self._db.read() as tx:
            rows = tx.fetchall(
                "SELECT token_id, subject, agency_id, issued_before FROM auth_revocations "
                "WHERE token_id IS NULL OR expires_at >= ?",
                (horizon,),
            )
        tokens: set[str] = set()
        subjects: dict[tuple[str, str | None], int] = {}
        for token, subject, agency, issued_before in rows:
            if token is not None:
                tokens.add(token)
            else:
                key = (subject, agency)
                subjects[key] = max(subjects.get(key, issued_before), issued_before)
        return _Loaded(frozenset(tokens), subjects)
