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

# The one agency a national role may carry, if any (session 31): it acts as that office and no other. A token of
# `admin_national --agency pemda-53.71` was issued, and every event it caused recorded a national admin acting for
# that agency (metadata `agency`), where its scope is every report. The auditor belongs to no agency: it reads
# everything and acts for none. Agency-scoped roles need theirs (any agency); an integration client may carry the
# agency whose own system it is (the agency suggested for what it pushes).
NATIONAL_AGENCY: dict[Role, str | None] = {
    Role.admin_national: NATIONAL_ADMIN_AGENCY,
    Role.operator: KSP_AGENCY,
    Role.ombudsman: OMBUDSMAN_AGENCY,
    Role.auditor: None,
}


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
        if self.role in NATIONAL_AGENCY and self.agency_id not in (None, own := NATIONAL_AGENCY[self.role]):
            # The Ombudsman acts (accepts, answers, resolves) only on what it took over, as its own office; a token
            # naming another agency confined it there, and it acted for that agency. So for every national role.
            raise ValueError(f"role {self.role} acts as {own}, not {self.agency_id}" if own else
                             f"role {self.role} belongs to no agency, not {self.agency_id}")
        if self.channel is not None and self.role is not Role.integration:
            # Only an integration client pushes for a channel (`authorize` compares it for integration alone).
            raise ValueError(f"only role integration pushes for a channel, not role {self.role}")
        if self.unit_id is not None and self.role is not Role.unit_officer:
            # Scopes go by the unit for a unit officer only: another role's unit was ignored by every check and
            # recorded in the metadata of what it did (`unit`) as if it had acted for that unit.
            raise ValueError(f"only role unit_officer works in a unit, not role {self.role}")
        if self.unit_id is not None and self.unit_id == self.agency_id:
            # Scopes go by the unit: a "unit" that is the agency itself would open the whole agency.
            raise ValueError(f"a unit is <agency_id>/<unit>, not the agency {self.agency_id} itself")


SYSTEM = Principal(subject="system", role=Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
