"""Fixtures for the followup tests: the followup service on a temporary data directory (real SQLite store and read
models, its subscriptions and loops running) on a training clock the tests move, tokens signed with its secret,
and helpers that write what the other services decide (the directory, submission, verification, disposition,
the reporter's feedback) as real events; and a real webhook receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lapor.app import create_app
from lapor.auth import TokenService
from lapor.clock import ManualClock, SystemClock
from lapor.context import ServiceContext
from lapor.principal import NATIONAL_ADMIN_AGENCY, OMBUDSMAN_AGENCY, Role
from lapor.settings import load_settings
from lapor.store import ANY, RecordedEvent
from schemas.events import (
    AgencyKind,
    AgencyRegistered,
    ComplaintDisposed,
    ComplaintEscalated,
    ComplaintSubmitted,
    ComplaintVerified,
    EscalationKind,
    EventData,
    FeedbackGiven,
    Level,
    OmbudsmanConsentGiven,
)
from services.followup.service import SERVICE

KUPANG = "pemda-53.71"  # Pemerintah Kota Kupang
DINKES = "pemda-53.71/dinkes"
DISDIK = "pemda-53.71/disdik"
MALANG = "pemda-35.73"  # Pemerintah Kota Malang
# A Monday 09:00 WIB with three plain working weeks after it (no libur nasional or cuti bersama until 2 July).
MONDAY = datetime(2031, 6, 9, 2, 0, tzinfo=UTC)  # 09:00 WIB

AGENCIES = [
    (NATIONAL_ADMIN_AGENCY, "Kementerian PANRB", None, AgencyKind.kementerian),
    (OMBUDSMAN_AGENCY, "Ombudsman Republik Indonesia", None, AgencyKind.lembaga),
    (KUPANG, "Pemerintah Kota Kupang", None, AgencyKind.pemerintah_kabupaten_kota),
    (DINKES, "Dinas Kesehatan Kota Kupang", KUPANG, AgencyKind.perangkat_daerah),
    (DISDIK, "Dinas Pendidikan Kota Kupang", KUPANG, AgencyKind.perangkat_daerah),
    (MALANG, "Pemerintah Kota Malang", None, AgencyKind.pemerintah_kabupaten_kota),
    (MALANG + "/dinkes", "Dinas Kesehatan Kota Malang", MALANG, AgencyKind.perangkat_daerah),
]


@dataclass
class Followup:
    client: TestClient
    tokens: TokenService

    @property
    def ctx(self) -> ServiceContext:
        return self.client.app.state.context

    @property
    def clock(self) -> ManualClock:
        clock = self.ctx.clock
        assert isinstance(clock, ManualClock)
        return clock

    # -- callers --------------------------------------------------------------------------------------------

    def bearer(self, role: Role, subject: str | None = None, **scope: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens.issue(role, subject=subject, **scope)}"}

    def liaison(self, agency_id: str = KUPANG, subject: str = "liaison-kupang") -> dict[str, str]:
        return self.bearer(Role.liaison, subject, agency_id=agency_id)

    def admin(self, agency_id: str = KUPANG, subject: str = "admin-kupang") -> dict[str, str]:
        return self.bearer(Role.admin_agency, subject, agency_id=agency_id)

    def unit_officer(self, unit_id: str = DINKES, subject: str = "officer-dinkes") -> dict[str, str]:
        return self.bearer(Role.unit_officer, subject, unit_id=unit_id)

    # -- what the other services decide ----------------------------------------------------------------------

    def register_directory(self) -> None:
        for agency_id, name, parent_id, kind in AGENCIES:
            event = AgencyRegistered(agency_id=agency_id, name=name, parent_id=parent_id, kind=kind)
            self.ctx.store.append(f"directory-{agency_id}", [event.to_new_event()], ANY)

    def decide(self, tracking_id: str, *events: EventData, role: str = "admin_national") -> None:
        stream = f"complaint-{tracking_id}"
        version = self.ctx.store.stream_version(stream)
        self.ctx.store.append(
            stream, [e.to_new_event(metadata={"actor": f"test-{role}", "role": role}) for e in events], version
        )

    def disposed(
        self,
        tracking_id: str,
        agency_id: str = KUPANG,
        *,
        title: str = "Puskesmas Oepoi tutup di jam pelayanan",
        category: str = "kesehatan",
        confidential: bool = False,
        anonymous: bool = False,
        reporter_ref: str | None = None,
        verified_title: str | None = None,
    ) -> str:
        """A report submitted, verified (its title corrected to `verified_title`) and disposed to `agency_id` now
        (as intake and routing decide)."""
        now = self.clock.now()
        policy = self.ctx.policy
        self.decide(
            tracking_id,
            ComplaintSubmitted(
                tracking_id=tracking_id,
                kind="pengaduan",
                title=title,
                body="Sudah tiga hari puskesmas tutup pada jam pelayanan; warga yang sakit pulang tanpa dilayani.",
                category=category,
                region_code="53.71",
                channel="web",
                anonymous=anonymous,
                confidential=confidential,
                reporter_token_hash=hashlib.sha256(tracking_id.encode()).hexdigest(),
                reporter_ref=reporter_ref,
                verification_due=policy.verification_due(now),
            ),
            ComplaintVerified(classification="pengaduan", category=category, title=verified_title),
            ComplaintDisposed(
                agency_id=agency_id,
                follow_up_due=policy.follow_up_due(now),
                ombudsman_offer_due=policy.ombudsman_offer_due(now),
            ),
        )
        return tracking_id

    def feedback(self, tracking_id: str, *, satisfied: bool, comment: str | None = None) -> None:
        """The reporter's answer to a resolution (intake decides it)."""
        self.decide(
            tracking_id, FeedbackGiven(satisfied=satisfied, rating=5 if satisfied else 1, comment=comment),
            role="reporter",
        )

    def offered_with_consent(self, tracking_id: str, from_level: Level = Level.agency) -> None:
        """Routing's offer of the Ombudsman takeover (60 working days unresolved) and the reporter's consent."""
        self.decide(
            tracking_id,
            ComplaintEscalated(
                kind=EscalationKind.ombudsman_offer, reason="60 hari kerja belum selesai.", from_level=from_level,
                to_level=from_level, automatic=True,
            ),
            OmbudsmanConsentGiven(),
        )

    def taken_over_by_ombudsman(self, tracking_id: str, from_level: Level) -> None:
        self.offered_with_consent(tracking_id, from_level)
        self.decide(
            tracking_id,
            ComplaintEscalated(
                kind=EscalationKind.ombudsman, reason="Pelapor setuju diambil alih Ombudsman.", from_level=from_level,
                to_level=Level.ombudsman, to_agency_id=OMBUDSMAN_AGENCY, automatic=True,
            ),
        )

    # -- looking ------------------------------------------------------------------------------------------

    def events(self, tracking_id: str) -> list[RecordedEvent]:
        return self.ctx.store.read_stream(f"complaint-{tracking_id}")

    def types(self, tracking_id: str) -> list[str]:
        return [event.type for event in self.events(tracking_id)]

    def version(self, tracking_id: str) -> int:
        return self.ctx.store.stream_version(f"complaint-{tracking_id}")

    def settle(self, timeout: float = 20.0) -> None:
        """Wait until every subscription has handled everything in the log (reactions append more)."""
        deadline = time.monotonic() + timeout
        runners = self.client.app.state.runtime.runners
        while any(runner.lag() for runner in runners):
            assert time.monotonic() < deadline, {runner.name: runner.lag() for runner in runners}
            time.sleep(0.02)

    def queue(self, agency_id: str, headers: dict[str, str], **params: Any) -> dict[str, Any]:
        self.settle()
        response = self.client.get(f"/api/queues/{agency_id}", headers=headers, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def act(
        self, tracking_id: str, verb: str, headers: dict[str, str], body: dict[str, Any] | None = None,
        *, if_match: int | None = None,
    ) -> Any:
        if if_match is not None:
            headers = {**headers, "If-Match": f'"{if_match}"'}
        return self.client.post(f"/api/complaints/{tracking_id}/{verb}", headers=headers, json=body)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def start(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """`with start() as app:` the followup service on `data_dir`; again on the same directory is a restart. The
    clock is a training clock set to `at` (a restart passes the time the last run reached), unless the overrides
    say `training=False` (production runs on the real clock)."""
    # Idle subscriptions notice a stop only when their wait times out: a short wait makes each app stop quickly.
    monkeypatch.setattr("lapor.app.SUBSCRIPTION_IDLE_WAIT", 0.05)

    @contextmanager
    def run(at: datetime = MONDAY, **overrides: Any) -> Iterator[Followup]:
        settings = load_settings(**{"data": data_dir, "training": True, **overrides})
        app = create_app(settings, [SERVICE])
        clock = app.state.context.clock
        if settings.training:
            assert isinstance(clock, ManualClock)
            clock.set(at)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Followup(client, TokenService(settings.signing_secret(), SystemClock()))

    return run


@pytest.fixture
def followup(start: Callable[..., Any]) -> Iterator[Followup]:
    with start() as app:
        app.register_directory()
        yield app


def later(app: Followup, **delta: float) -> datetime:
    return app.clock.advance(timedelta(**delta))


# -- a webhook receiver -------------------------------------------------------------------------------------


class Receiver:
    """An agency's webhook endpoint: checks the signature with the secret it was given, answers with the scripted
    statuses (then 200), and keeps what it accepted."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}  # path -> secret
        self.script: list[int] = []
        self.accepted: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.attempts: list[str] = []  # X-Lapor-Delivery of every request, accepted or not
        self.forged = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                secret = receiver.secrets.get(self.path, "")
                signed = self.headers["X-Lapor-Timestamp"].encode() + b"." + body
                expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
                receiver.attempts.append(self.headers["X-Lapor-Delivery"])
                if not hmac.compare_digest(expected, self.headers["X-Lapor-Signature"]):
                    receiver.forged += 1
                    status = 401
                else:
                    status = receiver.script.pop(0) if receiver.script else 200
                    if status == 200:
                        receiver.accepted.append((self.path, json.loads(body), dict(self.headers)))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.server.server_address[1]}{path}"

    def wait_for(self, count: int, what: str = "accepted", timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(getattr(self, what)) < count:
            assert time.monotonic() < deadline, f"{what}: {len(getattr(self, what))} of {count}"
            time.sleep(0.02)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def subscribe(
    app, receiver: Receiver, agency_id: str, path: str, *, host: str = "127.0.0.1", **body: Any
) -> dict[str, Any]:
    admin = app.admin(agency_id.split("/")[0], f"admin-{agency_id}")
    response = app.client.post(
        f"/api/agencies/{agency_id}/webhooks", headers=admin, json={"url": receiver.url(path, host), **body}
    )
    assert response.status_code == 201, response.text
    receiver.secrets[path] = response.json()["secret"]
    return response.json()
