"""Limits on public input: body size (declared and streamed), field lengths from settings, rate limits."""

from __future__ import annotations

import asyncio

import pytest

from lapor.limits import InputGuardMiddleware
from lapor.settings import FieldLimits, RequestLimits, SettingsError, load_settings

SUBMISSION = {"title": "Sampah menumpuk", "body": "Di pasar Oeba sampah tidak diangkut seminggu."}


def test_a_huge_declared_body_is_refused_before_a_byte_is_read():
    async def app(scope, receive, send) -> None:
        raise AssertionError("the app must not be reached")

    async def receive() -> dict:
        raise AssertionError("the body must not be read")

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    guard = InputGuardMiddleware(app, RequestLimits(max_body_bytes=4096), FieldLimits())
    scope = {
        "type": "http", "method": "POST", "path": "/api/complaints", "headers": [
            (b"content-length", b"5000000000"), (b"content-type", b"application/json")],
        "query_string": b"",
    }
    asyncio.run(guard(scope, receive, send))
    assert sent[0]["status"] == 413


def test_a_streamed_body_without_length_is_cut_off_at_the_limit(serve):
    chunks = (b'{"title": "t", "body": "' + b"x" * 1024 for _ in range(10))
    with serve(limits={"max_body_bytes": 4096}) as client:
        response = client.post(
            "/api/probe/complaints", content=chunks, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413
        assert response.json()["type"] == "/problems/too-large"
        assert client.post("/api/probe/complaints", json=SUBMISSION).status_code == 201


def test_field_lengths_follow_the_settings(serve):
    with serve(field_limits={"title": 20}) as client:
        ok = client.post("/api/probe/complaints", json={**SUBMISSION, "title": "x" * 20})
        too_long = client.post("/api/probe/complaints", json={**SUBMISSION, "title": "x" * 21})
    assert ok.status_code == 201
    assert too_long.status_code == 422
    [error] = too_long.json()["errors"]
    assert error["location"] == ["body", "title"]
    assert error["message"] == "String should have at most 20 characters"


def test_the_number_of_attachments_follows_the_settings(serve):
    with serve(field_limits={"attachments": 1}) as client:
        response = client.post("/api/probe/complaints", json={**SUBMISSION, "attachments": ["a", "b"]})
    assert response.status_code == 422
    assert response.json()["errors"][0]["message"] == "List should have at most 1 items"


def test_field_limits_cannot_loosen_the_event_contract():
    with pytest.raises(SettingsError, match="LAPOR_FIELD_LIMITS__TITLE"):
        load_settings(field_limits={"title": 500})


def test_each_client_has_its_own_submission_budget(serve):
    limits = {"submission_rate": "1/minute", "trust_forwarded_for": True}
    with serve(limits=limits) as client:
        kupang = {"X-Forwarded-For": "203.0.113.7"}
        malang = {"X-Forwarded-For": "198.51.100.23, 10.0.0.1"}
        assert client.post("/api/probe/complaints", json=SUBMISSION, headers=kupang).status_code == 201
        assert client.post("/api/probe/complaints", json=SUBMISSION, headers=kupang).status_code == 429
        assert client.post("/api/probe/complaints", json=SUBMISSION, headers=malang).status_code == 201


def test_forwarded_for_is_ignored_unless_trusted(serve):
    with serve(limits={"submission_rate": "1/minute"}) as client:
        first = client.post("/api/probe/complaints", json=SUBMISSION, headers={"X-Forwarded-For": "203.0.113.7"})
        spoofed = client.post("/api/probe/complaints", json=SUBMISSION, headers={"X-Forwarded-For": "192.0.2.1"})
    assert first.status_code == 201
    assert spoofed.status_code == 429


def test_routes_without_a_rate_limit_are_not_limited(serve):
    with serve(limits={"submission_rate": "1/minute"}) as client:
        assert all(client.get("/healthz").status_code == 200 for _ in range(5))
