"""Public statistics on a grid of cells, a month by a city: a cell of fewer than five reports is left out of every
figure, so that no two selections differ by a few reports (on SQLite and on PostgreSQL).

The reports, by hand (day 0 is 6 March 2090; day 28 is 3 April, day 40 is 15 April):
- March/Kupang (53.71), shown: six infrastructure reports submitted on day 0.
- March/Malang (35.73), withheld: one confidential health report submitted on day 0, verified and disposed to Kota
  Malang on day 1, accepted on day 2, answered with a public follow-up on day 28 (in April).
- April/Kupang, withheld: two health reports submitted on day 27.
- April/Malang, shown: five education reports submitted on day 40."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from schemas import events as ev
from services.reporting import reports as figures
from tests.reporting import scenario
from tests.reporting.conftest import Reporting, played

# `cells` is left out: how many cells were withheld is a count of cells, which may differ.
FIGURES = ("totals", "breakdown", "monthly", "follow_up_rate", "time_to_first_follow_up", "sla")
CONFIDENTIAL = "LAP-MLG-01"


def reports() -> list[scenario.Report]:
    confidential = scenario.submitted(CONFIDENTIAL, 0, "35.73.01", confidential=True,
                                      title="Pungutan liar di puskesmas")
    scenario.verified(confidential, 1, "pengaduan", "kesehatan")
    scenario.disposed(confidential, 1, scenario.MALANG, 6)
    scenario.accepted(confidential, 2, scenario.MALANG)
    scenario.follow_up(confidential, 28, scenario.MALANG)
    return [
        *(scenario.submitted(f"LAP-KPG-{i:02d}", 0, "53.71", category="infrastruktur") for i in range(6)),
        confidential,
        *(scenario.submitted(f"LAP-APR-{i:02d}", 27, "53.71", category="kesehatan") for i in range(2)),
        *(scenario.submitted(f"LAP-MLA-{i:02d}", 40, "35.73", category="pendidikan") for i in range(5)),
    ]


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory, backend_store: str | None) -> Iterator[Reporting]:
    with played(tmp_path_factory.mktemp("grid") / "var", backend_store, reports(), now=scenario.day(45)) as service:
        yield service


def public(service: Reporting, query: str = "") -> dict[str, Any]:
    response = service.client.get(f"/api/public/statistics{query}")
    assert response.status_code == 200
    return response.json()


def month(name: str, received: int, disposed: int = 0, followed_up: int = 0) -> dict[str, Any]:
    return {"month": name, "received": received, "disposed": disposed, "followed_up": followed_up}


def test_the_public_figures_are_those_of_the_cells_of_five_reports_or_more(grid: Reporting):
    statistics = public(grid)
    assert statistics["cells"] == {"shown": 2, "withheld": 2}
    assert statistics["totals"]["reports"] == 6 + 5
    assert statistics["breakdown"]["by_category"] == {"infrastruktur": 6, "pendidikan": 5}
    assert {p["code"]: p["reports"] for p in statistics["breakdown"]["by_province"]} == {"53": 6, "35": 5}
    # Month by month, the shown cells' reports alone: not the confidential report, nor its April follow-up.
    assert statistics["monthly"] == [month("2090-03", 6), month("2090-04", 5)]
    assert statistics["follow_up_rate"] is None
    # Staff see every report, day by day.
    national = grid.get("/api/reports/national")
    assert national["totals"]["reports"] == 14
    assert [(day["day"], day["received"], day["followed_up"]) for day in national["daily"] if day["received"] or
            day["followed_up"]] == [("2090-03-06", 7, 0), ("2090-04-02", 2, 0), ("2090-04-03", 0, 1),
                                    ("2090-04-15", 5, 0)]


def test_a_report_of_a_withheld_cell_is_not_counted_in_a_later_month_either(grid: Reporting):
    """The confidential report was answered on 3 April, before any April report of Malang arrived: a per-day (or
    per-month-of-happening) series of April in Malang would carry that answer, and tell its date."""
    april = public(grid, "?region=35.73&from=2090-04-01&to=2090-04-30")
    assert april["monthly"] == [month("2090-04", 5)]
    assert april["time_to_first_follow_up"] == {"reports": 0, "median_hours": None, "p90_hours": None}
    march = public(grid, "?region=35.73&from=2090-03-01&to=2090-03-31")
    assert march["withheld"] is True
    assert march["totals"] is None
    assert march["cells"] == {"shown": 0, "withheld": 1}
    assert CONFIDENTIAL not in str(march)


@pytest.mark.parametrize(
    ("wider", "narrower"),
    [
        # the two April reports of Kupang: March and April against March alone
        ("?from=2090-03-01&to=2090-04-30&region=53.71", "?from=2090-03-01&to=2090-03-31&region=53.71"),
        # the confidential report: all of Indonesia in March against Kupang alone
        ("?from=2090-03-01&to=2090-03-31", "?from=2090-03-01&to=2090-03-31&region=53"),
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


def test_many_withheld_cells_are_chosen_by_a_subquery_with_the_same_figures(
    grid: Reporting, monkeypatch: pytest.MonkeyPatch
):
    """Past LISTED_CELLS_MAX cells the query names none (the database limits its parameters)."""
    listed = public(grid)
    monkeypatch.setattr(figures, "LISTED_CELLS_MAX", 0)
    chosen = public(grid)
    assert {key: chosen[key] for key in FIGURES} == {key: listed[key] for key in FIGURES}
    assert chosen["totals"]["reports"] == 11


def test_the_wait_for_a_first_answer_is_shown_only_over_enough_reports(reporting: Reporting):
    """From fewer than five answered reports the median is one report's own wait, and from fewer than ten the
    90th percentile (the longest). A cell of nine reports in March in Kupang, four answered 1-4 days after their
    disposition, then a fifth on day 20 (19 days after)."""
    cell = []
    for i in range(9):
        report = scenario.submitted(f"LAP-WAIT-{i:02d}", 0, "53.71", category="infrastruktur")
        scenario.verified(report, 1, "pengaduan", "infrastruktur")
        scenario.disposed(report, 1, scenario.KUPANG, 6)
        scenario.accepted(report, 2, scenario.KUPANG)
        if i < 4:
            scenario.follow_up(report, 2 + i, scenario.KUPANG)  # 1, 2, 3 and 4 days after the disposition
        cell.append(report)
    scenario.play(reporting.ctx.store, reporting.clock, cell)
    reporting.caught_up()
    assert public(reporting)["time_to_first_follow_up"] == {"reports": 4, "median_hours": None, "p90_hours": None}
    staff = reporting.get("/api/reports/national")["time_to_first_follow_up"]
    assert staff == {"reports": 4, "median_hours": 60.0, "p90_hours": 96.0}
    fifth = cell[4]
    reporting.append(fifth.tracking_id, ev.FollowUpPosted(follow_up_id="fu-0", text="Sudah ditangani.",
                                                                   public=True), scenario.staff(scenario.KUPANG))
    assert public(reporting)["time_to_first_follow_up"] == {"reports": 5, "median_hours": 72.0, "p90_hours": None}
    staff = reporting.get("/api/reports/national")["time_to_first_follow_up"]
    assert staff == {"reports": 5, "median_hours": 72.0, "p90_hours": 19 * 24.0}
