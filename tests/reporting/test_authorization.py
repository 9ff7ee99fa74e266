"""Who may call reporting's routes: every route × every kind of caller (tests/platform/authz.py).

The table is written from DESIGN.md's roles: national figures and the scoreboard for the national overseers,
an agency's view for overseers and that agency's own staff (a unit officer: its unit's), the live stream for
all staff (each then sees only what the privacy policy lets it), audit replay for the national admin, auditors
and the Ombudsman, public statistics for anyone. It runs against a real server, since the live stream never
ends: an allowed caller is recognised from the status line of the stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from lapor.app import create_app
from lapor.auth import TokenService
from lapor.clock import ManualClock, SystemClock
from lapor.settings import load_settings
from services.reporting.service import SERVICE
from tests.platform.authz import (
    FOREIGN_AGENCY,
    HOME_AGENCY,
    HOME_UNIT,
    PLATFORM_CASES,
    STAFF,
    Case,
    assert_matrix,
    callers,
    everyone,
    uncovered_routes,
)
from tests.reporting import scenario
from tests.reporting.conftest import live_server

OVERSIGHT = frozenset({"admin_national", "operator", "auditor", "ombudsman"})
AUDITORS = frozenset({"admin_national", "auditor", "ombudsman"})
ALL_STAFF = frozenset(label for label in STAFF if not label.startswith("integration"))
HOME_DECIDERS = frozenset({"admin_agency", "liaison"})
FOREIGN_DECIDERS = frozenset({"admin_agency@foreign", "liaison@foreign"})

EXPECTED = [
    Case("GET", "/api/reports/national", OVERSIGHT),
    Case("GET", "/api/reports/national?region=53", OVERSIGHT),
    Case("GET", "/api/reports/national/agencies", OVERSIGHT),
    Case("GET", f"/api/reports/agencies/{HOME_AGENCY}", OVERSIGHT | HOME_DECIDERS),
    Case("GET", f"/api/reports/agencies/{HOME_UNIT}", OVERSIGHT | HOME_DECIDERS | {"unit_officer"}),
    Case("GET", f"/api/reports/agencies/{FOREIGN_AGENCY}", OVERSIGHT | FOREIGN_DECIDERS),
    Case("GET", "/api/stream", ALL_STAFF),
    Case("GET", f"/api/stream?agency={FOREIGN_AGENCY}", OVERSIGHT | FOREIGN_DECIDERS),
    Case("GET", "/api/audit/complaints/LAP-G1-01/events", AUDITORS),
    Case("GET", "/api/audit/complaints/LAP-G1-01/state", AUDITORS),
    Case("GET", "/api/audit/integrity", AUDITORS),
    Case("GET", "/api/public/statistics", everyone()),
]


@dataclass
class Answer:
    status_code: int
    text: str


class LiveClient:
    """What `run_matrix` needs of a client, over a real connection: a stream is answered by its status line."""

    def __init__(self, url: str) -> None:
        self._client = httpx2.Client(base_url=url, timeout=30)

    def request(self, method: str, path: str, headers: dict[str, str], json: Any = None) -> Answer:
        with self._client.stream(method, path, headers=headers, json=json) as response:
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                return Answer(response.status_code, "")
            return Answer(response.status_code, response.read().decode())

    def close(self) -> None:
        self._client.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Any, LiveClient, TokenService]]:
    settings = load_settings(data=tmp_path / "var", training=True)
    app = create_app(settings, [SERVICE])
    with live_server(app) as server:
        clock = server.ctx.clock
        assert isinstance(clock, ManualClock)
        scenario.play(server.ctx.store, clock)
        client = LiveClient(server.url)
        try:
            yield app, client, TokenService(settings.signing_secret(), SystemClock())
        finally:
            client.close()


def test_every_reporting_route_admits_exactly_the_callers_design_allows(served):
    _, client, tokens = served
    assert_matrix(client, EXPECTED, callers(tokens, {"LAP-G1-01": "not-a-real-token", "LAP-G2-01": "nor-this"}))


def test_every_reporting_route_is_in_the_table(served):
    app, _, _ = served
    # Training mode (which moves the clock here) adds the platform's own /api/training routes.
    assert [route for route in uncovered_routes(app, EXPECTED + PLATFORM_CASES) if "/api/training/" not in route] == []
