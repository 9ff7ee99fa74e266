"""Who may call intake's routes, on the real service: every route × every kind of caller (the platform's matrix
framework). The table is written from DESIGN.md's roles, as in tests/platform/test_authorization_matrix.py."""

from __future__ import annotations

from lapor.principal import NATIONAL_ADMIN_AGENCY, Role
from schemas.events import (
    ComplaintAssigned,
    ComplaintEscalated,
    DispositionAccepted,
    DuplicateMarked,
    EscalationKind,
    Level,
)
from tests.intake.conftest import REPORT
from tests.platform.authz import (
    HOME_AGENCY,
    HOME_UNIT,
    PLATFORM_CASES,
    REPORTER,
    Case,
    assert_matrix,
    callers,
    everyone,
    uncovered_routes,
)

EVERYONE = everyone()
OWN_REPORTER = frozenset({REPORTER})
SMS = {
    "message_id": "auth-1",
    "sender": "6281234567890",
    "text": "KOTKUPANG jalan rusak",
    "received_at": "2026-03-06T08:00:00Z",
}


def test_intake_routes_admit_exactly_the_callers_design_allows(intake):
    national = intake.submit()  # with routing: the national admin's
    home = intake.submit()
    intake.dispose(home["tracking_id"], HOME_AGENCY)
    intake.decide(home["tracking_id"], DispositionAccepted(agency_id=HOME_AGENCY), ComplaintAssigned(unit_id=HOME_UNIT))
    national_id, home_id = national["tracking_id"], home["tracking_id"]
    cases = [
        Case("POST", "/api/complaints", EVERYONE, json=REPORT),
        Case("GET", f"/api/complaints/{home_id}", EVERYONE, complaint=home_id),
        Case(
            "POST",
            f"/api/complaints/{national_id}/information",
            OWN_REPORTER,
            json={"text": "Foto terlampir."},
            complaint=national_id,
        ),
        Case(
            "POST",
            f"/api/complaints/{home_id}/feedback",
            OWN_REPORTER,
            json={"satisfied": True, "rating": 5},
            complaint=home_id,
        ),
        Case("POST", f"/api/complaints/{home_id}/ombudsman-consent", OWN_REPORTER, complaint=home_id),
        Case("POST", "/api/channels/sms", frozenset({"integration:sms"}), json=SMS),
        Case(
            "POST",
            "/api/channels/sambat-malang/complaints",
            frozenset({"integration:sambat"}),
            json={**REPORT, "external_id": "SBT-1"},
        ),
    ]
    reporter_tokens = {national_id: national["reporter_token"], home_id: home["reporter_token"]}
    assert_matrix(intake.client, cases, callers(intake.tokens, reporter_tokens))
    assert uncovered_routes(intake.client.app, cases + PLATFORM_CASES) == []


def test_a_bad_bearer_token_is_refused_even_on_the_public_routes(intake):
    headers = {"Authorization": "Bearer not.a.token"}
    assert intake.client.post("/api/complaints", json=REPORT, headers=headers).status_code == 401
    receipt = intake.submit()
    assert intake.client.get(f"/api/complaints/{receipt['tracking_id']}", headers=headers).status_code == 401


def test_an_agency_token_does_not_open_another_agencys_reports_beyond_the_public_view(intake):
    receipt = intake.submit(confidential=True)
    intake.dispose(receipt["tracking_id"], HOME_AGENCY)
    path = f"/api/complaints/{receipt['tracking_id']}"
    foreign = intake.bearer(Role.liaison, agency_id="pemda-35.73")
    sibling_unit = intake.bearer(Role.unit_officer, agency_id=HOME_AGENCY, unit_id="pemda-53.71/disdik")
    assert intake.client.get(path, headers=foreign).status_code == 404
    assert intake.client.get(path, headers=sibling_unit).status_code == 404
    assert intake.client.get(path, headers=intake.bearer(Role.auditor)).status_code == 200


def test_an_escalation_to_the_national_level_does_not_open_the_report_to_kemenpanrbs_agency_staff(intake):
    """A ministry's missed follow-up goes to the national level, which routing names `kemenpanrb`: the national
    admin watches it there. KemenPAN-RB's own agency staff, an agency like any other, could open the confidential
    report from then on."""
    receipt = intake.submit(confidential=True)
    tracking_id = receipt["tracking_id"]
    intake.dispose(tracking_id, "kemenkes")
    intake.decide(
        tracking_id,
        DispositionAccepted(agency_id="kemenkes"),
        ComplaintEscalated(
            kind=EscalationKind.follow_up_overdue, reason="Tindak lanjut terlambat.", from_level=Level.agency,
            to_level=Level.national, to_agency_id=NATIONAL_ADMIN_AGENCY, automatic=True,
        ),
    )
    path = f"/api/complaints/{tracking_id}"
    for role in (Role.admin_agency, Role.liaison):
        assert intake.client.get(path, headers=intake.bearer(role, agency_id=NATIONAL_ADMIN_AGENCY)).status_code == 404
    assert intake.client.get(path, headers=intake.bearer(Role.liaison, agency_id="kemenkes")).status_code == 200
    assert intake.client.get(path, headers=intake.bearer(Role.admin_national)).status_code == 200


def test_a_duplicate_names_its_original_only_to_callers_who_may_see_the_original(intake):
    """A bug hunt: the view of a public report marked as a duplicate named the original's tracking ID even when the
    original was confidential, so its reporter and the public learnt that a confidential report exists, and its ID.
    The status still says it is a duplicate."""
    for original_is_confidential in (True, False):
        original = intake.submit(confidential=original_is_confidential)["tracking_id"]
        copy = intake.submit()
        intake.decide(copy["tracking_id"], DuplicateMarked(duplicate_of=original))
        path = f"/api/complaints/{copy['tracking_id']}"
        as_reporter = {"X-Reporter-Token": copy["reporter_token"]}
        for headers in ({}, as_reporter, intake.bearer(Role.admin_national), intake.bearer(Role.auditor)):
            shown = intake.client.get(path, headers=headers).json()
            assert shown["status"] == "duplicate"
            sees_original = intake.client.get(f"/api/complaints/{original}", headers=headers).status_code == 200
            assert sees_original == (not original_is_confidential or "Authorization" in headers)
            assert shown.get("duplicate_of") == (original if sees_original else None), (headers, shown)
