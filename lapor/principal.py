"""Who is acting: roles and the principal a request runs as. Access decisions live in `lapor.auth`;
what each role may *see* of a complaint lives in `lapor.privacy`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

# Agency ids of the national nodes (the directory of `services/routing` holds the rest).
NATIONAL_ADMIN_AGENCY = "kemenpanrb"
KSP_AGENCY = "ksp"
OMBUDSMAN_AGENCY = "ombudsman-ri"


class Role(StrEnum):
    reporter = "reporter"  # by reporter_token, for one complaint only
    admin_national = "admin_national"  # KemenPAN-RB operator/admin: verifies, disposes, sees everything
    admin_agency = "admin_agency"  # an agency's admin (instansi, pemda, OPD)
    liaison = "liaison"  # pejabat penghubung of an agency
    unit_officer = "unit_officer"  # officer of a unit inside an agency (puskesmas, kecamatan, ...)
    operator = "operator"  # national monitoring (KSP and the like): reads, never decides
    auditor = "auditor"  # inspectorate: replays histories, reads everything, changes nothing
    ombudsman = "ombudsman"  # Ombudsman RI: supervision, takes over escalated reports
    integration = "integration"  # machine clients: SMS gateway, an agency's own complaint system


AGENCY_SCOPED = frozenset({Role.admin_agency, Role.liaison, Role.unit_officer})


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    role: Role
    agency_id: str | None = None
    unit_id: str | None = None  # a full agency id of the unit, e.g. "pemda-82.71/dinkes"
    channel: str | None = None  # integration clients: the channel they push for ("sms", "sambat-malang")
    tracking_id: str | None = None  # reporter: the one complaint the token opens
    # The last moment the bearer token that named this principal is accepted (its `exp` plus the clock skew
    # allowed); None for a credential without a lifetime. A response that outlives its request (the live
    # stream) ends there: the client reconnects with a fresh token.
    valid_until: datetime | None = field(default=None, compare=False)
    # The bearer token's id (`lapor.revocation.token_id`) and `iat` (epoch seconds): a response that outlives
    # its request asks whether the token was revoked meanwhile (`TokenService.revoked`).
    token_id: str | None = field(default=None, compare=False)
    issued_at: int | None = field(default=None, compare=False)

    @property
    def agency_scoped(self) -> bool:
        return self.role in AGENCY_SCOPED

    def __post_init__(self) -> None:
        if self.agency_scoped and not self.agency_id:
            raise ValueError(f"role {self.role} needs an agency")
        if self.role is Role.unit_officer and not self.unit_id:
            raise ValueError("role unit_officer needs a unit")
        if self.role is Role.ombudsman and self.agency_id not in (None, OMBUDSMAN_AGENCY):
            # The Ombudsman acts (accepts, answers, resolves) only on what it took over, as its own office; a token
            # naming another agency confined it there, and it acted for that agency.
            raise ValueError(f"role ombudsman acts as {OMBUDSMAN_AGENCY}, not {self.agency_id}")
        if self.unit_id is not None and self.unit_id == self.agency_id:
            # Scopes go by the unit: a "unit" that is the agency itself would open the whole agency.
            raise ValueError(f"a unit is <agency_id>/<unit>, not the agency {self.agency_id} itself")


SYSTEM = Principal(subject="system", role=Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
