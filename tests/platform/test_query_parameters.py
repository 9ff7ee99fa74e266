"""Query names a route does not declare, and single-valued ones given twice, are refused with a validation problem
that names them, before anything is done; the probes take any query."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lapor.app import load_services
from lapor.principal import Role
from tests.intake.conftest import OPEN_LIMITS, REPORT


@pytest.fixture
def everything(serve: Callable[..., Any]) -> Iterator[TestClient]:
    with serve(services=load_services(), limits=OPEN_LIMITS) as client:
        yield client


def _problem(response: Any) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "/problems/validation"
    return body


def test_a_misspelt_filter_is_named_instead_of_ignored(everything: TestClient, bearer: Callable[..., Any]) -> None:
    national = bearer(Role.admin_national)
    assert everything.get("/api/reports/national?region=53", headers=national).status_code == 200

    body = _problem(everything.get("/api/reports/national?regon=53", headers=national))
    [error] = body["errors"]
    assert error["location"] == ["query", "regon"]
    assert error["message"] == "unknown query parameter"
    assert body["detail"].startswith("unknown query parameters: regon (this endpoint takes: ")
    assert "region" in body["detail"].split("takes: ")[1].rstrip(")").split(", ")  # what the endpoint does take


def test_every_unknown_name_is_listed_once(everything: TestClient, bearer: Callable[..., Any]) -> None:
    response = everything.get(
        "/api/reports/national?form=2026-01-01&regon=53&form=2026-02-01", headers=bearer(Role.admin_national)
    )
    assert [error["location"] for error in _problem(response)["errors"]] == [["query", "form"], ["query", "regon"]]


def test_a_single_valued_filter_given_twice_is_refused(everything: TestClient, bearer: Callable[..., Any]) -> None:
    response = everything.get("/api/reports/national?region=53&region=35", headers=bearer(Role.admin_national))
    [error] = _problem(response)["errors"]
    assert error["location"] == ["query", "region"]
    assert "more than once" in error["message"]


def test_a_list_filter_may_be_repeated(everything: TestClient, bearer: Callable[..., Any]) -> None:
    response = everything.get(
        "/api/verification-queue?status=submitted&status=returned", headers=bearer(Role.admin_national)
    )
    assert response.status_code == 200, response.text


def test_a_refused_command_records_nothing(everything: TestClient) -> None:
    store = everything.app.state.context.store
    head = store.head_position()
    body = _problem(everything.post("/api/complaints?anonymus=true", json=REPORT))
    assert body["errors"][0]["location"] == ["query", "anonymus"]
    assert store.head_position() == head
    assert everything.post("/api/complaints", json=REPORT).status_code == 201
    assert store.head_position() > head


def test_a_route_without_query_parameters_says_it_takes_none(client: TestClient) -> None:
    assert _problem(client.get("/problems?lang=id"))["detail"].endswith("takes: none)")


def test_a_query_of_many_long_names_gets_a_short_answer(everything: TestClient) -> None:
    """Given before authentication, the answer must not be many times the query's size."""
    names = [f"{n:03d}" + "x" * 500 for n in range(100)]
    query = "&".join(f"{name}=1" for name in names)
    response = everything.get(f"/api/reports/national?{query}")
    body = _problem(response)
    assert len(response.content) < len(query) / 4
    assert len(body["errors"]) == 20
    assert body["errors"][0]["location"] == ["query", names[0][:63] + "…"]
    assert " and 80 more (this endpoint takes: " in body["detail"]


def test_the_probes_take_any_query(client: TestClient) -> None:
    assert client.get("/healthz?from=loadbalancer").status_code == 200
    assert client.get("/metrics?name[]=lapor_requests_total").status_code == 200
