"""The platform on PostgreSQL: the store and the read models share the one database."""

from __future__ import annotations

import secrets
import time

import pytest
from fastapi.testclient import TestClient

from lapor.app import create_app
from lapor.settings import load_settings
from tests.platform import probe
from tests.platform._servers import lapor, wait_until

SUBMISSION = {"title": "Banjir", "body": "Air masuk rumah."}

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


def test_two_replicas_of_a_service_on_postgresql_run_its_subscription_once_and_one_takes_over_when_the_other_dies(
    postgres_url, tmp_path
):
    environment = {"LAPOR_STORE": postgres_url, "LAPOR_SECRET": secrets.token_urlsafe(48)}
    with lapor(tmp_path, "serve", "probe", "--data", str(tmp_path / "a"), name="a", env=environment) as a, \
            lapor(tmp_path, "serve", "probe", "--data", str(tmp_path / "b"), name="b", env=environment) as b:
        for server in (a, b) * 5:
            assert server.post("/api/probe/complaints", json=SUBMISSION).status_code == 201
        wait_until(lambda: a.get("/api/probe/handled").json()["events"] == 10, describe="10 reports handled")
        assert b.get("/api/probe/handled").json() == {"events": 10, "handled_twice": 0}
        assert (a.metric("lapor_subscription_leased", "probe.events"),
                b.metric("lapor_subscription_leased", "probe.events")) == (1, 0)
        assert b.get("/readyz").json() == {"status": "ready", "standby": ["probe.events"]}

        a.process.kill()  # no clean stop: the server ends its session, and the advisory lock with it
        a.process.wait()
        wait_until(lambda: b.metric("lapor_subscription_leased", "probe.events") == 1, describe="b took over")
        for _ in range(5):
            assert b.post("/api/probe/complaints", json=SUBMISSION).status_code == 201
        wait_until(lambda: b.get("/api/probe/handled").json()["events"] == 15, describe="5 more handled by b")
        assert b.get("/api/probe/handled").json() == {"events": 15, "handled_twice": 0}
        assert b.get("/readyz").json() == {"status": "ready"}
