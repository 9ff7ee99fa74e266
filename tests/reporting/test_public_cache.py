"""The public statistics are kept per selection for `LAPOR_PUBLIC_STATISTICS_CACHE` seconds, computed one at a time,
and limited per client (`LAPOR_LIMITS__STATISTICS_RATE`): the route is open to anyone and each answer scans the
period's reports (session 29). The other public-statistics tests run with the cache off (tests/conftest.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.reporting import reports as figures
from services.reporting.api import PublicFigures
from tests.reporting import scenario
from tests.reporting.conftest import Reporting, played, reporting_app


def kupang(prefix: str, count: int, day: int = 0) -> list[scenario.Report]:
    return [scenario.submitted(f"LAP-{prefix}-{i:02d}", day, "53.71", category="infrastruktur") for i in range(count)]


@pytest.fixture
def cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend_store: str | None) -> Iterator[Reporting]:
    monkeypatch.setenv("LAPOR_PUBLIC_STATISTICS_CACHE", "30")
    with played(tmp_path / "var", backend_store, kupang("A", 5), now=scenario.day(3)) as service:
        yield service


def public(service: Reporting, query: str = "") -> dict[str, Any]:
    response = service.client.get(f"/api/public/statistics{query}")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "public, max-age=30"
    return response.json()


def test_an_answer_is_kept_for_its_selection_and_a_new_selection_is_computed(cached: Reporting):
    first = public(cached)
    assert first["totals"]["reports"] == 5
    for report in kupang("B", 5, day=1):
        for number, (_, model, metadata) in enumerate(report.steps):
            cached.ctx.store.append(f"complaint-{report.tracking_id}", [model.to_new_event(metadata=metadata)],
                                    expected_version=number - 1)
    cached.caught_up()
    # The same selection, and one the grid widens to it (a day of March 2090 is the whole month): kept.
    assert public(cached) == first
    assert public(cached, "?from=2090-03-06") == public(cached, "?from=2090-03-01")
    # Another selection is computed now, with the reports appended since.
    assert public(cached, "?region=53.71")["totals"]["reports"] == 10


def test_a_client_asking_too_often_is_refused_with_a_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LAPOR_LIMITS__STATISTICS_RATE", "5/minute")
    with reporting_app(tmp_path / "var") as service:
        statuses = [service.client.get("/api/public/statistics").status_code for _ in range(6)]
        refused = service.client.get("/api/public/statistics")
    assert statuses == [200] * 5 + [429]
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) >= 1


class Timer:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_kept_answer_is_computed_again_once_its_seconds_have_passed():
    timer = Timer()
    kept = PublicFigures(30, timer=timer)
    computed: list[int] = []

    def compute() -> Any:
        computed.append(1)
        return len(computed)

    selection = figures.Filters(region="53.71")
    assert [kept.get(selection, compute), kept.get(selection, compute)] == [1, 1]
    timer.now = 29.5
    assert kept.get(selection, compute) == 1
    timer.now = 30.5
    assert kept.get(selection, compute) == 2
    assert kept.get(figures.Filters(region="35.73"), compute) == 3


def test_without_seconds_every_request_computes():
    kept = PublicFigures(0)
    computed: list[int] = []

    def compute() -> Any:
        computed.append(1)
        return len(computed)

    assert [kept.get(figures.Filters(), compute) for _ in range(3)] == [1, 2, 3]


def test_a_burst_for_one_selection_waits_for_one_computation():
    kept = PublicFigures(30)
    started, release = threading.Event(), threading.Event()
    computed: list[int] = []

    def compute() -> Any:
        computed.append(1)
        started.set()
        release.wait(10)
        return "figures"

    answers: list[Any] = []
    first = threading.Thread(target=lambda: answers.append(kept.get(figures.Filters(), compute)))
    first.start()
    assert started.wait(10)
    # The first request is computing: the others queue behind it, whenever they arrive, and take its answer.
    others = [threading.Thread(target=lambda: answers.append(kept.get(figures.Filters(), compute))) for _ in range(7)]
    for thread in others:
        thread.start()
    release.set()
    for thread in [first, *others]:
        thread.join(10)
    assert answers == ["figures"] * 8
    assert computed == [1]
