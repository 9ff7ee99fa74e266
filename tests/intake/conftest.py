"""Fixtures for the intake tests: the intake service on a temporary data directory (real SQLite store, vault and
read models, subscriptions running), tokens signed with its secret, and helpers that write what the other
services would decide (directory entries, verification, disposition, resolution) as real events."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lapor.app import create_app, load_services
from lapor.auth import TokenService
from lapor.clock import SystemClock
from lapor.context import ServiceContext
from lapor.principal import Role
from lapor.settings import load_settings
from lapor.store import RecordedEvent
from schemas.events import (
    AgencyKind,
    AgencyRegistered,
    ComplaintDisposed,
    ComplaintEscalated,
    ComplaintPended,
    ComplaintResolved,
    ComplaintVerified,
    DispositionAccepted,
    EscalationKind,
    EventData,
    Level,
)

# Submissions and SMS come from one test client: lift the per-client rate limits (one test checks them).
OPEN_LIMITS = {"submission_rate": "100000/minute", "sms_rate": "100000/minute"}

REPORT = {
    "title": "Jalan rusak di Jl. El Tari",
    "body": "Jalan di depan kantor kelurahan berlubang besar sejak tiga bulan, sudah ada pengendara jatuh.",
    "region_code": "53.71",
}


@dataclass
class Intake:
    client: TestClient
    tokens: TokenService

    @property
    def ctx(self) -> ServiceContext:
        return self.client.app.state.context

    def bearer(self, role: Role, **scope: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens.issue(role, **scope)}"}

    def submit(self, **fields: Any) -> dict[str, Any]:
        response = self.client.post("/api/complaints", json={**REPORT, **fields})
        assert response.status_code == 201, response.text
        return response.json()

    def events(self, tracking_id: str) -> list[RecordedEvent]:
        return self.ctx.store.read_stream(f"complaint-{tracking_id}")

    def head(self) -> int:
        return self.ctx.store.head_position()

    def decide(self, tracking_id: str, *events: EventData, actor: str = "test-officer") -> None:
        """Append events another service would decide (routing, followup) to the report."""
        stream = f"complaint-{tracking_id}"
        version = self.ctx.store.stream_version(stream)
        self.ctx.store.append(
            stream, [e.to_new_event(metadata={"actor": actor, "role": "admin_national"}) for e in events], version
        )

    def register_agency(self, agency_id: str, name: str, region_code: str | None, *keywords: str) -> None:
        event = AgencyRegistered(
            agency_id=agency_id,
            name=name,
            kind=AgencyKind.pemerintah_kabupaten_kota,
            region_code=region_code,
            sms_keywords=keywords,
        )
        self.ctx.store.append(f"directory-{agency_id}", [event.to_new_event()])

    def caught_up(self) -> None:
        """Wait until every subscription has handled everything in the store."""
        runners = self.client.app.state.runtime.runners
        deadline = time.monotonic() + 10
        while not all(runner.caught_up() for runner in runners):
            assert time.monotonic() < deadline, "the subscriptions did not catch up"
            time.sleep(0.01)

    # -- what routing and followup decide, in the order the process allows ---------------------------------

    def pend(self, tracking_id: str, question: str = "Mohon kirim foto lokasi jalan yang rusak.") -> None:
        now = self.ctx.clock.now()
        self.decide(tracking_id, ComplaintPended(information_requested=question, archive_due=now + timedelta(days=40)))

    def dispose(self, tracking_id: str, agency_id: str = "pemda-53.71") -> None:
        now = self.ctx.clock.now()
        self.decide(
            tracking_id,
            ComplaintVerified(classification="pengaduan", category="Infrastruktur"),
            ComplaintDisposed(
                agency_id=agency_id,
                follow_up_due=now + timedelta(days=7),
                ombudsman_offer_due=now + timedelta(days=90),
            ),
        )

    def resolve(self, tracking_id: str, agency_id: str = "pemda-53.71") -> None:
        self.dispose(tracking_id, agency_id)
        self.decide(
            tracking_id,
            DispositionAccepted(agency_id=agency_id),
            ComplaintResolved(
                resolution="Jalan sudah ditambal.", feedback_due=self.ctx.clock.now() + timedelta(days=14)
            ),
        )

    def offer_ombudsman(self, tracking_id: str) -> None:
        self.dispose(tracking_id)
        self.decide(
            tracking_id,
            ComplaintEscalated(
                kind=EscalationKind.ombudsman_offer,
                reason="60 hari kerja belum selesai",
                from_level=Level.agency,
                to_level=Level.agency,
                automatic=True,
            ),
        )


@contextmanager
def running_intake(
    data: Path, *, client_address: str = "testclient", services: Sequence[str] = ("intake",), **overrides: Any
) -> Iterator[Intake]:
    """The intake service (and the other `services` named) on `data` with its lifespan running; its test client's
    requests come from `client_address`."""
    settings = load_settings(data=data, limits=overrides.pop("limits", OPEN_LIMITS), **overrides)
    app = create_app(settings, load_services(services))
    with TestClient(app, raise_server_exceptions=False, client=(client_address, 50000)) as client:
        yield Intake(client, TokenService(settings.signing_secret(), SystemClock()))


@pytest.fixture
def serve_intake(tmp_path: Path) -> Callable[..., Any]:
    """`with serve_intake(**settings) as intake:` — a fresh data directory per test; a second `with` restarts on it."""
    return lambda **overrides: running_intake(tmp_path / "var", **overrides)


@pytest.fixture
def intake(serve_intake: Callable[..., Any]) -> Iterator[Intake]:
    with serve_intake() as running:
        yield running


@pytest.fixture(scope="module")
def module_intake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Intake]:
    """One running service for a module whose tests only look at their own reports (or at what did not change):
    starting and stopping the service costs more than most of those tests."""
    with running_intake(tmp_path_factory.mktemp("intake") / "var") as running:
        yield running
