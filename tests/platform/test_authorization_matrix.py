"""Who may call what: every route of DESIGN.md's HTTP surface × every kind of caller.

The four services are not written yet, so a stand-in router declares DESIGN's routes the way a service will:
`require(action)` on the route and, for a complaint, `authorize_complaint` once it is "folded" (here: looked
up in a fixed set). The EXPECTED table below is written from DESIGN.md's roles, not from lapor.auth.ACTIONS.
When a service lands, its tests reuse these rows against the real app (see tests/platform/authz.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import pytest
from fastapi import APIRouter, Depends

from lapor.auth import (
    ReporterCredential,
    authorize,
    authorize_complaint,
    new_reporter_token,
    reporter_credential,
    reporter_token_hash,
    require,
)
from lapor.context import ServiceContext, ServiceDefinition
from lapor.principal import NATIONAL_ADMIN_AGENCY, OMBUDSMAN_AGENCY, Principal
from lapor.problems import NotFound
from tests.platform.authz import (
    ANONYMOUS,
    FOREIGN_AGENCY,
    HOME_AGENCY,
    HOME_UNIT,
    OTHER_REPORTER,
    PLATFORM_CASES,
    REPORTER,
    Case,
    assert_matrix,
    callers,
    everyone,
    uncovered_routes,
)


@dataclass(frozen=True)
class StubComplaint:
    tracking_id: str
    agency_id: str | None
    unit_id: str | None
    reporter_token_hash: str

    @property
    def owner(self) -> str:
        return self.agency_id or NATIONAL_ADMIN_AGENCY


REPORTER_TOKENS = {tid: new_reporter_token() for tid in ("LAP-NATIONAL", "LAP-HOME", "LAP-OMBUDSMAN")}
COMPLAINTS = {
    # with routing (submitted/verified): the national admin's
    "LAP-NATIONAL": StubComplaint("LAP-NATIONAL", None, None, reporter_token_hash(REPORTER_TOKENS["LAP-NATIONAL"])),
    # disposed to Kota Kupang and assigned to its health office
    "LAP-HOME": StubComplaint("LAP-HOME", HOME_AGENCY, HOME_UNIT, reporter_token_hash(REPORTER_TOKENS["LAP-HOME"])),
    # taken over by Ombudsman RI after the reporter's consent
    "LAP-OMBUDSMAN": StubComplaint(
        "LAP-OMBUDSMAN", OMBUDSMAN_AGENCY, None, reporter_token_hash(REPORTER_TOKENS["LAP-OMBUDSMAN"])
    ),
}


def folded(tracking_id: str) -> StubComplaint:
    complaint = COMPLAINTS.get(tracking_id)
    if complaint is None:
        raise NotFound(f"complaint {tracking_id} not found")
    return complaint


def design_surface(ctx: ServiceContext) -> APIRouter:
    """DESIGN.md's routes with the access checks a service puts on them, and nothing else."""
    router = APIRouter()

    # Closure variables cannot appear inside annotations (they are strings here, resolved at module level),
    # so the per-route dependency is passed as a default.
    def staff_command(path: str, action: str) -> None:
        @router.post(path, name=action)
        def command(tracking_id: str, principal: Principal | None = Depends(require(action))) -> dict[str, bool]:
            authorize_complaint(principal, action, folded(tracking_id))
            return {"ok": True}

    def reporter_command(path: str, action: str) -> None:
        @router.post(path, name=action)
        def command(
            tracking_id: str, credential: Annotated[ReporterCredential, Depends(reporter_credential)]
        ) -> dict[str, bool]:
            complaint = folded(tracking_id)
            authorize_complaint(credential.principal_for(complaint), action, complaint)
            return {"ok": True}

    def read(path: str, action: str) -> None:
        @router.get(path, name=action, dependencies=[Depends(require(action))])
        def query() -> dict[str, bool]:
            return {"ok": True}

    # intake
    router.post("/api/complaints", name="submit", dependencies=[Depends(require("complaint.submit"))])(
        lambda: {"ok": True}
    )
    read("/api/complaints/{tracking_id}", "complaint.read")
    reporter_command("/api/complaints/{tracking_id}/information", "complaint.provide_information")
    reporter_command("/api/complaints/{tracking_id}/feedback", "complaint.give_feedback")
    reporter_command("/api/complaints/{tracking_id}/ombudsman-consent", "complaint.consent_ombudsman")

    @router.post("/api/channels/sms")
    def sms(principal: Annotated[Principal | None, Depends(require("channel.sms"))]) -> dict[str, bool]:
        authorize(principal, "channel.sms", channel="sms")
        return {"ok": True}

    router.post("/api/channels/{channel}/complaints", dependencies=[Depends(require("channel.submit"))])(
        lambda: {"ok": True}
    )
    # routing
    read("/api/verification-queue", "verification_queue.read")
    for verb, action in [
        ("verify", "complaint.verify"),
        ("pend", "complaint.pend"),
        ("archive", "complaint.archive"),
        ("dispose", "complaint.dispose"),
        ("mark-duplicate", "complaint.mark_duplicate"),
    ]:
        staff_command(f"/api/complaints/{{tracking_id}}/{verb}", action)
    read("/api/agencies", "directory.read")
    read("/api/agencies/{agency_id}", "directory.read")
    # followup
    read("/api/queues/{agency_id:path}", "queue.read")
    for verb, action in [
        ("accept", "complaint.accept"),
        ("return", "complaint.return"),
        ("assign", "complaint.assign"),
        ("follow-ups", "complaint.post_follow_up"),
        ("resolve", "complaint.resolve"),
    ]:
        staff_command(f"/api/complaints/{{tracking_id}}/{verb}", action)
    # reporting
    read("/api/reports/national", "report.national")
    read("/api/reports/national/agencies", "report.national")
    read("/api/reports/agencies/{agency_id}", "report.agency")
    read("/api/stream", "stream.read")
    read("/api/audit/complaints/{tracking_id}/events", "audit.read")
    read("/api/audit/complaints/{tracking_id}/state", "audit.read")
    read("/api/audit/integrity", "audit.read")
    read("/api/public/statistics", "statistics.public")
    return router


# -- the expected table, from DESIGN.md ---------------------------------------------------------------------

EVERYONE = everyone()
NATIONAL = frozenset({"admin_national"})
OVERSIGHT = frozenset({"admin_national", "operator", "auditor", "ombudsman"})
AUDITORS = frozenset({"admin_national", "auditor", "ombudsman"})
ALL_STAFF = OVERSIGHT | {
    "admin_agency", "admin_agency@foreign", "liaison", "liaison@foreign",
    "unit_officer", "unit_officer@sibling", "unit_officer@foreign",
}
HOME_DECIDERS = frozenset({"admin_agency", "liaison"})  # of the agency holding the report
HOME_WORKERS = HOME_DECIDERS | {"unit_officer"}  # ... and the officer of the unit it is assigned to
OWN_REPORTER = frozenset({REPORTER})


def complaint(verb: str, tracking_id: str, allowed: frozenset[str]) -> Case:
    return Case("POST", f"/api/complaints/{tracking_id}/{verb}", allowed, complaint=tracking_id)


EXPECTED = [
    # intake: submission and the public view are open to all; the reporter's own actions need its token
    Case("POST", "/api/complaints", EVERYONE),
    Case("GET", "/api/complaints/LAP-HOME", EVERYONE, complaint="LAP-HOME"),
    complaint("information", "LAP-NATIONAL", OWN_REPORTER),
    complaint("feedback", "LAP-HOME", OWN_REPORTER),
    complaint("ombudsman-consent", "LAP-HOME", OWN_REPORTER),
    Case("POST", "/api/channels/sms", frozenset({"integration:sms"})),
    Case("POST", "/api/channels/sambat-malang/complaints", frozenset({"integration:sambat"})),
    Case("POST", "/api/channels/sms/complaints", frozenset({"integration:sms"})),
    # routing: verification and disposition are the national admin's; monitoring roles read the queue
    Case("GET", "/api/verification-queue", OVERSIGHT),
    complaint("verify", "LAP-NATIONAL", NATIONAL),
    complaint("pend", "LAP-NATIONAL", NATIONAL),
    complaint("archive", "LAP-NATIONAL", NATIONAL),
    complaint("dispose", "LAP-NATIONAL", NATIONAL),
    complaint("mark-duplicate", "LAP-NATIONAL", NATIONAL),
    Case("GET", "/api/agencies", EVERYONE),
    Case("GET", f"/api/agencies/{HOME_AGENCY}", EVERYONE),
    # followup: an agency's queue is its own (a unit officer's is the unit's); overseers read every queue
    Case("GET", f"/api/queues/{HOME_AGENCY}", OVERSIGHT | HOME_DECIDERS),
    Case("GET", f"/api/queues/{HOME_UNIT}", OVERSIGHT | HOME_WORKERS),
    Case("GET", f"/api/queues/{FOREIGN_AGENCY}", OVERSIGHT | {"admin_agency@foreign", "liaison@foreign"}),
    complaint("accept", "LAP-HOME", HOME_DECIDERS),
    complaint("return", "LAP-HOME", HOME_DECIDERS),
    complaint("assign", "LAP-HOME", HOME_DECIDERS),
    complaint("follow-ups", "LAP-HOME", HOME_WORKERS),
    complaint("resolve", "LAP-HOME", HOME_DECIDERS),
    # a report with routing belongs to no agency yet; one taken over by the Ombudsman is the Ombudsman's
    complaint("accept", "LAP-NATIONAL", frozenset()),
    complaint("follow-ups", "LAP-OMBUDSMAN", frozenset({"ombudsman"})),
    complaint("resolve", "LAP-OMBUDSMAN", frozenset({"ombudsman"})),
    # reporting
    Case("GET", "/api/reports/national", OVERSIGHT),
    Case("GET", "/api/reports/national/agencies", OVERSIGHT),
    Case("GET", f"/api/reports/agencies/{HOME_AGENCY}", OVERSIGHT | HOME_DECIDERS),
    Case("GET", "/api/stream", ALL_STAFF),
    Case("GET", "/api/audit/complaints/LAP-HOME/events", AUDITORS),
    Case("GET", "/api/audit/complaints/LAP-HOME/state", AUDITORS),
    Case("GET", "/api/audit/integrity", AUDITORS),
    Case("GET", "/api/public/statistics", EVERYONE),
]

SURFACE = ServiceDefinition(name="design-surface", router=design_surface)


@pytest.fixture
def surface(serve, tokens):
    with serve(services=[SURFACE]) as client:
        yield client, callers(tokens, REPORTER_TOKENS)


def test_every_design_route_admits_exactly_the_callers_design_allows(surface):
    client, headers = surface
    assert_matrix(client, EXPECTED, headers)


def test_the_platforms_token_routes_admit_only_token_admins_in_their_scope(surface):
    client, headers = surface
    assert_matrix(client, PLATFORM_CASES, headers)


def test_every_route_of_the_surface_is_in_the_expected_table(surface):
    client, _ = surface
    assert uncovered_routes(client.app, EXPECTED + PLATFORM_CASES) == []


def test_the_framework_catches_a_wrong_table_entry(surface):
    """The matrix is only worth something if a wrong expectation fails it."""
    client, headers = surface
    wrong = [Case("GET", "/api/reports/national", OVERSIGHT | {"admin_agency"})]
    from tests.platform.authz import run_matrix

    assert run_matrix(client, wrong, headers) == [
        "GET /api/reports/national as admin_agency: expected allowed, got 403"
    ]


def test_anonymous_and_foreign_callers_are_told_apart(surface):
    """No token: 401 (sign in). A token without the right: 403 (signing in again will not help)."""
    client, headers = surface
    case = complaint("accept", "LAP-HOME", HOME_DECIDERS)
    assert client.post(case.path, headers=headers[ANONYMOUS](case)).status_code == 401
    assert client.post(case.path, headers=headers["admin_agency@foreign"](case)).status_code == 403
    assert client.post(case.path, headers=headers[OTHER_REPORTER](case)).status_code == 401
