"""The authorization matrix framework: every route × every kind of caller -> allowed or denied.

The expected outcome of each route is written by hand in a test's table (`Case.allowed`), from DESIGN.md's
roles — never derived from `lapor.auth.ACTIONS`, so a wrong entry there is caught. A caller is *denied* when
the response is 401 or 403; any other answer below 500 means it got past authorization (a 404 for an unknown
complaint, a 409, a 422 for an empty body all count as allowed). A 5xx is always reported.

Service tests extend it: build their app, list their routes as `Case`s with the callers allowed, and call
`assert_matrix(client, cases, callers)`; `uncovered_routes(app, cases)` names routes with no case.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from lapor.auth import TokenService
from lapor.principal import NATIONAL_ADMIN_AGENCY, Role

HOME_AGENCY = "pemda-53.71"  # Pemerintah Kota Kupang
HOME_UNIT = "pemda-53.71/dinkes"
SIBLING_UNIT = "pemda-53.71/disdik"
FOREIGN_AGENCY = "pemda-35.73"  # Pemerintah Kota Malang

ANONYMOUS = "anonymous"
REPORTER = "reporter"  # holds the reporter_token of the complaint in the path
OTHER_REPORTER = "reporter@other-complaint"


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # a concrete path, as a client calls it
    allowed: frozenset[str]  # caller labels expected to get past authorization
    json: Any = None
    complaint: str | None = None  # the tracking id whose reporter token REPORTER holds

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


# Every kind of caller: label -> (role, token scope). Reporters are added by `callers()`.
STAFF: dict[str, tuple[Role, dict[str, str]]] = {
    "admin_national": (Role.admin_national, {"agency_id": NATIONAL_ADMIN_AGENCY}),
    "admin_agency": (Role.admin_agency, {"agency_id": HOME_AGENCY}),
    "admin_agency@foreign": (Role.admin_agency, {"agency_id": FOREIGN_AGENCY}),
    "liaison": (Role.liaison, {"agency_id": HOME_AGENCY}),
    "liaison@foreign": (Role.liaison, {"agency_id": FOREIGN_AGENCY}),
    "unit_officer": (Role.unit_officer, {"agency_id": HOME_AGENCY, "unit_id": HOME_UNIT}),
    "unit_officer@sibling": (Role.unit_officer, {"agency_id": HOME_AGENCY, "unit_id": SIBLING_UNIT}),
    "unit_officer@foreign": (Role.unit_officer, {"agency_id": FOREIGN_AGENCY, "unit_id": FOREIGN_AGENCY + "/dinkes"}),
    "operator": (Role.operator, {}),
    "auditor": (Role.auditor, {}),
    "ombudsman": (Role.ombudsman, {}),
    "integration:sms": (Role.integration, {"channel": "sms"}),
    "integration:sambat": (Role.integration, {"channel": "sambat-malang"}),
}

Headers = Callable[[Case], dict[str, str]]


def callers(tokens: TokenService, reporter_tokens: Mapping[str, str]) -> dict[str, Headers]:
    """Label -> the headers that caller sends for a case. `reporter_tokens`: tracking id -> reporter token."""

    def staff(role: Role, scope: dict[str, str]) -> Headers:
        token = tokens.issue(role, **scope)
        return lambda case: {"Authorization": f"Bearer {token}"}

    def reporter(case: Case) -> dict[str, str]:
        token = reporter_tokens.get(case.complaint or "")
        return {"X-Reporter-Token": token} if token else {}

    def other_reporter(case: Case) -> dict[str, str]:
        other = next(t for tracking_id, t in reporter_tokens.items() if tracking_id != case.complaint)
        return {"X-Reporter-Token": other}

    result: dict[str, Headers] = {ANONYMOUS: lambda case: {}}
    result.update({label: staff(role, scope) for label, (role, scope) in STAFF.items()})
    result[REPORTER] = reporter
    result[OTHER_REPORTER] = other_reporter
    return result


def everyone() -> frozenset[str]:
    return frozenset({ANONYMOUS, REPORTER, OTHER_REPORTER, *STAFF})


# The platform's own routes, mounted on every app: a service's table adds these. The subject is nobody's, so the
# revocations the matrix makes refuse none of its callers' tokens.
_REVOKE_NOBODY = {"subject": "nobody-in-the-matrix", "reason": "authorization matrix"}
TOKEN_ADMINS = frozenset({"admin_national", "admin_agency", "admin_agency@foreign"})
PLATFORM_CASES = [
    Case("GET", "/api/tokens/revocations", TOKEN_ADMINS),
    # an agency's admin revokes within its own agency (the default), the national admin in every agency
    Case("POST", "/api/tokens/revocations", TOKEN_ADMINS, json=_REVOKE_NOBODY),
    Case(
        "POST", "/api/tokens/revocations", frozenset({"admin_national", "admin_agency"}),
        json={**_REVOKE_NOBODY, "agency_id": HOME_AGENCY},
    ),
    Case(
        "POST", "/api/tokens/revocations", frozenset({"admin_national"}),
        json={**_REVOKE_NOBODY, "agency_id": NATIONAL_ADMIN_AGENCY},
    ),
]


@dataclass
class Outcome:
    case: Case
    caller: str
    status: int
    body: str = field(repr=False, default="")

    @property
    def denied(self) -> bool:
        return self.status in (401, 403)


def run_matrix(client: TestClient, cases: Iterable[Case], headers: Mapping[str, Headers]) -> list[str]:
    """Every mismatch between the table and what the app answered, as readable lines."""
    mismatches: list[str] = []
    for case in cases:
        unknown = case.allowed - set(headers)
        if unknown:
            mismatches.append(f"{case.label}: unknown callers in the table: {sorted(unknown)}")
        for caller, make_headers in headers.items():
            response = client.request(case.method, case.path, headers=make_headers(case), json=case.json)
            outcome = Outcome(case, caller, response.status_code, response.text)
            expected_allowed = caller in case.allowed
            if outcome.status >= 500:
                mismatches.append(f"{case.label} as {caller}: server error {outcome.status}")
            elif expected_allowed and outcome.denied:
                mismatches.append(f"{case.label} as {caller}: expected allowed, got {outcome.status}")
            elif not expected_allowed and not outcome.denied:
                mismatches.append(f"{case.label} as {caller}: expected denied, got {outcome.status}")
    return mismatches


def assert_matrix(client: TestClient, cases: Iterable[Case], headers: Mapping[str, Headers]) -> None:
    mismatches = run_matrix(client, cases, headers)
    assert not mismatches, "authorization matrix mismatches:\n" + "\n".join(mismatches)


def _flatten(routes: Iterable[Any]) -> Iterator[Any]:
    """Every route, also those of included routers: FastAPI >= 0.16x keeps an included router as one entry of
    `app.routes` (with `effective_candidates()`), so `app.routes` alone would miss every service route."""
    for route in routes:
        if hasattr(route, "effective_candidates"):
            yield from _flatten(route.effective_candidates())
        else:
            yield route


def api_routes(app: FastAPI, prefix: str = "/api/") -> list[Any]:
    """The app's routes under `prefix`, each with `path` (the template), `methods` and `path_regex`."""
    return [
        r for r in _flatten(app.routes)
        if isinstance(getattr(r, "path", None), str) and r.path.startswith(prefix) and getattr(r, "methods", None)
    ]


def uncovered_routes(app: FastAPI, cases: Iterable[Case], *, prefix: str = "/api/") -> list[str]:
    """API routes (method and template) that no case exercises."""
    covered: set[tuple[str, str]] = set()
    routes = api_routes(app, prefix)
    for case in cases:
        for route in routes:
            if case.method in route.methods and route.path_regex.match(case.path):
                covered.add((case.method, route.path))
    return sorted(
        f"{method} {route.path}"
        for route in routes
        for method in route.methods
        if (method, route.path) not in covered
    )
