"""Authentication (who is calling) and authorization (may they do this), each in one place.

- Staff and machine clients carry signed bearer tokens (JWT, HS256 with LAPOR_SECRET) naming a role and,
  where it applies, an agency, a unit and a channel. `TokenService` issues and verifies them.
- A reporter (pelapor) holds the random `reporter_token` returned at submission; only its SHA-256 is stored
  (in ComplaintSubmitted). The token has 256 bits of entropy, so a fast unsalted hash is the right tool:
  nothing can be guessed from it, and the check is one hash plus a constant-time compare.
- `ACTIONS` says which roles may take each action; `authorize` is the one function that decides, including
  the confinement of agency-scoped roles to their own agency (and a unit officer to their unit: unit ids
  are `<agency_id>/<unit>`). Routes get it through `require(action)`, and call `authorize` (or
  `authorize_complaint`) again once they have folded the complaint and know whose it is.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import jwt
from fastapi import Depends, Header, Request

from lapor.clock import Clock
from lapor.patterns import CHANNEL_NAME
from lapor.principal import AGENCY_SCOPED, NATIONAL_ADMIN_AGENCY, OMBUDSMAN_AGENCY, Principal, Role
from lapor.problems import Forbidden, Unauthenticated, quoted
from lapor.revocation import Revocation, Revocations, agency_problem, subject_problem, token_id

if TYPE_CHECKING:
    from lapor.context import ServiceContext

ISSUER = "lapor"
ALGORITHM = "HS256"
CLOCK_SKEW = timedelta(seconds=30)

# -- bearer tokens ------------------------------------------------------------------------------------------

_TTL = re.compile(r"^ *([0-9]+) *([smhd]) *$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# A token's `exp` must be a date its verifier can read (datetime ends in the year 9999): lifetimes are far below.
MAX_TTL = timedelta(days=365_000)


def parse_ttl(text: str) -> timedelta:
    """`30m`, `8h`, `7d`, `45s` -> timedelta."""
    match = _TTL.fullmatch(text)
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"expected a lifetime like 30m, 8h or 7d, got {text!r}")
    seconds = int(match.group(1)) * _SECONDS[match.group(2)]
    if seconds > MAX_TTL.total_seconds():
        raise ValueError(f"a lifetime is at most {MAX_TTL.days}d (1000 years), not {text.strip()!r}")
    return timedelta(seconds=seconds)


def token_agency(role: Role, agency_id: str | None, unit_id: str | None) -> str | None:
    """The agency a token of `role` carries: the one given, else the one the role implies (an ombudsman's is the
    Ombudsman's office, a unit officer's the agency of its unit)."""
    if agency_id is not None:
        return agency_id
    if role is Role.ombudsman:
        return OMBUDSMAN_AGENCY
    if role is Role.unit_officer and unit_id:
        return unit_id.split("/", 1)[0]
    return None


class TokenService:
    """Issues and verifies bearer tokens. Expiry is judged by the clock it is given: the system clock in
    every running app, even in training mode, since a training clock moved forward must not expire (or
    revive) real credentials."""

    def __init__(self, secret: str, clock: Clock, *, revocations: Revocations | None = None) -> None:
        self._secret = secret
        self._clock = clock
        self._revocations = revocations  # tokens withdrawn before their expiry (none consulted without it)

    @property
    def clock(self) -> Clock:
        """The clock expiry is judged by (`Principal.valid_until` is on it)."""
        return self._clock

    @property
    def revocations(self) -> Revocations:
        if self._revocations is None:
            raise RuntimeError("this token service was given no revocations to keep")
        return self._revocations

    def issue(
        self,
        role: Role,
        *,
        subject: str | None = None,
        agency_id: str | None = None,
        unit_id: str | None = None,
        channel: str | None = None,
        ttl: timedelta = timedelta(hours=8),
    ) -> str:
        if role is Role.reporter:
            raise ValueError("reporters are identified by the reporter_token of their complaint, not a bearer token")
        agency_id = token_agency(role, agency_id, unit_id)
        # What a revocation must be able to name: a subject it can match, an agency (never a unit: that is `unit`).
        problem = subject_problem(subject) if subject is not None else None
        if problem is None and agency_id is not None:
            problem = agency_problem(agency_id)
        if problem is not None:
            raise ValueError(problem)
        # Validates the combination (an agency-scoped role needs its agency) before anything is signed.
        principal = Principal(
            subject=subject or role.value, role=role, agency_id=agency_id, unit_id=unit_id, channel=channel
        )
        if unit_id and agency_id and not within(unit_id, agency_id):
            raise ValueError(f"unit {unit_id!r} is not inside agency {agency_id!r}")
        if role is Role.integration and not channel:  # it could push for nothing (`authorize` compares channels)
            raise ValueError("role integration needs the channel it pushes for, e.g. sms")
        if channel is not None and not re.fullmatch(CHANNEL_NAME, channel):
            # Session 31: signed as given, so `--channel SMS` or `--channel "sambat malang"` made a token no route
            # takes (the SMS route is `sms`'s alone, the others' path refuses the name): every push a 403 or a 422.
            raise ValueError(
                f"channel {quoted(channel)!r} is not one a client can push for: lower-case letters, digits and '-', "
                "2 to 40 of them, like sms or sambat-malang"
            )
        now = self._clock.now()
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": principal.subject,
            "role": role.value,
            "iat": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
        }
        for claim, value in (("agency", agency_id), ("unit", unit_id), ("channel", channel)):
            if value:
                claims[claim] = value
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def decode(self, token: str) -> dict[str, Any]:
        """The claims of a token this service signed, its expiry not judged; Unauthenticated otherwise."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                # Expiry is checked by `verify` against our clock; PyJWT would read the system time itself.
                options={"require": ["exp", "iat", "sub", "role"], "verify_exp": False, "verify_iat": False},
            )
        except jwt.InvalidTokenError as error:
            raise Unauthenticated(f"invalid token: {error}") from None
        if not isinstance(claims["exp"], int):
            raise Unauthenticated("invalid token: 'exp' must be whole seconds")
        if isinstance(claims["iat"], bool) or not isinstance(claims["iat"], int | float) or not math.isfinite(
            claims["iat"]
        ):
            raise Unauthenticated("invalid token: 'iat' must be a number of seconds")
        claims["iat"] = int(claims["iat"])
        return claims

    def verify(self, token: str) -> Principal:
        claims = self.decode(token)
        now = self._clock.now()
        if claims["exp"] < (now - CLOCK_SKEW).timestamp():
            raise Unauthenticated("token expired")
        if claims["iat"] > (now + CLOCK_SKEW).timestamp():
            # A token dated ahead would also outlive a revocation of its subject (`iat` up to the revocation).
            raise Unauthenticated("token issued in the future: check the issuing machine's clock")
        try:
            valid_until: datetime | None = datetime.fromtimestamp(claims["exp"], UTC) + CLOCK_SKEW
        except (OverflowError, OSError, ValueError):
            valid_until = None  # past what a datetime holds (year 9999): no end in practice
        try:
            role = Role(claims["role"])
        except ValueError:
            raise Unauthenticated(f"token names an unknown role {claims['role']!r}") from None
        if role is Role.reporter:
            raise Unauthenticated("reporter access is by X-Reporter-Token, not a bearer token")
        try:
            principal = Principal(
                subject=str(claims["sub"]),
                role=role,
                agency_id=claims.get("agency"),
                unit_id=claims.get("unit"),
                channel=claims.get("channel"),
                valid_until=valid_until,
                token_id=token_id(token),
                issued_at=claims["iat"],
            )
        except ValueError as error:
            raise Unauthenticated(f"token is incomplete: {error}") from None
        if self.revoked(principal):
            raise Unauthenticated("token revoked: ask your administrator for a new one")
        return principal

    def close(self) -> None:
        if self._revocations is not None:
            self._revocations.close()

    def revoke(
        self,
        token: str,
        *,
        by: str,
        reason: str,
        check: Callable[[str | None, str], object] = lambda agency, role: None,
    ) -> Revocation:
        """Refuse `token` (one this service signed; expired or not) from now on. `check` is given the token's
        agency and role claims first and may raise to refuse. Unauthenticated when the token is not this
        service's."""
        claims = self.decode(token)
        agency, role = claims.get("agency"), str(claims["role"])
        check(agency, role)
        return self.revocations.revoke_token(
            token_id(token), subject=str(claims["sub"]), agency_id=agency, role=role, expires_at=claims["exp"],
            by=by, reason=reason,
        )

    def revoked(self, principal: Principal) -> bool:
        """Whether the token `principal` was verified from has been revoked since (always False for a
        principal that no bearer token named)."""
        if self._revocations is None or principal.token_id is None or principal.issued_at is None:
            return False
        return self._revocations.revoked(
            principal.token_id, principal.subject, principal.agency_id, principal.role, principal.issued_at
        )


# -- reporter tokens ----------------------------------------------------------------------------------------

REPORTER_TOKEN_HEADER = "X-Reporter-Token"


def new_reporter_token() -> str:
    return secrets.token_urlsafe(32)


def reporter_token_hash(token: str) -> str:
    """Hex SHA-256, as stored in ComplaintSubmitted.reporter_token_hash."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class ReportedComplaint(Protocol):
    """What `ReporterCredential` needs of a folded complaint (lapor.complaint.ComplaintState has it)."""

    @property
    def tracking_id(self) -> str: ...

    @property
    def reporter_token_hash(self) -> str | None: ...


@dataclass(frozen=True)
class ReporterCredential:
    """The X-Reporter-Token of a request, if any. The route folds the complaint first, then asks for the
    reporter principal it opens."""

    token: str | None

    def opens(self, complaint: ReportedComplaint) -> bool:
        if not self.token or not complaint.reporter_token_hash:
            return False
        return hmac.compare_digest(reporter_token_hash(self.token), complaint.reporter_token_hash)

    def principal_for(self, complaint: ReportedComplaint) -> Principal:
        """The reporter of `complaint`; 401 when the token is missing or belongs to another complaint."""
        if not self.token:
            raise Unauthenticated(f"this action needs the {REPORTER_TOKEN_HEADER} given at submission")
        if not self.opens(complaint):
            raise Unauthenticated(f"{REPORTER_TOKEN_HEADER} does not open complaint {complaint.tracking_id}")
        return Principal(
            subject=f"reporter:{complaint.tracking_id}", role=Role.reporter, tracking_id=complaint.tracking_id
        )


def reporter_credential(
    x_reporter_token: Annotated[str | None, Header(alias=REPORTER_TOKEN_HEADER)] = None,
) -> ReporterCredential:
    return ReporterCredential(x_reporter_token)


# -- what each role may do ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    """Who may take an action. `public`: anyone, with or without a token (what they then see is decided by
    `lapor.privacy`). `confined`: roles held to their own agency/unit (ombudsman too, when it acts on the
    reports it took over; it reads everything as an overseer)."""

    roles: frozenset[Role] = frozenset()
    public: bool = False
    confined: frozenset[Role] = field(default=AGENCY_SCOPED)
    # Why the other roles are refused, and where they go instead, when the action's name alone does not tell them.
    why: str | None = None


PUBLIC = Access(public=True)
NATIONAL_ADMIN = frozenset({Role.admin_national})
OVERSIGHT = frozenset({Role.admin_national, Role.operator, Role.auditor, Role.ombudsman})
AGENCY_STAFF = frozenset({Role.admin_agency, Role.liaison, Role.unit_officer})
AGENCY_DECIDERS = frozenset({Role.admin_agency, Role.liaison})
REPORTER = frozenset({Role.reporter})
INTEGRATION = frozenset({Role.integration})
OMBUDSMAN_ACTING = AGENCY_SCOPED | {Role.ombudsman}

ACTIONS: Mapping[str, Access] = {
    # intake
    "complaint.submit": PUBLIC,  # POST /api/complaints
    "complaint.read": PUBLIC,  # GET /api/complaints/{id}: the view is filtered by lapor.privacy
    "complaint.provide_information": Access(REPORTER),  # POST .../information
    "complaint.give_feedback": Access(REPORTER),  # POST .../feedback
    "complaint.consent_ombudsman": Access(REPORTER),  # POST .../ombudsman-consent
    "channel.sms": Access(INTEGRATION),  # POST /api/channels/sms (an integration token for channel "sms")
    "channel.submit": Access(INTEGRATION),  # POST /api/channels/{channel}/complaints (not sms: a 404, session 32)
    # routing
    "verification_queue.read": Access(OVERSIGHT),  # GET /api/verification-queue
    "complaint.verify": Access(NATIONAL_ADMIN),
    "complaint.pend": Access(NATIONAL_ADMIN),
    "complaint.archive": Access(NATIONAL_ADMIN),
    "complaint.dispose": Access(NATIONAL_ADMIN),
    "complaint.mark_duplicate": Access(NATIONAL_ADMIN),
    "directory.read": PUBLIC,  # GET /api/agencies[/{agency_id}]: citizens pick where to report
    "directory.manage": Access(NATIONAL_ADMIN),  # registering agencies and routing rules
    # followup
    "queue.read": Access(AGENCY_STAFF | OVERSIGHT),  # GET /api/queues/{agency_id}
    # GET /api/queues/{agency_id}/escalated: what the agency watches above other agencies' units (session 29)
    "queue.read_escalated": Access(AGENCY_DECIDERS | OVERSIGHT),
    # The Ombudsman accepts a report it took over before the agency had (the takeover leaves it disposed).
    "complaint.accept": Access(AGENCY_DECIDERS | {Role.ombudsman}, confined=OMBUDSMAN_ACTING),
    "complaint.return": Access(AGENCY_DECIDERS),  # bukan wewenang
    "complaint.assign": Access(AGENCY_DECIDERS),
    "complaint.post_follow_up": Access(AGENCY_STAFF | {Role.ombudsman}, confined=OMBUDSMAN_ACTING),
    "complaint.resolve": Access(AGENCY_DECIDERS | {Role.ombudsman}, confined=OMBUDSMAN_ACTING),
    "complaint.read_follow_up_drafts": Access(AGENCY_STAFF | OVERSIGHT),  # GET .../follow-ups/drafts
    "complaint.review_follow_up": Access(frozenset({Role.liaison})),  # approve or send back a drafted follow-up
    # Two-step approval, webhooks: the agency's own. Not the national admin's (session 30, docs/followup.md).
    "agency.configure_follow_up": Access(
        frozenset({Role.admin_agency}),
        why="an agency's webhooks (and its two-step approval) are registered by that agency's own admin "
        "(admin_agency), for its queue and its units'. The national admin registers none, not even "
        f"{NATIONAL_ADMIN_AGENCY}'s (those are the ministry's own staff's, for its queue as an agency): it follows "
        f"the reports escalated to the national level on GET /api/queues/{NATIONAL_ADMIN_AGENCY}/escalated and "
        "every event as it commits on GET /api/stream",
    ),
    # reporting
    "report.national": Access(OVERSIGHT),  # GET /api/reports/national[/agencies]
    "report.agency": Access(OVERSIGHT | AGENCY_STAFF),  # GET /api/reports/agencies/{agency_id}
    "stream.read": Access(OVERSIGHT | AGENCY_STAFF),  # GET /api/stream (agency roles: their own events)
    "audit.read": Access(frozenset({Role.admin_national, Role.auditor, Role.ombudsman})),  # /api/audit/...
    "statistics.public": PUBLIC,  # GET /api/public/statistics
    # platform
    "training.clock": Access(NATIONAL_ADMIN),  # moving the clock in training mode
    # /api/tokens/revocations: an agency's admin only for tokens of its own agency (lapor.tokens)
    "token.revoke": Access(NATIONAL_ADMIN | {Role.admin_agency}),
}


def within(target: str, home: str) -> bool:
    """`pemda-82.71/dinkes` is within `pemda-82.71`; `pemda-82.710` is not."""
    return target == home or target.startswith(home + "/")


def authorize(
    principal: Principal | None,
    action: str,
    *,
    agency_id: str | None = None,
    unit_id: str | None = None,
    channel: str | None = None,
    tracking_id: str | None = None,
) -> None:
    """Raise Unauthenticated or Forbidden unless `principal` may take `action` on what the keyword arguments
    describe (omitted ones are not checked: pass all you know). For a complaint pass its owner (the agency
    holding it, or the national admin agency while it is with routing), or use `authorize_complaint`."""
    access = ACTIONS.get(action)
    if access is None:
        raise KeyError(f"unknown action {action!r}: add it to lapor.auth.ACTIONS")
    if access.public:
        return
    if principal is None:
        if access.roles == REPORTER:
            raise Unauthenticated(f"this action needs the {REPORTER_TOKEN_HEADER} given at submission")
        raise Unauthenticated("this action needs a bearer token")
    if principal.role not in access.roles:
        why = f": {access.why}" if access.why else ""
        raise Forbidden(f"role {principal.role} may not take the action {action}{why}")
    if principal.role in access.confined:
        _check_scope(principal, action, agency_id, unit_id)
    if principal.role is Role.integration and channel is not None and principal.channel != channel:
        # str(): the SMS route names `Channel.sms`, which the refusal showed as <Channel.sms: 'sms'> (session 32);
        # quoted: a path's channel is the client's text, of any length.
        raise Forbidden(f"this client pushes for channel {principal.channel!r}, not {quoted(str(channel))!r}")
    if principal.role is Role.reporter and tracking_id is not None and principal.tracking_id != tracking_id:
        raise Forbidden("a reporter token opens only its own complaint")


def _check_scope(principal: Principal, action: str, agency_id: str | None, unit_id: str | None) -> None:
    home, target = _home_and_target(principal, agency_id, unit_id)
    if target is None:
        return
    if home is None or not within(target, home):
        raise Forbidden(f"{target} is outside the scope of this {principal.role} ({home})")


def _home_and_target(principal: Principal, agency_id: str | None, unit_id: str | None) -> tuple[str | None, str | None]:
    """The principal's own scope (a unit officer's unit, else its agency), and the one of `agency_id` and `unit_id`
    it is compared with."""
    if principal.role is Role.unit_officer:
        return principal.unit_id, unit_id or agency_id
    return principal.agency_id, agency_id or unit_id


class OwnedComplaint(Protocol):
    """What `authorize_complaint` needs of a folded complaint (lapor.complaint.ComplaintState has it)."""

    @property
    def tracking_id(self) -> str: ...

    @property
    def agency_id(self) -> str | None: ...

    @property
    def unit_id(self) -> str | None: ...

    @property
    def owner(self) -> str: ...


def authorize_complaint(principal: Principal | None, action: str, complaint: OwnedComplaint) -> None:
    """`authorize` on the complaint's owner and unit. While routing holds the report no agency does: `owner` then
    names the national admin agency, whose own staff (`kemenpanrb` takes dispositions like any other agency) are
    refused it like every other agency's (session 24: they could read the drafts of a returned report).

    A confined caller refused the report is told its own scope, never who holds the report: another agency, a
    unit, or routing (the refusal named it, so an agency that had returned a confidential report as bukan
    wewenang, and lost sight of it, learnt where it went next; found in a bug hunt)."""
    authorize(principal, action, tracking_id=complaint.tracking_id)
    access = ACTIONS[action]
    if principal is None or access.public or principal.role not in access.confined:
        return
    home, target = _home_and_target(principal, complaint.owner, complaint.unit_id)
    if complaint.agency_id is None or home is None or target is None or not within(target, home):
        raise Forbidden(f"complaint {complaint.tracking_id} is outside the scope of this {principal.role} ({home})")


# -- FastAPI dependencies -----------------------------------------------------------------------------------


def _context(request: Request) -> ServiceContext:
    return request.app.state.context


async def current_principal(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Principal | None:
    """The bearer token's principal; None without an Authorization header. A header that is present but
    wrong is always a 401, even on public routes, so a client learns its token is bad."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("expected 'Authorization: Bearer <token>'")
    return _context(request).tokens.verify(token.strip())


def require(action: str) -> Callable[..., Awaitable[Principal | None]]:
    """A dependency that authorizes `action` for the caller and returns the principal (None on public
    actions without a token). Path parameters named `agency_id` and `channel` are checked on the spot;
    checks that need the complaint come later, through `authorize_complaint`. Reporter actions do not use
    it: their principal comes from `reporter_credential` once the complaint is folded."""
    if action not in ACTIONS:
        raise KeyError(f"unknown action {action!r}: add it to lapor.auth.ACTIONS")

    # async: it only checks a signature and a table, so it runs on the event loop instead of costing every
    # request a hop to a worker thread (FastAPI runs sync dependencies in its thread pool).
    async def dependency(
        request: Request, principal: Annotated[Principal | None, Depends(current_principal)]
    ) -> Principal | None:
        params = request.path_params
        authorize(principal, action, agency_id=params.get("agency_id"), channel=params.get("channel"))
        return principal

    dependency.__name__ = f"require_{action.replace('.', '_')}"
    return dependency
