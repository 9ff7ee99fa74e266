"""Revoking bearer tokens over HTTP (`lapor.revocation` says what a revocation is; `lapor token revoke` does the
same from the command line). Mounted on every app, like the health routes.

- `POST /api/tokens/revocations`: `{"token": "<the bearer token>", "reason": ...}` revokes that token;
  `{"subject": ..., "agency_id": ..., "reason": ...}` every token of that subject (with that agency claim)
  issued until now. The national admin may revoke any; an agency's admin only tokens whose agency claim is
  their agency (a unit's officer carries the unit's agency), so never a national role's or another agency's.
- `GET /api/tokens/revocations`: the revocations the caller may make, newest first, a page at a time
  (`limit`, `offset`; `total` counts them all), optionally one `subject`'s.

A revoked token is refused like an expired one (401), the live stream it opened included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from lapor.auth import authorize, require
from lapor.context import Context
from lapor.limits import DecimalDigits, NonNegativeInt64, Reason
from lapor.principal import AGENCY_SCOPED, Principal
from lapor.problems import Forbidden, Unauthenticated, ValidationProblem
from lapor.revocation import SUBJECT_MAX, Revocation, agency_problem, subject_problem

ACTION = "token.revoke"

def _refused_by(problem_of: Callable[[str], str | None]) -> AfterValidator:
    """A validator raising what `problem_of` finds wrong (`lapor.revocation`'s rules, which the CLI and
    `TokenService.issue` apply too)."""

    def check(value: str) -> str:
        problem = problem_of(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    return AfterValidator(check)


Subject = Annotated[str, StringConstraints(max_length=SUBJECT_MAX), _refused_by(subject_problem)]
AgencyOnly = Annotated[str, StringConstraints(max_length=200), _refused_by(agency_problem)]


class RevokeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = Field(
        None, description="a bearer token to revoke (this one only)"
    )
    subject: Subject | None = Field(None, description="revoke every token of this subject issued until now")
    agency_id: AgencyOnly | None = Field(
        None,
        description="with `subject`: only the tokens carrying this agency (an agency's admin: their own, the "
        "default); omitted by the national admin: in every agency",
    )
    reason: Reason

    @model_validator(mode="after")
    def _one_of(self) -> RevokeRequest:
        if (self.token is None) == (self.subject is None):
            raise ValueError("give exactly one of 'token' and 'subject'")
        if self.token is not None and self.agency_id is not None:
            raise ValueError("'agency_id' goes with 'subject'; a token carries its own")
        return self


class RevocationView(BaseModel):
    revocation_id: str
    token_id: str | None = Field(description="SHA-256 of the revoked token's signed part; null for a subject")
    subject: str
    agency_id: str | None
    agency_roles_only: bool = Field(
        description="a subject's tokens of the agency roles only (admin_agency, liaison, unit_officer): made by an "
        "agency's admin"
    )
    role: str | None = Field(description="the one revoked token's role")
    issued_before: datetime | None = Field(description="a subject's tokens issued up to this moment are refused")
    expires_at: datetime | None = Field(description="when the one revoked token would have expired")
    revoked_at: datetime
    revoked_by: str
    reason: str

    @classmethod
    def of(cls, revocation: Revocation) -> RevocationView:
        def moment(seconds: int | None) -> datetime | None:
            return None if seconds is None else datetime.fromtimestamp(seconds, revocation.revoked_at.tzinfo)

        return cls.model_validate(
            asdict(revocation)
            | {"issued_before": moment(revocation.issued_before), "expires_at": moment(revocation.expires_at)}
        )


class RevocationPage(BaseModel):
    total: int = Field(description="revocations the caller may see (of `subject`, when given), on every page")
    items: list[RevocationView]


def _scope(principal: Principal, agency_id: str | None, role: str | None = None) -> None:
    """An agency's admin revokes only within its agency, never 'in every agency' (no agency), and never a national
    role's token: the Ombudsman's, KSP's and KemenPAN-RB's tokens carry agencies of the directory too."""
    if principal.agency_scoped:
        if agency_id is None:
            raise Forbidden(f"a {principal.role} revokes only tokens of its own agency ({principal.agency_id})")
        if role is not None and role not in AGENCY_SCOPED:
            raise Forbidden(f"a {principal.role} may not revoke a {role}'s token")
    authorize(principal, ACTION, agency_id=agency_id)


def tokens_router() -> APIRouter:
    router = APIRouter(prefix="/api/tokens", tags=["tokens"])

    @router.post(
        "/revocations", status_code=201, summary="Revoke a bearer token, or every token of a subject until now"
    )
    def revoke(
        ctx: Context, body: RevokeRequest, principal: Annotated[Principal | None, Depends(require(ACTION))]
    ) -> RevocationView:
        assert principal is not None  # not a public action
        by = f"{principal.role}:{principal.subject}"
        if body.token is not None:
            try:
                revocation = ctx.tokens.revoke(
                    body.token, by=by, reason=body.reason, check=lambda agency, role: _scope(principal, agency, role)
                )
            except Unauthenticated as error:
                # Not ours, or mangled: there is nothing this installation would accept to revoke.
                raise ValidationProblem(
                    f"not a token of this installation: {error.detail}", location=("body", "token")
                ) from None
        else:
            assert body.subject is not None
            agency = body.agency_id
            if agency is None and principal.agency_scoped:
                agency = principal.agency_id
            _scope(principal, agency)
            # An agency's admin cuts off only agency roles; the national admin every role of the subject.
            revocation = ctx.tokens.revocations.revoke_subject(
                body.subject, agency, agency_roles_only=principal.agency_scoped, by=by, reason=body.reason
            )
        return RevocationView.of(revocation)

    @router.get("/revocations", summary="Revocations: all (national admin), or those of the caller's agency")
    def list_revocations(
        ctx: Context,
        principal: Annotated[Principal | None, Depends(require(ACTION))],
        subject: Annotated[Subject | None, Query(description="only this subject's")] = None,
        limit: Annotated[int, Query(ge=1, le=500), DecimalDigits] = 100,
        offset: Annotated[NonNegativeInt64, Query()] = 0,
    ) -> RevocationPage:
        assert principal is not None
        agency = principal.agency_id if principal.agency_scoped else None
        total, revocations = ctx.tokens.revocations.page(agency, subject=subject, limit=limit, offset=offset)
        return RevocationPage(total=total, items=[RevocationView.of(revocation) for revocation in revocations])

    return router
