"""Bearer tokens withdrawn before they expire: an officer who leaves, a token copied where it should not be.

Tokens are signed, not stored, so a revocation is a row that every process consults when it verifies a token
(`TokenService.verify`). Two kinds:

- **One token**, named by its id: the SHA-256 of its signed part (`header.payload`). The signature covers both,
  so the id cannot be changed without breaking the token, and tokens issued before this module need no new
  claim (a hash of the whole text would not do: a signature's base64 can be written more than one way).
- **A subject**, optionally within one agency: every token with that `sub` (and that `agency` claim) issued
  at or before the revocation's second (`iat` has whole seconds) is refused; tokens issued after it work. An
  officer who keeps the job gets a new token a second later; one who leaves simply gets none. One made by an
  agency's admin (`agency_roles_only`) touches only the agency roles' tokens (admin_agency, liaison,
  unit_officer): national roles carry agency claims too (`ombudsman-ri`, `ksp`, `kemenpanrb`), and an agency's
  admin must not cut them off.

Revocations live in the read-model database (`auth_revocations`), beside the services' own state, so every
process of one installation (`lapor up --workers`, `lapor serve` side by side) sees the same rows, and they are
kept with who revoked and why. A process loads them when it opens, again when it records one, and every
`REFRESH` seconds from `start` on (a thread), so a revocation recorded by another process takes effect there
within about that; in the recording process at once. Verification reads only the copy in memory.
Revocations of one token are loaded only until that token would have expired anyway.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from lapor.clock import Clock
from lapor.db import Database, Tx, sortable_moment
from lapor.limits import is_unicode
from lapor.principal import AGENCY_SCOPED, Role

log = logging.getLogger(__name__)

REFRESH = 1.0  # seconds between reloads of the copy in memory
# Revocations of one token are loaded until it expired this long ago: more than the clock skew that token
# verification allows (lapor.auth.CLOCK_SKEW, 30 s), after which the token is refused anyway.
EXPIRED_LONG_ENOUGH = 120

SETUP = """
CREATE TABLE IF NOT EXISTS auth_revocations (
    revocation_id TEXT PRIMARY KEY,
    token_id TEXT UNIQUE,
    subject TEXT NOT NULL,
    agency_id TEXT,
    agency_roles_only INTEGER NOT NULL,
    role TEXT,
    issued_before BIGINT,
    expires_at BIGINT,
    revoked_at TEXT NOT NULL,
    revoked_by TEXT NOT NULL,
    reason TEXT NOT NULL
)
"""
_COLUMNS = (
    "revocation_id, token_id, subject, agency_id, agency_roles_only, role, issued_before, expires_at, revoked_at, "
    "revoked_by, reason"
)
SUBJECT_MAX = 200  # characters of a token's subject


# A subject revocation names an agency, never a unit: a unit officer's token carries the unit's agency.
AGENCY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def subject_problem(subject: str) -> str | None:
    """Why `subject` can be neither a token's subject nor revoked by name (`TokenService.issue` asks too)."""
    if not subject.strip():
        return "a subject must not be blank"
    if len(subject) > SUBJECT_MAX:
        return f"a subject has at most {SUBJECT_MAX} characters"
    if _CONTROL.search(subject):
        return "a subject must not contain control characters"
    if not is_unicode(subject):
        # A lone surrogate (a byte of a shell's argument that is not UTF-8, `--subject $'bu\xffdi'`): JSON carries it
        # as an escape, so the token was signed, but a request naming it is refused as not text, so it could not be
        # revoked by name, and every event it appended failed to serialise (session 31).
        return "a subject must be text (it holds a byte that is not UTF-8)"
    return None


def agency_problem(agency_id: str) -> str | None:
    """Why `agency_id` cannot scope a subject revocation."""
    if "/" in agency_id:
        return f"name the agency, not a unit: a unit officer's token carries its agency ({agency_id.split('/')[0]})"
    if not AGENCY.fullmatch(agency_id):
        return f"{agency_id!r} is not an agency id (like pemda-53.71)"
    return None


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
    agency_roles_only: bool  # a subject's tokens of agency roles only (made by an agency's admin)
    role: str | None  # one token: its role
    issued_before: int | None  # a subject's tokens with `iat` up to this (epoch seconds) are refused
    expires_at: int | None  # one token: its `exp`
    revoked_at: datetime
    revoked_by: str
    reason: str

    @classmethod
    def of_row(cls, row: tuple) -> Revocation:
        revocation_id, token, subject, agency_id, agency_roles, role, issued_before, expires_at, at, by, reason = row
        return cls(
            revocation_id, token, subject, agency_id, bool(agency_roles), role, issued_before, expires_at,
            datetime.fromisoformat(at), by, reason,
        )


Latest = dict[tuple[str, str | None], int]  # (subject, agency or None) -> the latest issued_before


def _keep_latest(into: Latest, subject: str, agency_id: str | None, issued_before: int) -> None:
    key = (subject, agency_id)
    into[key] = max(into.get(key, issued_before), issued_before)


@dataclass(frozen=True)
class _Loaded:
    tokens: frozenset[str]
    subjects: Latest  # of every role
    agency_role_subjects: Latest  # of agency roles only

    @classmethod
    def of(cls, rows: Iterable[tuple[str | None, str, str | None, int, int | None]]) -> _Loaded:
        """From (token_id, subject, agency_id, agency_roles_only, issued_before) rows."""
        tokens: set[str] = set()
        subjects: Latest = {}
        agency_role_subjects: Latest = {}
        for token, subject, agency, agency_roles_only, issued_before in rows:
            if token is not None:
                tokens.add(token)
            else:
                assert issued_before is not None
                _keep_latest(agency_role_subjects if agency_roles_only else subjects, subject, agency, issued_before)
        return cls(frozenset(tokens), subjects, agency_role_subjects)

    def with_(self, revocation: Revocation) -> _Loaded:
        """A copy that has `revocation` too."""
        if revocation.token_id is not None:
            return _Loaded(self.tokens | {revocation.token_id}, self.subjects, self.agency_role_subjects)
        assert revocation.issued_before is not None
        into = dict(self.agency_role_subjects if revocation.agency_roles_only else self.subjects)
        _keep_latest(into, revocation.subject, revocation.agency_id, revocation.issued_before)
        if revocation.agency_roles_only:
            return _Loaded(self.tokens, self.subjects, into)
        return _Loaded(self.tokens, into, self.agency_role_subjects)


class Revocations:
    """The revocations of one installation. `revoked` is what token verification asks: it answers from a copy in
    memory, so a request never waits for the database (`TokenService.verify` runs on the event loop)."""

    def __init__(self, db: Database, clock: Clock, *, refresh: float = REFRESH) -> None:
        self._db = db
        self._clock = clock
        self._refresh = refresh
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Raised by every recording, so a load begun before it (without the new row) is not kept after it.
        self._generation = 0
        self._failing = False  # the last reload failed (logged once, not every second)
        db.executescript(SETUP)
        self._loaded = self._load()

    def start(self) -> None:
        """Reload every `refresh` seconds in a thread of this process, until `close`."""
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._refresh_loop, name="lapor-revocations", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Stop reloading (before the database closes)."""
        with self._lock:
            self._stop.set()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=10)

    def revoke_token(
        self, token_id: str, *, subject: str, agency_id: str | None, role: str, expires_at: int, by: str,
        reason: str,
    ) -> Revocation:
        """Refuse one token from now on. Revoking it again (even at the same moment) returns the first
        revocation."""
        revocation = self._new(token_id=token_id, subject=subject, agency_id=agency_id, agency_roles_only=False,
                               role=role, issued_before=None, expires_at=expires_at, by=by, reason=reason)
        with self._db.transaction() as tx:
            inserted = self._insert(tx, revocation, conflict="ON CONFLICT (token_id) DO NOTHING")
            row = tx.fetchone(f"SELECT {_COLUMNS} FROM auth_revocations WHERE token_id = ?", (token_id,))
        assert row is not None
        recorded = Revocation.of_row(row)
        self._remember(recorded, log_it=inserted)
        return recorded

    def revoke_subject(
        self, subject: str, agency_id: str | None, *, agency_roles_only: bool, by: str, reason: str
    ) -> Revocation:
        """Refuse every token of `subject` (with that agency claim; None: any) issued up to this second; with
        `agency_roles_only`, only tokens of the agency roles."""
        revocation = self._new(
            token_id=None, subject=subject, agency_id=agency_id, agency_roles_only=agency_roles_only, role=None,
            issued_before=int(self._clock.now().timestamp()), expires_at=None, by=by, reason=reason,
        )
        with self._db.transaction() as tx:
            self._insert(tx, revocation)
        self._remember(revocation, log_it=True)
        return revocation

    def revoked(self, token_id: str, subject: str, agency_id: str | None, role: Role, issued_at: int) -> bool:
        loaded = self._loaded
        if token_id in loaded.tokens:
            return True
        by_subject = [loaded.subjects]
        if role in AGENCY_SCOPED:
            by_subject.append(loaded.agency_role_subjects)
        return any(
            issued_at <= revoked.get((subject, scope), -1) for revoked in by_subject for scope in (agency_id, None)
        )

    def page(
        self, agency_id: str | None = None, *, subject: str | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[int, list[Revocation]]:
        """How many revocations there are, and `limit` of them from `offset`, newest first. With `agency_id`, those
        an admin of that agency could have made: of its agency roles' tokens (not of a national role's token that
        carries the agency); with `subject`, that subject's."""
        conditions: list[str] = []
        params: list[object] = []
        if agency_id is not None:
            roles = sorted(role.value for role in AGENCY_SCOPED)
            conditions.append(f"agency_id = ? AND (agency_roles_only = 1 OR role IN ({', '.join('?' * len(roles))}))")
            params += [agency_id, *roles]
        if subject is not None:
            conditions.append("subject = ?")
            params.append(subject)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        with self._db.read() as tx:
            total = tx.fetchone(f"SELECT count(*) FROM auth_revocations {where}", tuple(params))
            rows = tx.fetchall(
                f"SELECT {_COLUMNS} FROM auth_revocations {where} ORDER BY revoked_at DESC, revocation_id "
                "LIMIT ? OFFSET ?",
                (*params, limit, offset),
            )
        assert total is not None
        return int(total[0]), [Revocation.of_row(row) for row in rows]

    # -- internals ------------------------------------------------------------------------------------------

    def _new(
        self, *, token_id: str | None, subject: str, agency_id: str | None, agency_roles_only: bool,
        role: str | None, issued_before: int | None, expires_at: int | None, by: str, reason: str,
    ) -> Revocation:
        return Revocation(
            revocation_id=str(uuid.uuid4()), token_id=token_id, subject=subject, agency_id=agency_id,
            agency_roles_only=agency_roles_only, role=role, issued_before=issued_before, expires_at=expires_at,
            revoked_at=self._clock.now().astimezone(UTC), revoked_by=by, reason=reason,
        )

    @staticmethod
    def _insert(tx: Tx, revocation: Revocation, conflict: str = "") -> bool:
        r = revocation
        cursor = tx.execute(
            f"INSERT INTO auth_revocations ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) {conflict}",
            (
                r.revocation_id, r.token_id, r.subject, r.agency_id, int(r.agency_roles_only), r.role,
                r.issued_before, r.expires_at, sortable_moment(r.revoked_at), r.revoked_by, r.reason,
            ),
        )
        return bool(cursor.rowcount)

    def _remember(self, revocation: Revocation, *, log_it: bool) -> None:
        """Put a committed revocation into this process's copy before the caller hears of it, so the process
        refuses the token at once; a reload begun before (without the row) is dropped when it ends."""
        if log_it:
            log.info(
                "bearer tokens revoked",
                extra={  # `fields`: what the JSON log lines carry (lapor.logs)
                    "fields": {
                        "revocation_id": revocation.revocation_id,
                        "token_id": revocation.token_id,
                        "subject": revocation.subject,
                        "agency_id": revocation.agency_id,
                        "revoked_by": revocation.revoked_by,
                    }
                },
            )
        with self._lock:
            self._generation += 1
            self._loaded = self._loaded.with_(revocation)

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self._refresh):
            try:
                self._reload()
            except Exception:  # the database is away: keep the last copy, say so once, try again
                if not self._failing:
                    log.exception("could not reload the token revocations; using those loaded before")
                self._failing = True
            else:
                if self._failing:
                    log.info("token revocations reloaded again")
                self._failing = False

    def _reload(self) -> None:
        with self._lock:
            generation = self._generation
        loaded = self._load()
        with self._lock:
            if generation == self._generation:  # no revocation recorded meanwhile that this load may lack
                self._loaded = loaded

    def _load(self) -> _Loaded:
        horizon = int(self._clock.now().timestamp()) - EXPIRED_LONG_ENOUGH
        with self._db.read() as tx:
            return _Loaded.of(tx.fetchall(
                "SELECT token_id, subject, agency_id, agency_roles_only, issued_before FROM auth_revocations "
                "WHERE token_id IS NULL OR expires_at >= ?",
                (horizon,),
            ))
