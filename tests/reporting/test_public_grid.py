"""Public statistics on a grid of cells, a month by a city: a cell of fewer than five reports is left out of every
figure, so that no two selections differ by a few reports (on SQLite and on PostgreSQL).

The reports, by hand: six in Kota Kupang (53.71) submitted on day 0 (6 March 2090), infrastructure; one
confidential report in Kota Malang (35.73) on day 0, health; two in Kupang on day 27 (2 April), health. So the
cells are March/Kupang (6: shown), March/Malang (1: withheld) and April/Kupang (2: withheld)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.reporting import scenario
from tests.reporting.conftest import Reporting, played

# `cells` is left out: how many cells were withheld is a count of cells, which may differ.
FIGURES = ("totals", "breakdown", "daily", "follow_up_rate", "time_to_first_follow_up", "sla")


def reports() -> list[scenario.Report]:
    return [
        *(scenario.submitted(f"LAP-KPG-{i:02d}", 0, "53.71", category="infrastruktur") for i in range(6)),
        scenario.submitted("LAP-MLG-01", 0, "35.73.01", category="kesehatan", confidential=True,
                           title="Pungutan liar di puskesmas"),
        *(scenario.submitted(f"LAP-APR-{i:02d}", 27, "53.71", category="kesehatan") for i in range(2)),
    ]


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory, backend_store: str | None) -> Iterator[Reporting]:
    with played(tmp_path_factory.mktemp("grid") / "var", backend_store, reports(), now=scenario.day(30)) as service:
        yield service


def public(service: Reporting, query: str = "") -> dict[str, Any]:
    response = service.client.get(f"/api/public/statistics{query}")
    assert response.status_code == 200
    return response.json()


def test_the_public_figures_are_those_of_the_cells_of_five_reports_or_more(grid: Reporting):
    statistics = public(grid)
    assert statistics["cells"] == {"shown": 1, "withheld": 2}
    assert statistics["totals"]["reports"] == 6
    assert statistics["breakdown"]["by_category"] == {"infrastruktur": 6}
    assert [(p["code"], p["reports"]) for p in statistics["breakdown"]["by_province"]] == [("53", 6)]
    # Day by day, only the shown cell's happenings: six received on 6 March, not the confidential report in Malang
    # that day nor the two in April.
    assert [(day["day"], day["received"]) for day in statistics["daily"]] == [("2090-03-06", 6)]
    # Staff see every report.
    assert grid.get("/api/reports/national")["totals"]["reports"] == 9
    assert [(day["day"], day["received"]) for day in grid.get("/api/reports/national")["daily"]] == [
        ("2090-03-06", 7), ("2090-04-02", 2)
    ]


def test_a_selection_of_withheld_cells_only_shows_no_figure(grid: Reporting):
    statistics = public(grid, "?region=35.73")
    assert statistics["withheld"] is True
    assert statistics["totals"] is None
    assert statistics["cells"] == {"shown": 0, "withheld": 1}
    assert "LAP-MLG-01" not in str(statistics)


@pytest.mark.parametrize(
    ("wider", "narrower"),
    [
        # the two April reports: March and April against March alone
        ("?from=2090-03-01&to=2090-04-30&region=53.71", "?from=2090-03-01&to=2090-03-31&region=53.71"),
        # the confidential report: all of Indonesia against Kupang alone
        ("", "?region=53"),
        # a report's day: from day 0 against from day 1, in the same month
        ("?from=2090-03-06&to=2090-03-31", "?from=2090-03-07&to=2090-03-31"),
    ],
)
def test_selections_that_differ_by_a_withheld_cell_or_a_part_of_a_cell_show_the_same_figures(
    grid: Reporting, wider: str, narrower: str
):
    """Before the grid, each pair's difference was the figures of the reports in one selection and not the other:
    the April reports' status and category, the confidential report's."""
    assert grid.get(f"/api/reports/national{wider}")["totals"]["reports"] > grid.get(
        f"/api/reports/national{narrower}")["totals"]["reports"]
    wide, narrow = public(grid, wider), public(grid, narrower)
    assert {key: wide[key] for key in FIGURES} == {key: narrow[key] for key in FIGURES}
