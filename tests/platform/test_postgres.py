"""The platform on PostgreSQL: the store and the read models share the one database."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from lapor.app import create_app
from lapor.settings import load_settings
from tests.platform import probe

pytestmark = pytest.mark.postgres


def test_an_app_on_postgresql_keeps_projections_beside_the_log_and_gets_ready(postgres_url, tmp_path):
    settings = load_settings(store=postgres_url, data=tmp_path)
    assert settings.readmodels == postgres_url
    with TestClient(create_app(settings, [probe.SERVICE])) as client:
        for _ in range(3):
            assert client.post("/api/probe/complaints", json={"title": "Banjir", "body": "Air masuk rumah."}
                               ).status_code == 201
        deadline = time.monotonic() + 20
        while client.get("/api/probe/handled").json()["events"] < 3:
            assert time.monotonic() < deadline, "the subscription did not catch up"
            time.sleep(0.05)
        assert client.get("/api/probe/handled").json() == {"events": 3, "handled_twice": 0}
        assert client.get("/readyz").status_code == 200
