"""Who may call routing's routes, on the real routing app: every route × every kind of caller (the platform's
matrix framework, tests/platform/authz.py). The table below is written from DESIGN.md's roles; the platform's
own rows for routing's DESIGN routes are run against the real app too."""

from __future__ import annotations

import pytest

from lapor.principal import Principal, Role
from schemas.events import ComplaintAssigned, ComplaintDisposed, ComplaintVerified, DispositionAccepted
from tests.platform.authz import (
    HOME_AGENCY,
    HOME_UNIT,
    PLATFORM_CASES,
    Case,
    api_routes,
    assert_matrix,
    callers,
    everyone,
    uncovered_routes,
)
from tests.platform.test_authorization_matrix import EXPECTED as PLATFORM_ROWS
from tests.platform.test_authorization_matrix import REPORTER_TOKENS
from tests.routing.conftest import caught_up
from tests.routing.harness import agency_principal, append_as, submit_report

EVERYONE = everyone()
NATIONAL = frozenset({"admin_national"})
OVERSIGHT = frozenset({"admin_national", "operator", "auditor", "ombudsman"})
SYSTEM = Principal(subject="setup", role=Role.admin_national, agency_id="kemenpanrb")


def complaint(verb: str, tracking_id: str, allowed: frozenset[str], body: dict) -> Case:
    return Case("POST", f"/api/complaints/{tracking_id}/{verb}", allowed, json=body, complaint=tracking_id)


UNIT = {"name": "Unit Uji", "kind": "unit", "parent_id": HOME_UNIT}

ROUTING_TABLE = [
    # the verification desk: read by the national admin and the monitoring roles, decided by the national admin
    Case("GET", "/api/verification-queue", OVERSIGHT),
    Case("GET", "/api/verification-queue/LAP-NATIONAL", OVERSIGHT),
    complaint("verify", "LAP-NATIONAL", NATIONAL, {"category": "Kesehatan"}),
    complaint("pend", "LAP-NATIONAL", NATIONAL, {"information_requested": "Lokasi?"}),
    complaint("archive", "LAP-NATIONAL", NATIONAL, {"reason": "Bukan pengaduan"}),
    complaint("dispose", "LAP-NATIONAL", NATIONAL, {"agency_id": HOME_AGENCY}),
    complaint("mark-duplicate", "LAP-NATIONAL", NATIONAL, {"duplicate_of": "LAP-HOME"}),
    # an agency holding a report cannot re-route it: it returns it (bukan wewenang) through followup
    complaint("dispose", "LAP-HOME", NATIONAL, {"agency_id": "pemda-53"}),
    complaint("verify", "LAP-HOME", NATIONAL, {"category": "Kesehatan"}),
    # the directory is public; changing it (and the routing rules) is the national admin's
    Case("GET", "/api/agencies", EVERYONE),
    Case("GET", f"/api/agencies/{HOME_AGENCY}", EVERYONE),
    Case("GET", f"/api/agencies/{HOME_UNIT}", EVERYONE),
    Case("POST", "/api/agencies", NATIONAL, json={"agency_id": f"{HOME_AGENCY}/uji", **UNIT}),
    Case("PUT", f"/api/agencies/{HOME_AGENCY}/uji", NATIONAL, json=UNIT),
    Case("GET", "/api/routing-rules", EVERYONE),
    Case("PUT", "/api/routing-rules/uji", NATIONAL, json={"match": {"category": "Uji"}, "agency_id": HOME_AGENCY}),
]


@pytest.fixture
def routing_app(serve, tokens):
    """The routing app with the platform's three reports: one with routing, one disposed to Kota Kupang and
    assigned to its health office, one taken over by Ombudsman RI."""
    with serve() as client:
        ctx = client.app.state.context
        for tracking_id, token in REPORTER_TOKENS.items():
            submit_report(ctx, tracking_id, reporter_token=token)
        verified = ComplaintVerified(classification="pengaduan", category="Kesehatan")
        for tracking_id, agency_id in (("LAP-HOME", HOME_AGENCY), ("LAP-OMBUDSMAN", "ombudsman-ri")):
            now = ctx.clock.now()
            disposed = ComplaintDisposed(agency_id=agency_id, follow_up_due=ctx.policy.follow_up_due(now),
                                         ombudsman_offer_due=ctx.policy.ombudsman_offer_due(now))
            append_as(ctx, tracking_id, SYSTEM, verified, disposed)
        append_as(ctx, "LAP-HOME", agency_principal(HOME_AGENCY), DispositionAccepted(agency_id=HOME_AGENCY),
                  ComplaintAssigned(unit_id=HOME_UNIT))
        caught_up(client)
        yield client, callers(tokens, REPORTER_TOKENS)


def test_every_routing_route_admits_exactly_the_callers_design_allows(routing_app):
    client, headers = routing_app
    assert_matrix(client, ROUTING_TABLE, headers)


def test_the_platforms_rows_for_routings_design_routes_hold_on_the_real_app(routing_app):
    client, headers = routing_app
    routes = api_routes(client.app)
    mine = [
        case for case in PLATFORM_ROWS
        if any(case.method in route.methods and route.path_regex.match(case.path) for route in routes)
    ]
    assert {case.path.rsplit("/", 1)[-1] for case in mine} >= {"verify", "dispose", "agencies", "verification-queue"}
    assert_matrix(client, mine, headers)


def test_every_routing_route_is_in_the_table(routing_app):
    client, _ = routing_app
    # the check sees every route: an empty table misses all (routing's 13 and the platform's 2)
    assert len(uncovered_routes(client.app, [])) == 15
    assert uncovered_routes(client.app, ROUTING_TABLE + PLATFORM_CASES) == []
