"""Fixtures for the platform tests: settings on a temporary data directory, an app serving the probe service
(real SQLite store and read models, lifespan run), and tokens signed with the app's secret."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lapor.app import create_app
from lapor.auth import TokenService
from lapor.clock import SystemClock
from lapor.context import ServiceDefinition
from lapor.principal import Role
from lapor.settings import Settings, load_settings
from tests.platform import probe


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return load_settings(data=data_dir)



@pytest.fixture
def serve(data_dir: Path) -> Callable[..., Any]:
    """`with serve(services=[...], **settings) as client:` — the app with its lifespan running."""

    @contextmanager
    def run(services: list[ServiceDefinition] | None = None, **overrides: Any) -> Iterator[TestClient]:
        app: FastAPI = create_app(
            load_settings(data=data_dir, **overrides), services if services is not None else [probe.SERVICE]
        )
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client

    return run


@pytest.fixture
def client(serve: Callable[..., Any]) -> Iterator[TestClient]:
    with serve() as test_client:
        yield test_client


@pytest.fixture
def tokens(settings: Settings) -> TokenService:
    return TokenService(settings.signing_secret(), SystemClock())


@pytest.fixture
def bearer(tokens: TokenService) -> Callable[..., dict[str, str]]:
    def headers(role: Role, **scope: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens.issue(role, **scope)}"}

    return headers
