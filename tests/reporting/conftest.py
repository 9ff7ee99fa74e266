"""Fixtures for the reporting tests: the reporting service on a temporary data directory (training mode, so the
test moves the clock that stamps every event), on SQLite or PostgreSQL; tokens signed with its secret; a real
uvicorn server for the live stream."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from psycopg import sql

from lapor.app import create_app
from lapor.auth import TokenService
from lapor.clock import ManualClock, SystemClock
from lapor.context import ServiceContext
from lapor.principal import Role
from lapor.settings import load_settings
from schemas.events import EventData
from services.reporting.service import SERVICE
from tests.conftest import wait_until, with_search_path
from tests.reporting import scenario


@dataclass
class Reporting:
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

    def bearer(self, role: Role, **scope: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens.issue(role, **scope)}"}

    def caught_up(self) -> None:
        caught_up(self.client.app)

    def append(self, tracking_id: str, model: EventData, metadata: dict[str, str]) -> None:
        """Append `model` to the report now and wait until every subscription has it."""
        stream = f"complaint-{tracking_id}"
        self.ctx.store.append(stream, [model.to_new_event(metadata=metadata)], self.ctx.store.stream_version(stream))
        self.caught_up()

    def get(self, path: str, role: Role = Role.admin_national, **scope: Any) -> dict[str, Any]:
        response = self.client.get(path, headers=self.bearer(role, **scope))
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_store(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for the default embedded SQLite store; a fresh PostgreSQL schema (for the module) otherwise."""
    if request.param == "sqlite":
        yield None
        return
    server = request.getfixturevalue("postgres_server")
    schema = f"test_reporting_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    yield with_search_path(server, schema)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@contextmanager
def reporting_app(data: Path, store: str | None = None) -> Iterator[Reporting]:
    settings = load_settings(data=data, training=True, store=store)
    app = create_app(settings, [SERVICE])
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Reporting(client, TokenService(settings.signing_secret(), SystemClock()))


@contextmanager
def played(
    data: Path, store: str | None, reports: Sequence[scenario.Report] | None = None, *, now: datetime | None = None,
    settle_every: int = 0,
) -> Iterator[Reporting]:
    """The reporting app with `reports` (the scenario's month unless given) played into its store, the clock at
    `now` (`scenario.play`), and every projection caught up (also after every `settle_every` appends, when given)."""
    with reporting_app(data, store) as service:
        settle = service.caught_up if settle_every else None
        scenario.play(service.ctx.store, service.clock, reports, now, settle=settle, every=settle_every or 1)
        service.caught_up()
        yield service


@pytest.fixture
def reporting(tmp_path: Path) -> Iterator[Reporting]:
    with reporting_app(tmp_path / "var") as service:
        yield service


@dataclass
class LiveServer:
    url: str
    app: FastAPI

    @property
    def ctx(self) -> ServiceContext:
        return self.app.state.context

    def caught_up(self) -> None:
        caught_up(self.app)


def caught_up(app: FastAPI) -> None:
    """Every subscription of the app has handled everything appended so far."""
    runners = app.state.runtime.runners
    wait_until(lambda: all(runner.caught_up() for runner in runners))


@contextmanager
def live_server(app: FastAPI) -> Iterator[LiveServer]:
    """The app under a real uvicorn on a free port, in a thread (the live stream needs a real connection)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(10)
