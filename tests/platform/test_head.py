"""HEAD is the GET of the same URL without its body: same status and headers, GET's authorization and validation,
and a streaming response (the live feed) ends after its headers instead of running on."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from lapor.app import create_app, load_services
from lapor.principal import Role
from lapor.settings import load_settings
from tests.reporting.conftest import live_server

NATIONAL = "/api/reports/national"


@pytest.fixture
def everything(serve: Callable[..., Any]) -> Iterator[TestClient]:
    with serve(services=load_services()) as client:
        yield client


def test_head_answers_what_get_would_without_the_body(everything: TestClient, bearer: Callable[..., Any]) -> None:
    national = bearer(Role.admin_national)
    got = everything.get(NATIONAL, headers=national)
    head = everything.head(NATIONAL, headers=national)
    assert got.status_code == head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"] == "application/json"
    assert int(head.headers["content-length"]) > 0  # what the GET sends (its figures move with the clock)


def test_head_is_refused_as_get_is(everything: TestClient, bearer: Callable[..., Any]) -> None:
    for path, headers, status in (
        (NATIONAL, {}, 401),
        (NATIONAL, bearer(Role.liaison, agency_id="pemda-53.71"), 403),
        (NATIONAL + "?from=yesterday", bearer(Role.admin_national), 422),
        ("/api/nothing-here", {}, 404),
    ):
        got = everything.get(path, headers=headers)
        head = everything.head(path, headers=headers)
        assert (got.status_code, head.status_code) == (status, status), path
        assert head.headers["content-type"] == got.headers["content-type"] == "application/problem+json"
        assert head.headers["content-length"] == got.headers["content-length"]
        assert head.content == b""


def test_a_path_without_get_has_no_head(everything: TestClient) -> None:
    response = everything.head("/api/channels/sms")
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == {"POST"}
    assert set(everything.request("PATCH", "/healthz").headers["Allow"].split(", ")) == {"GET", "HEAD"}


def test_the_access_metrics_say_head(everything: TestClient) -> None:
    assert everything.head("/healthz").status_code == 200
    metrics = everything.get("/metrics").text
    assert 'lapor_http_requests_total{method="HEAD",route="/healthz",status="200"} 1.0' in metrics


@pytest.mark.parametrize("path", ["/healthz", NATIONAL, "/api/audit/integrity", "/api/stream"])
def test_on_a_real_server_head_leaves_the_connection_fit_for_the_next_request(tmp_path: Any, path: str) -> None:
    """Under uvicorn (httptools, as `lapor up` runs): the answer has no body, a streaming one (the integrity walk,
    the live feed) ends after its headers, and the same kept-alive connection then answers a GET. A GET of the
    live feed would stay open for as long as the token lasts: the read timeout turns a HEAD that did into a
    failure rather than a hang."""
    settings = load_settings(data=tmp_path / "var")
    app = create_app(settings, load_services(["reporting"]))
    token = app.state.context.tokens.issue(Role.admin_national)
    with live_server(app) as live, httpx2.Client(base_url=live.url, timeout=10) as client:
        head = client.head(path, headers={"Authorization": f"Bearer {token}"})
        assert head.status_code == 200
        assert head.content == b""
        followed = client.get("/healthz")  # on the connection the HEAD used (the client keeps it alive)
        assert followed.status_code == 200
        assert followed.json() == {"status": "alive"}
    streaming = path in ("/api/audit/integrity", "/api/stream")
    assert ("content-length" not in head.headers) == streaming
