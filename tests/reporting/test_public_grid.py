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
from datetime import UTC, datetime, timedelta
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


def answered_cell(prefix: str, submitted: float, size: int, answers: list[float]) -> list[scenario.Report]:
    """`size` reports of one cell in Kupang, disposed to it and accepted on the day they came; report i answered
    `answers[i]` days after its disposition, the rest not answered. The first of April's is confidential."""
    cell = []
    for i in range(size):
        report = scenario.submitted(f"{prefix}-{i:02d}", submitted, "53.71", category="infrastruktur",
                                    confidential=i == 0)
        scenario.verified(report, submitted, "pengaduan", "infrastruktur")
        scenario.disposed(report, submitted, scenario.KUPANG, submitted + 5)
        scenario.accepted(report, submitted, scenario.KUPANG)
        if i < len(answers):
            scenario.follow_up(report, submitted + answers[i], scenario.KUPANG)
        cell.append(report)
    return cell


def test_the_wait_for_a_first_answer_counts_only_cells_of_five_answers(reporting: Reporting):
    """A cell of fewer than five answered reports is left out of the time to a first answer: added to a selection
    it moved the median by one report's own wait (found in review: a confidential report's 80 hours, from the
    medians of March and of March-April). March in Kupang: nine reports, four answered 1-4 days after their
    disposition, a fifth later; April in Kupang: five reports, one (confidential) answered after 80 hours."""
    march = answered_cell("LAP-MARW", 1, 9, [1, 2, 3, 4])
    april = answered_cell("LAP-APRW", 27, 5, [80 / 24])
    scenario.play(reporting.ctx.store, reporting.clock, march + april, scenario.day(40))
    reporting.caught_up()
    both = "?region=53.71&from=2090-03-01&to=2090-04-30"
    assert public(reporting, both)["time_to_first_follow_up"] == {"reports": 0, "median_hours": None,
                                                                   "p90_hours": None}
    assert public(reporting, both)["follow_up_rate"] == round(5 / 14, 4)  # answered of disposed, every cell
    assert reporting.get(f"/api/reports/national{both}")["time_to_first_follow_up"] == {
        "reports": 5, "median_hours": 72.0, "p90_hours": 96.0}
    # A fifth answer in March (39 days after its disposition) makes the cell count.
    reporting.append(march[4].tracking_id, ev.FollowUpPosted(follow_up_id="fu-0", text="Sudah ditangani.",
                                                             public=True), scenario.staff(scenario.KUPANG))
    march_only = public(reporting, "?region=53.71&from=2090-03-01&to=2090-03-31")["time_to_first_follow_up"]
    assert march_only == {"reports": 5, "median_hours": 72.0, "p90_hours": None}  # p90 needs ten
    assert public(reporting, both)["time_to_first_follow_up"] == march_only  # April's one answer is not in it
    assert reporting.get(f"/api/reports/national{both}")["time_to_first_follow_up"] == {
        "reports": 6, "median_hours": 76.0, "p90_hours": 39 * 24.0}


def test_a_happening_in_the_last_moment_of_a_month_counts_in_that_month(reporting: Reporting):
    """23:59:59.9999 WIB on 31 March is March, as its Jakarta day says; SQLite's `unixepoch` rounds to the
    millisecond, and counted it in April until the month was taken from the whole second."""
    last_moment = (datetime(2090, 3, 31, 16, 59, 59, 999_900, tzinfo=UTC) - scenario.DAY0) / timedelta(days=1)
    cell = []
    for i in range(5):
        report = scenario.submitted(f"LAP-EDGE-{i:02d}", last_moment, "53.71", category="infrastruktur")
        scenario.verified(report, last_moment, "pengaduan", "infrastruktur")
        cell.append(scenario.disposed(report, last_moment, scenario.KUPANG, 30))
    scenario.play(reporting.ctx.store, reporting.clock, cell, scenario.day(40))
    reporting.caught_up()
    assert public(reporting)["monthly"] == [month("2090-03", 5, disposed=5)]


def test_a_category_the_verifier_typed_a_name_and_phone_into_is_shown_masked(reporting: Reporting):
    """The verifier's category is logged as typed (intake masks only the reporter's), and the public list of
    categories printed it so, while every view of a report masks it for the public: here five confidential reports
    of one cell, classified alike with a name and a phone number, showed both to anyone. Now the name is masked as
    the tracking view masks it; the staff views, for the people handling the reports, are unchanged."""
    category = "Pungli oleh Budi Santoso 081234567890"
    cell = []
    for i in range(5):
        report = scenario.submitted(f"LAP-CAT-{i:02d}", 0, "35.73", confidential=True, title="Rahasia")
        cell.append(scenario.verified(report, 1, "pengaduan", category))
    scenario.play(reporting.ctx.store, reporting.clock, cell, scenario.day(20))
    reporting.caught_up()
    response = reporting.client.get("/api/public/statistics")
    assert response.status_code == 200
    assert response.json()["breakdown"]["by_category"] == {"Pungli oleh B*** S*** 0812****7890": 5}
    assert "Budi" not in response.text
    assert "081234567890" not in response.text
    assert reporting.get("/api/reports/national")["breakdown"]["by_category"] == {category: 5}
