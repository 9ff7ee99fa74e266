"""Who may call what on the followup service: every route × every kind of caller, against the real service and
real reports (tests/platform/authz.py is the framework). The table is written from DESIGN.md's roles and the
followup brief, not derived from lapor.auth.ACTIONS."""

from __future__ import annotations

import hashlib
import time

import jwt
import pytest

from lapor.auth import ALGORITHM, ISSUER, new_reporter_token
from lapor.principal import NATIONAL_ADMIN_AGENCY, OMBUDSMAN_AGENCY, Role
from schemas.events import ComplaintAssigned, ComplaintSubmitted, ComplaintVerified, DispositionAccepted, Level
from tests.followup.conftest import KUPANG
from tests.platform.authz import (
    FOREIGN_AGENCY,
    HOME_AGENCY,
    HOME_UNIT,
    PLATFORM_CASES,
    STAFF,
    Case,
    assert_matrix,
    callers,
    uncovered_routes,
)

OVERSIGHT = frozenset({"admin_national", "operator", "auditor", "ombudsman"})
HOME_DECIDERS = frozenset({"admin_agency", "liaison"})  # of the agency holding the report
HOME_WORKERS = HOME_DECIDERS | {"unit_officer"}  # ... and the officer of the unit it is assigned to
HOME_ADMIN = frozenset({"admin_agency"})
HOME_LIAISON = frozenset({"liaison"})
NOBODY: frozenset[str] = frozenset()

REPORTS = ("LAP-NATIONAL", "LAP-HOME", "LAP-OMBUDSMAN")
FORMER_HOLDER = "pemda-82.71"  # Pemerintah Kota Ternate, which held LAP-OMBUDSMAN before the Ombudsman took it over


def complaint(tracking_id: str, path: str, allowed: frozenset[str], method: str = "POST") -> Case:
    return Case(method, f"/api/complaints/{tracking_id}/{path}", allowed, complaint=tracking_id)


EXPECTED = [
    # queues: an agency's own (and its units'); a unit officer's is the unit's; overseers read every queue
    Case("GET", f"/api/queues/{HOME_AGENCY}", OVERSIGHT | HOME_DECIDERS),
    Case("GET", f"/api/queues/{HOME_UNIT}", OVERSIGHT | HOME_WORKERS),
    Case("GET", f"/api/queues/{FOREIGN_AGENCY}", OVERSIGHT | {"admin_agency@foreign", "liaison@foreign"}),
    # the reports escalated to an agency (session 29): its admin and liaison officer and overseers, no unit officer;
    # the national level's is the national admin's, not the ministry's own staff's
    Case("GET", f"/api/queues/{HOME_AGENCY}/escalated", OVERSIGHT | HOME_DECIDERS),
    Case("GET", f"/api/queues/{HOME_UNIT}/escalated", OVERSIGHT | HOME_DECIDERS),
    Case("GET", f"/api/queues/{FOREIGN_AGENCY}/escalated", OVERSIGHT | {"admin_agency@foreign", "liaison@foreign"}),
    Case("GET", f"/api/queues/{NATIONAL_ADMIN_AGENCY}/escalated", OVERSIGHT),
    # actions on a report held by the home agency and assigned to the home unit
    complaint("LAP-HOME", "accept", HOME_DECIDERS),
    complaint("LAP-HOME", "return", HOME_DECIDERS),
    complaint("LAP-HOME", "assign", HOME_DECIDERS),
    complaint("LAP-HOME", "follow-ups", HOME_WORKERS),
    complaint("LAP-HOME", "resolve", HOME_DECIDERS),
    complaint("LAP-HOME", "follow-ups/drafts", OVERSIGHT | HOME_WORKERS, method="GET"),
    complaint("LAP-HOME", "follow-ups/drafts/dr_unknown/approve", HOME_LIAISON),
    complaint("LAP-HOME", "follow-ups/drafts/dr_unknown/send-back", HOME_LIAISON),
    # a report with routing belongs to no agency yet; one taken over by the Ombudsman is the Ombudsman's
    complaint("LAP-NATIONAL", "accept", NOBODY),
    complaint("LAP-NATIONAL", "follow-ups", NOBODY),
    complaint("LAP-OMBUDSMAN", "accept", frozenset({"ombudsman"})),
    complaint("LAP-OMBUDSMAN", "follow-ups", frozenset({"ombudsman"})),
    complaint("LAP-OMBUDSMAN", "resolve", frozenset({"ombudsman"})),
    complaint("LAP-OMBUDSMAN", "assign", NOBODY),
    # agency settings: whoever reads the queue sees whether approval is on; its admin changes it and the webhooks
    Case("GET", f"/api/agencies/{HOME_AGENCY}/follow-up-approval", OVERSIGHT | HOME_DECIDERS),
    Case("GET", f"/api/agencies/{HOME_UNIT}/follow-up-approval", OVERSIGHT | HOME_WORKERS),
    Case("PUT", f"/api/agencies/{HOME_AGENCY}/follow-up-approval", HOME_ADMIN),
    Case("PUT", f"/api/agencies/{FOREIGN_AGENCY}/follow-up-approval", frozenset({"admin_agency@foreign"})),
    Case("POST", f"/api/agencies/{HOME_AGENCY}/webhooks", HOME_ADMIN),
    Case("GET", f"/api/agencies/{HOME_AGENCY}/webhooks", HOME_ADMIN),
    Case("POST", f"/api/agencies/{HOME_UNIT}/webhooks", HOME_ADMIN),
    Case("DELETE", f"/api/agencies/{HOME_AGENCY}/webhooks/wh_unknown", HOME_ADMIN),
    Case("GET", f"/api/agencies/{FOREIGN_AGENCY}/webhooks", frozenset({"admin_agency@foreign"})),
]


@pytest.fixture
def reports(followup):
    """LAP-NATIONAL with routing; LAP-HOME disposed to the home agency, accepted and assigned to the home unit;
    LAP-OMBUDSMAN taken over by Ombudsman RI."""
    now = followup.clock.now()
    followup.decide(
        "LAP-NATIONAL",
        ComplaintSubmitted(
            tracking_id="LAP-NATIONAL", kind="pengaduan", title="Lampu jalan mati", body="Sudah seminggu gelap.",
            region_code="53.71", channel="web", reporter_token_hash=hashlib.sha256(b"x").hexdigest(),
            verification_due=followup.ctx.policy.verification_due(now),
        ),
        ComplaintVerified(classification="pengaduan", category="infrastruktur"),
    )
    followup.disposed("LAP-HOME", HOME_AGENCY)
    followup.decide("LAP-HOME", DispositionAccepted(agency_id=HOME_AGENCY), ComplaintAssigned(unit_id=HOME_UNIT))
    # Held before by an agency none of the callers belongs to: its own staff get 409, not 403 (see below).
    followup.disposed("LAP-OMBUDSMAN", FORMER_HOLDER)
    followup.taken_over_by_ombudsman("LAP-OMBUDSMAN", from_level=Level.agency)
    followup.settle()
    return followup


def test_the_agency_that_held_a_report_taken_over_since_is_refused_with_a_conflict_not_403(reports):
    """Session 30: its view was stale (the report was in its queue), not forbidden. 409, naming no one; an agency
    that never held it is still 403."""
    for verb, body in (("accept", None), ("follow-ups", {"text": "Kami tangani."}), ("resolve", {"resolution": "Ok."}),
                       ("assign", {"unit_id": FORMER_HOLDER + "/dinkes"}), ("return", {"reason": "Bukan kami."})):
        for role in (Role.admin_agency, Role.liaison):
            headers = {"Authorization": f"Bearer {reports.tokens.issue(role, agency_id=FORMER_HOLDER)}"}
            response = reports.client.post(f"/api/complaints/LAP-OMBUDSMAN/{verb}", headers=headers, json=body)
            assert response.status_code == 409, (verb, role, response.text)
            assert OMBUDSMAN_AGENCY not in response.json()["detail"]
    assert "DispositionAccepted" not in reports.types("LAP-OMBUDSMAN")
    # Reading its drafts is no action: still refused as before.
    headers = {"Authorization": f"Bearer {reports.tokens.issue(Role.liaison, agency_id=FORMER_HOLDER)}"}
    assert reports.client.get("/api/complaints/LAP-OMBUDSMAN/follow-ups/drafts", headers=headers).status_code == 403


def test_every_followup_route_admits_exactly_the_callers_the_table_allows(reports):
    assert NATIONAL_ADMIN_AGENCY  # the national admin's token is scoped to it (tests/platform/authz.py)
    headers = callers(reports.tokens, {tracking_id: new_reporter_token() for tracking_id in REPORTS})
    assert_matrix(reports.client, EXPECTED, headers)
    assert {label for case in EXPECTED for label in case.allowed} <= set(STAFF)


def test_every_followup_route_is_in_the_table(reports):
    uncovered = uncovered_routes(reports.client.app, EXPECTED + PLATFORM_CASES)
    assert [route for route in uncovered if "/api/training/" not in route] == []


def test_an_ombudsman_token_naming_an_agency_cannot_act_for_that_agency(followup):
    """`lapor token --role ombudsman --agency pemda-53.71` made a token confined to Kota Kupang, so the Ombudsman
    accepted, answered and resolved Kupang's reports as if it held them (its follow-ups skipping Kupang's
    two-step approval). The Ombudsman acts only as the Ombudsman office, on what it took over."""
    followup.disposed("LAP-ORI-1")
    # Signed as `lapor token` signed it (a token made before the refusal below existed).
    now = int(time.time())
    signed = jwt.encode(
        {"iss": ISSUER, "sub": "ori-1", "role": "ombudsman", "agency": KUPANG, "iat": now, "exp": now + 3600},
        followup.ctx.settings.signing_secret(), algorithm=ALGORITHM,
    )
    before = followup.types("LAP-ORI-1")
    response = followup.act("LAP-ORI-1", "accept", {"Authorization": f"Bearer {signed}"})
    assert response.status_code == 401, response.text
    assert followup.types("LAP-ORI-1") == before
    with pytest.raises(ValueError, match=OMBUDSMAN_AGENCY):
        followup.tokens.issue(Role.ombudsman, subject="ori-1", agency_id=KUPANG)
    # The Ombudsman's own token still reads every queue, as oversight.
    ombudsman = followup.bearer(Role.ombudsman, "ori-1")
    assert followup.client.get(f"/api/queues/{KUPANG}", headers=ombudsman).status_code == 200
