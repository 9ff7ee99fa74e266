"""Fixtures for the routing tests: the service-level harness at a chosen moment, and the routing app over HTTP
(real SQLite store and read models on a temporary directory, lifespan running: the directory seeded, the
subscriptions and the scheduler started)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lapor.app import create_app
from lapor.auth import TokenService
from lapor.clock import SystemClock
from lapor.principal import NATIONAL_ADMIN_AGENCY, Role
from lapor.settings import load_settings
from services.routing.service import SERVICE
from tests.routing.harness import Routing

CATCH_UP_TIMEOUT = 20.0


@pytest.fixture
def routing_at(tmp_path: Path) -> Iterator[Callable[..., Routing]]:
    """`routing_at(moment)`: the harness with its clock at `moment`; closed after the test."""
    opened: list[Routing] = []

    def open_at(start: datetime, **options: Any) -> Routing:
        harness = Routing(tmp_path / "var", start, **options)
        opened.append(harness)
        return harness

    yield open_at
    for harness in opened:
        harness.close()


def caught_up(client: TestClient) -> None:
    """Wait until every subscription of the app has handled everything in the store."""
    runners = client.app.state.runtime.runners
    deadline = time.monotonic() + CATCH_UP_TIMEOUT
    while not all(runner.caught_up() for runner in runners):
        assert time.monotonic() < deadline, "the read models did not catch up"
        time.sleep(0.02)


@pytest.fixture(scope="session")
def first_start(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory as the routing app leaves it after its first start (directory seeded, read models caught
    up), made once per session: each app test starts from a copy instead of seeding 860 agencies again."""
    data = tmp_path_factory.mktemp("first-start") / "var"
    app = create_app(load_settings(data=data), [SERVICE])
    with TestClient(app) as client:
        caught_up(client)
    return data


@pytest.fixture
def data_dir(tmp_path: Path, first_start: Path) -> Path:
    data = tmp_path / "var"
    shutil.copytree(first_start, data)
    return data


@pytest.fixture
def serve(data_dir: Path) -> Callable[..., Any]:
    """`with serve(**settings) as client:` — the routing app, its read models caught up with the directory."""

    @contextmanager
    def run(**overrides: Any) -> Iterator[TestClient]:
        app = create_app(load_settings(data=data_dir, **overrides), [SERVICE])
        with TestClient(app, raise_server_exceptions=False) as client:
            caught_up(client)
            yield client

    return run


@pytest.fixture
def tokens(data_dir: Path) -> TokenService:
    return TokenService(load_settings(data=data_dir).signing_secret(), SystemClock())


@pytest.fixture
def bearer(tokens: TokenService) -> Callable[..., dict[str, str]]:
    def headers(role: Role, **scope: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens.issue(role, **scope)}"}

    return headers


@pytest.fixture
def admin(bearer: Callable[..., dict[str, str]]) -> dict[str, str]:
    return bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
