"""The national, agency and public figures against the hand-built month of tests/reporting/scenario.py, whose
answers were worked out by hand from the table there (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from lapor.clock import ManualClock
from lapor.context import ServiceContext
from lapor.db import Tx
from lapor.principal import Role
from lapor.settings import load_settings
from schemas import events as ev
from services.reporting import reports
from tests.conftest import fresh_schema
from tests.reporting import scenario
from tests.reporting.conftest import Reporting, played, reporting_app
from tests.test_subscriptions import make_unreadable

DAY = {n: scenario.day(n).date().isoformat() for n in range(0, 25)}
WITA, WIT = timezone(timedelta(hours=8)), timezone(timedelta(hours=9))  # Makassar, Jayapura


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory, backend_store: str | None):
    """Played once per backend; the tests only read."""
    with played(tmp_path_factory.mktemp("month") / "var", backend_store) as service:
        yield service


def test_reports_are_counted_by_status_kind_channel_category_province_and_agency(month: Reporting):
    report = month.get("/api/reports/national")
    assert report["totals"] == {"reports": 30, "open": 15, "closed": 13, "archived": 2}
    breakdown = report["breakdown"]
    assert breakdown["by_status"] == {"archived": 2, "closed": 13, "in_progress": 10, "submitted": 5}
    assert breakdown["by_kind"] == {"aspirasi": 7, "pengaduan": 23}
    assert breakdown["by_channel"] == {"mobile": 5, "sms": 7, "web": 18}
    assert breakdown["by_category"] == {
        "(none)": 4, "infrastruktur": 13, "kesehatan": 5, "lingkungan": 3, "pendidikan": 5
    }
    assert breakdown["by_province"] == [
        {"code": "35", "name": "Jawa Timur", "reports": 9},
        {"code": "53", "name": "Nusa Tenggara Timur", "reports": 21},
    ]
    assert report["by_agency"] == [
        {"agency_id": "pemda-53.71", "name": "Pemerintah Kota Kupang", "reports": 17},
        {"agency_id": "pemda-35", "name": "Pemerintah Provinsi Jawa Timur", "reports": 5},
        {"agency_id": "pemda-35.73", "name": "Pemerintah Kota Malang", "reports": 1},
    ]


def test_sla_compliance_per_stage_counts_on_time_late_and_overdue(month: Reporting):
    verification, follow_up = month.get("/api/reports/national")["sla"]
    assert verification == {
        "stage": "verification", "deadline_working_days": 3, "on_time": 21, "late": 4, "overdue": 3,
        "compliance": 0.75,
    }
    assert follow_up == {
        "stage": "follow_up", "deadline_working_days": 5, "on_time": 18, "late": 1, "overdue": 4,
        "compliance": round(18 / 23, 4),
    }


def test_time_to_first_follow_up_has_the_median_and_p90_of_the_hand_count(month: Reporting):
    # 7 reports answered after 24 h, 6 after 48 h, 5 after 96 h, 1 after 168 h.
    assert month.get("/api/reports/national")["time_to_first_follow_up"] == {
        "reports": 19, "median_hours": 48.0, "p90_hours": 96.0
    }


def test_backlog_sorts_open_reports_by_age(month: Reporting):
    backlog = {bucket["bucket"]: bucket["reports"] for bucket in month.get("/api/reports/national")["backlog"]}
    assert backlog == {"0-3": 2, "4-7": 0, "8-14": 3, "15-30": 10, "31-60": 0, "61+": 0}


def test_each_day_counts_what_happened_that_day(month: Reporting):
    daily = {row["day"]: row for row in month.get("/api/reports/national")["daily"]}
    assert daily[DAY[0]] == {"day": DAY[0], "received": 11, "verified": 0, "disposed": 0, "assigned": 0,
                             "followed_up": 0, "closed": 0}
    assert daily[DAY[1]] == {"day": DAY[1], "received": 2, "verified": 7, "disposed": 7, "assigned": 0,
                             "followed_up": 0, "closed": 0}
    assert (daily[DAY[5]]["assigned"], daily[DAY[13]]["assigned"]) == (5, 7)  # G3 to Jatim's, G8 to Kupang's dinkes
    assert daily[DAY[3]]["disposed"] == 5
    assert daily[DAY[4]]["disposed"] == 5
    assert daily[DAY[3]]["followed_up"] == 6  # G1; G7's internal note that day is no answer
    assert daily[DAY[8]]["followed_up"] == 1
    assert daily[DAY[19]]["closed"] == 7
    assert sum(row["received"] for row in daily.values()) == 30


def test_escalations_and_bounces_are_counted(month: Reporting):
    assert month.get("/api/reports/national")["escalations"] == {
        "total": 1, "by_kind": {"follow_up_overdue": 1}, "bounces": 5, "red_marks": 1
    }


def test_the_scoreboard_puts_the_agency_with_red_marks_and_overdue_reports_first(month: Reporting):
    board = month.get("/api/reports/national/agencies")["agencies"]
    assert [line["agency_id"] for line in board] == ["pemda-53.71", "pemda-35.73", "pemda-35"]
    kupang, malang, jatim = board
    assert kupang == {
        "agency_id": "pemda-53.71", "name": "Pemerintah Kota Kupang", "reports": 17, "open": 4, "followed_up": 13,
        "follow_up_rate": round(13 / 17, 4), "overdue": 4, "red_marks": 1, "bounces": 0, "dispositions": 17,
    }
    # Malang holds only the reopened G7 (overdue again) and returned all five G3 reports.
    assert (malang["reports"], malang["overdue"], malang["bounces"], malang["dispositions"]) == (1, 1, 5, 6)
    assert (jatim["reports"], jatim["followed_up"], jatim["follow_up_rate"], jatim["overdue"]) == (5, 5, 1.0, 0)


def test_a_period_filter_takes_the_reports_submitted_in_it(month: Reporting):
    report = month.get(f"/api/reports/national?from={DAY[0]}&to={DAY[1]}")
    assert report["filters"] == {"from": DAY[0], "to": DAY[1], "region": None}
    assert report["breakdown"]["by_status"] == {"archived": 2, "closed": 6, "in_progress": 5}
    assert [row["day"] for row in report["daily"]] == [DAY[0], DAY[1]]


def test_a_report_counts_on_its_jakarta_day_wherever_it_was_filed(reporting: Reporting):
    """Days are Jakarta's (WIB, UTC+7) for every region: one national calendar (session 30, written down). Filed on
    the night of 31 March to 1 April 2090: 23:30 WITA in Makassar and 00:30 WITA (23:30 WIB) are 31 March, 00:30 WIT
    in Jayapura (22:30 WIB) too; 07:30 WIT (05:30 WIB) is 1 April."""
    filed = {
        "LAP-WITA-01": ("73.71", datetime(2090, 3, 31, 23, 30, tzinfo=WITA)),
        "LAP-WITA-02": ("73.71", datetime(2090, 4, 1, 0, 30, tzinfo=WITA)),
        "LAP-WIT-01": ("91.71", datetime(2090, 4, 1, 0, 30, tzinfo=WIT)),
        "LAP-WIT-02": ("91.71", datetime(2090, 4, 1, 7, 30, tzinfo=WIT)),
    }
    played = [scenario.submitted(tracking_id, (moment - scenario.DAY0) / timedelta(days=1), region)
              for tracking_id, (region, moment) in filed.items()]
    scenario.play(reporting.ctx.store, reporting.clock, played, datetime(2090, 4, 2, 2, tzinfo=UTC))
    reporting.caught_up()
    assert reporting.get("/api/reports/national?to=2090-03-31")["totals"]["reports"] == 3
    assert reporting.get("/api/reports/national?from=2090-04-01")["totals"]["reports"] == 1
    assert reporting.get("/api/reports/national?from=2090-04-01&region=91")["totals"]["reports"] == 1
    daily = reporting.get("/api/reports/national")["daily"]
    assert [(row["day"], row["received"]) for row in daily] == [("2090-03-31", 3), ("2090-04-01", 1)]


def test_a_region_filter_takes_the_region_and_everything_inside_it(month: Reporting):
    assert month.get("/api/reports/national?region=35")["totals"]["reports"] == 9
    assert month.get("/api/reports/national?region=35.73")["totals"]["reports"] == 9
    assert month.get("/api/reports/national?region=53.71")["totals"]["reports"] == 21
    # A code is matched whole, part by part: "35.7" is no region (and would not take 35.73 if it were).
    assert month.client.get("/api/reports/national?region=35.7", headers=month.bearer(Role.operator)).status_code == 422
    # Digits are ASCII, as the document's pattern says to a client (pydantic's `\d` took "３５" and gave zeros).
    for other_digits in ("３５", "٣٥", "३५"):
        response = month.client.get("/api/reports/national", params={"region": other_digits},
                                    headers=month.bearer(Role.operator))
        assert response.status_code == 422, other_digits
        assert response.json()["errors"][0]["location"] == ["query", "region"]


def test_the_agency_view_covers_the_agency_and_its_units(month: Reporting):
    view = month.get("/api/reports/agencies/pemda-53.71", Role.admin_agency, agency_id="pemda-53.71")
    assert view["name"] == "Pemerintah Kota Kupang"
    assert view["totals"] == {"reports": 17, "open": 4, "closed": 13, "archived": 0}
    assert view["score"]["red_marks"] == 1
    assert view["score"]["overdue"] == 4
    assert view["units"] == [{
        "unit_id": "pemda-53.71/dinkes", "name": "Dinas Kesehatan Kota Kupang", "reports": 7, "open": 0,
        "followed_up": 7, "overdue": 0, "assigned": 7, "red_marks": 0,
    }]
    [follow_up] = view["sla"]
    assert (follow_up["on_time"], follow_up["late"], follow_up["overdue"]) == (13, 0, 4)


def test_a_province_view_does_not_take_the_cities_of_the_province(month: Reporting):
    view = month.get("/api/reports/agencies/pemda-35")
    assert view["totals"]["reports"] == 5  # G3, disposed to the province; Malang's own reports are not its
    assert [unit["unit_id"] for unit in view["units"]] == ["pemda-35/dinkes"]


def test_a_units_view_counts_what_happened_while_the_unit_held_the_report(month: Reporting):
    """Kupang assigned the seven G8 reports to its health office on day 13, which answered them on day 14; they
    were closed on day 19. The office's per-day series is that (until session 22 it was empty: happenings were
    counted for the agency alone), and Kupang's own series still counts them."""
    unit = month.get("/api/reports/agencies/pemda-53.71/dinkes")
    days = {row["day"]: {k: v for k, v in row.items() if k != "day" and v} for row in unit["daily"]}
    assert days == {DAY[13]: {"assigned": 7}, DAY[14]: {"followed_up": 7}, DAY[19]: {"closed": 7}}
    kupang = {row["day"]: row for row in month.get("/api/reports/agencies/pemda-53.71")["daily"]}
    assert (kupang[DAY[13]]["disposed"], kupang[DAY[13]]["assigned"], kupang[DAY[14]]["followed_up"]) == (7, 7, 7)
    jatim_office = month.get("/api/reports/agencies/pemda-35/dinkes")["daily"]
    assert [(row["day"], row["assigned"], row["followed_up"]) for row in jatim_office] == [
        (DAY[5], 5, 0), (DAY[7], 0, 5)
    ]


def test_an_agencys_view_times_its_own_first_answer(month: Reporting):
    """The G3 reports reached Jawa Timur on day 4, after Malang (first disposed to on day 3) returned them, and the
    province answered on day 7: 72 hours in its view, where the reporter's wait from the first disposition, as the
    national view counts it, is 96 hours."""
    province = month.get("/api/reports/agencies/pemda-35")["time_to_first_follow_up"]
    assert province == {"reports": 5, "median_hours": 72.0, "p90_hours": 72.0}
    national = month.get(f"/api/reports/national?from={DAY[2]}&to={DAY[2]}&region=35")["time_to_first_follow_up"]
    assert national == {"reports": 5, "median_hours": 96.0, "p90_hours": 96.0}


def test_an_unknown_agency_is_not_found(month: Reporting):
    response = month.client.get("/api/reports/agencies/pemda-99.99", headers=month.bearer(Role.operator))
    assert response.status_code == 404


def test_an_agency_id_longer_than_any_is_refused_saying_so(month: Reporting):
    """An agency id is at most 128 characters: a longer one was "not found" (404), quoted whole, on the agency view,
    and "no agency … in the directory" on the live stream's filter (session 30)."""
    too_long = "pemda-53.71/" + "a" * 117
    for path, params in [(f"/api/reports/agencies/{too_long}", {}), ("/api/stream", {"agency": too_long})]:
        response = month.client.get(path, params=params, headers=month.bearer(Role.operator))
        assert response.status_code == 422, (path, response.text)
        assert response.json()["errors"][0]["message"] == "String should have at most 128 characters"


def test_public_statistics_count_confidential_reports_but_show_nothing_of_them(month: Reporting):
    response = month.client.get("/api/public/statistics")
    assert response.status_code == 200
    statistics = response.json()
    assert statistics["totals"]["reports"] == 30
    assert statistics["breakdown"]["by_status"]["in_progress"] == 10  # G7, confidential, among them
    assert statistics["follow_up_rate"] == round(19 / 23, 4)
    assert statistics["cells"] == {"shown": 2, "withheld": 0}  # March in Kupang (21 reports), in Malang (9)
    assert scenario.CONFIDENTIAL_ID not in response.text
    assert scenario.CONFIDENTIAL_TITLE not in response.text
    assert "pii_" not in response.text


def test_public_statistics_widen_a_narrow_selection_to_its_month_and_city(month: Reporting):
    """Narrowed to Kota Malang on day 0, the selection was the confidential G7 report alone (its status, kind,
    category, timeline and deadlines; until session 21 the totals still said whether it was open, closed or
    archived). The public figures are built from whole cells of a month by a city: that selection is all of
    March in Malang, G3, G4 and G7. Staff views are not widened."""
    query = f"?from={DAY[0]}&to={DAY[0]}&region=35.73.01"
    assert month.get(f"/api/reports/national?from={DAY[0]}&to={DAY[0]}&region=35.73")["totals"]["reports"] == 1

    statistics = month.client.get(f"/api/public/statistics{query}").json()
    assert statistics["filters"] == {"from": "2090-03-01", "to": "2090-03-31", "region": "35.73"}
    assert statistics["totals"]["reports"] == 5 + 3 + 1
    assert statistics["breakdown"]["by_category"] == {"(other)": 4, "pendidikan": 5}  # lingkungan 3, kesehatan 1
    # Any day of March and any district of Malang is the same selection: nothing differs to tell a report by.
    other_days = month.client.get(f"/api/public/statistics?from={DAY[1]}&to={DAY[20]}&region=35.73").json()
    assert {key: other_days[key] for key in ("totals", "breakdown", "sla", "cells")} == {
        key: statistics[key] for key in ("totals", "breakdown", "sla", "cells")
    }


def test_public_statistics_name_only_categories_of_several_reports_in_a_cell(month: Reporting):
    """A category may be the reporter's own words: the public sees one only where at least five reports of a
    cell (a month in a city) share it. In March in Kupang: infrastruktur 13, kesehatan 4 and 4 without one; in
    Malang: pendidikan 5, lingkungan 3 and kesehatan 1 (the confidential G7). kesehatan has five reports in all,
    but in no cell."""
    by_category = month.client.get("/api/public/statistics").json()["breakdown"]["by_category"]
    assert by_category == {"(other)": 4 + 4 + 3 + 1, "infrastruktur": 13, "pendidikan": 5}


NAMED = "Pungli oleh Budi Santoso 081234567890"  # a verifier's category, logged as typed


def test_the_staff_views_show_a_typed_name_and_phone_number_in_a_category_masked_but_to_the_national_admin(
    reporting: Reporting,
):
    """The verifier's category is logged as typed (intake masks only the reporter's), and the national and agency
    views listed it so to every reader: an operator, an auditor, the Ombudsman or the agency's own staff read the
    name and the phone number a verifier typed into it, which every view of the report masks for them. Now each
    reader sees it as the privacy policy shows them free text (`redact_text`): masked for all but the national
    admin, and names that mask alike counted together (session 30)."""
    other = "Pungli oleh Bambang Sutrisno 081299997890"  # masks as NAMED does
    typed = [
        scenario.accepted(scenario.disposed(scenario.verified(scenario.submitted(f"LAP-NAM-{i:02d}", 0, "53.71"), 1,
                                                              "pengaduan", category), 1, scenario.KUPANG, 6),
                          2, scenario.KUPANG)
        for i, category in enumerate([NAMED, NAMED, other, "kesehatan"])
    ]
    scenario.play(reporting.ctx.store, reporting.clock, typed, scenario.day(5))
    reporting.caught_up()
    masked = {"Pungli oleh B*** S*** 0812****7890": 3, "kesehatan": 1}
    national, agency = "/api/reports/national", f"/api/reports/agencies/{scenario.KUPANG}"
    readers = [(Role.operator, {}), (Role.auditor, {}), (Role.ombudsman, {})]
    staff = [(Role.admin_agency, {"agency_id": scenario.KUPANG}), (Role.liaison, {"agency_id": scenario.KUPANG})]
    for path, roles in ((national, readers), (agency, readers + staff)):
        for role, scope in roles:
            response = reporting.client.get(path, headers=reporting.bearer(role, **scope))
            assert response.status_code == 200, (path, role, response.text)
            assert response.json()["breakdown"]["by_category"] == masked, (path, role)
            assert "Budi" not in response.text, (path, role)
            assert "081234567890" not in response.text, (path, role)
    for path in (national, agency):
        assert reporting.get(path)["breakdown"]["by_category"] == {NAMED: 2, other: 1, "kesehatan": 1}


def test_a_category_recorded_with_a_labels_name_is_counted_apart_from_the_label(reporting: Reporting):
    """A verifier could type `(none)` or `(other)`, and the views counted its reports with those without a category
    and (public statistics) with the rest of the small categories. Refused since session 31, but old stores hold
    such events: the views count such a name in quotes, and a name that was in quotes already in one more pair.
    One cell (March in Kupang) of 14 reports: 5 verified as `(other)`, 5 not verified (no category), one each as
    `(none)` and `"(none)"`, two as kesehatan."""
    categories = ["(other)"] * 5 + [None] * 5 + ["(none)", '"(none)"', "kesehatan", "kesehatan"]
    played = [
        scenario.submitted(f"LAP-LBL-{i:02d}", 0, "53.71") if category is None
        else scenario.verified(scenario.submitted(f"LAP-LBL-{i:02d}", 0, "53.71"), 1, "pengaduan", category)
        for i, category in enumerate(categories)
    ]
    scenario.play(reporting.ctx.store, reporting.clock, played, scenario.day(5))
    reporting.caught_up()
    expected = {'"(other)"': 5, "(none)": 5, '"(none)"': 1, '""(none)""': 1, "kesehatan": 2}
    assert reporting.get("/api/reports/national")["breakdown"]["by_category"] == expected
    assert reporting.get("/api/reports/national", Role.operator)["breakdown"]["by_category"] == expected  # masked
    public = reporting.client.get("/api/public/statistics").json()["breakdown"]["by_category"]
    assert public == {'"(other)"': 5, "(none)": 5, "(other)": 1 + 1 + 2}


def test_every_view_says_which_log_position_it_reflects(month: Reporting):
    head = month.ctx.store.head_position()
    assert month.get("/api/reports/national")["as_of"]["position"] == head
    assert month.client.get("/api/public/statistics").json()["as_of"]["position"] == head


def test_a_period_that_ends_before_it_starts_is_refused(month: Reporting):
    response = month.client.get(f"/api/reports/national?from={DAY[5]}&to={DAY[1]}", headers=month.bearer(
        Role.operator))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    # Like every validation problem, it lists what is wrong in `errors`.
    [error] = response.json()["errors"]
    assert "after it ends" in error["message"]


@pytest.mark.parametrize("day", ["0", "2026", "1733356800", "2026-12-01T00:00", "01-12-2026"])
def test_a_period_day_that_is_not_an_iso_date_is_refused(month: Reporting, day: str):
    """A number used to pass as Unix time (`to=0` was the period ending 1970-01-01): every view says what it wants."""
    for path in ("/api/reports/national", "/api/reports/national/agencies", "/api/public/statistics"):
        for name in ("from", "to"):
            response = month.client.get(path, params={name: day}, headers=month.bearer(Role.operator))
            assert response.status_code == 422, (path, name, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            [error] = response.json()["errors"]
            assert error["location"] == ["query", name]
            assert "ISO-8601 date like 2026-12-31" in error["message"]


# -- which agency ids are known -----------------------------------------------------------------------------------

KNOWN = [
    "pemda-53.71",  # in the directory, holding reports
    "pemda-53.71/dinkes",  # a unit in the directory
    "kemenkes",  # in the directory only
    "kementerian-x/ditjen_a",  # not in the directory, holding a report
    "kementerian-x",  # only through its office, which holds a report
    "pemkab-9",  # not in the directory, holding a report
    "pemkab-9/dinas/puskesmas_1",  # a unit holding a report
    "pemkab-9/dinas",  # only through the unit inside it
]
UNKNOWN = [
    "pemda-99.99",
    "pemda_53.71",  # `_` would be LIKE's wildcard for the `-` of pemda-53.71
    "pemda-53.7_",
    "kementerian_x",
    "pemkab-9/dinas/puskesmas-1",
    "pemda-53.7",  # a prefix of pemda-53.71, but not a whole part of it
    "kementerian-x/ditjen",
    "Pemda-53.71",  # ids are compared as written (SQLite's LIKE would not)
]


@contextmanager
def own_store(request: pytest.FixtureRequest, backend_store: str | None) -> Iterator[str | None]:
    """A store of the test's own on the backend of `backend_store` (whose PostgreSQL schema the module's tests
    share): None for SQLite (the data directory's), a fresh schema on PostgreSQL."""
    if backend_store is None:
        yield None
        return
    with fresh_schema(request.getfixturevalue("postgres_server")) as url:
        yield url


@pytest.fixture(scope="module")
def holders(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, backend_store: str | None):
    """The month's directory, a ministry's office and a regency's health-centre unit holding a report each though
    neither is in the directory, and a ministry in the directory with no report."""
    office = scenario.held("LAP-K-01", "53.71", "kementerian-x/ditjen_a")
    unit = scenario.held("LAP-K-02", "53.71", "pemkab-9").at(
        3, ev.ComplaintAssigned(unit_id="pemkab-9/dinas/puskesmas_1"), scenario.staff("pemkab-9"))
    with own_store(request, backend_store) as store, played(
        tmp_path_factory.mktemp("holders") / "var", store, [office, unit]
    ) as service:
        ministry = ev.AgencyRegistered(agency_id="kemenkes", name="Kementerian Kesehatan", kind="kementerian")
        service.ctx.store.append("directory-kemenkes", [ministry.to_new_event(metadata=dict(scenario.SYSTEM))])
        service.caught_up()
        yield service


@pytest.mark.parametrize(("agency_id", "status"), [*((a, 200) for a in KNOWN), *((a, 404) for a in UNKNOWN)])
def test_an_agency_is_known_by_the_directory_or_by_a_report_it_or_a_unit_inside_it_holds(
    holders: Reporting, agency_id: str, status: int
):
    response = holders.client.get(f"/api/reports/agencies/{agency_id}", headers=holders.bearer(Role.operator))
    assert response.status_code == status, response.text


def test_an_id_with_a_like_wildcard_is_not_known_by_what_the_wildcard_would_match(holders: Reporting):
    """`%` is not in an agency id's pattern (the routes answer 422 before looking), but the lookup itself takes it as
    written too."""
    with holders.ctx.db.read() as tx:
        assert [reports.agency_known(tx, agency_id) for agency_id in ("%", "pemda-53.7%", "kementerian-%")] == [
            False, False, False]
        assert reports.agency_known(tx, "kementerian-x")


class _Recorded:
    """A database connection that keeps every statement run through it, with its parameters."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.statements: list[tuple[str, Any]] = []

    def execute(self, sql: str, params: Any = ()) -> Any:
        self.statements.append((sql, params))
        return self.conn.execute(sql, params)


def test_looking_for_an_unknown_agency_searches_indexes_and_scans_no_table(holders: Reporting):
    """Until session 29 `substr()` compares, which no index serves: every request for an unknown (or mistyped)
    agency read rpt_daily and rpt_complaints whole, seconds at 10^6 rows, for any staff token that asked. Each
    statement the lookup runs is planned as index searches only (PostgreSQL told to avoid a sequential scan where it
    can, as it would on tables of that size rather than on these few rows)."""
    settings = holders.ctx.settings
    if holders.ctx.db.dialect == "sqlite":
        conn: Any = sqlite3.connect(settings.readmodels.removeprefix("sqlite:///"))
    else:
        conn = psycopg.connect(settings.readmodels, autocommit=True)
        conn.execute("SET enable_seqscan = off")
    try:
        recorded = _Recorded(conn)
        tx = Tx(recorded, holders.ctx.db.dialect)
        assert not reports.agency_known(tx, "pemda-99.99")
        statements = [(sql, params) for sql, params in recorded.statements if "rpt_agencies" not in sql]
        assert {table for table in ("rpt_daily", "rpt_complaints") if any(table in sql for sql, _ in statements)} == {
            "rpt_daily", "rpt_complaints"}
        for sql, params in statements:
            if holders.ctx.db.dialect == "sqlite":
                plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()]
                assert not [step for step in plan if step.startswith("SCAN rpt_")], plan  # whole, index or not
                assert any(step.startswith("SEARCH") for step in plan), plan
            else:
                plan = [row[0] for row in conn.execute(f"EXPLAIN {sql}", params).fetchall()]
                assert not [step for step in plan if "Seq Scan" in step or "Filter:" in step], plan
                scans = [step for step in plan if "Index Scan" in step or "Index Only Scan" in step]
                conditions = [step for step in plan if "Index Cond:" in step]
                assert scans, plan
                assert len(conditions) == len(scans), plan
    finally:
        conn.close()


def test_the_views_go_on_past_an_event_changed_in_the_database_past_reading(
    request: pytest.FixtureRequest, tmp_path: Path, backend_store: str | None
):
    """A disposition whose time was changed in the store's database to one no read can decode: until session 29
    every projection stopped there for good, trying again from its checkpoint (the views froze, /readyz went on to
    report the lag). The app's projections park it and its report's later event, say so in /metrics, and count
    every other report."""
    data = tmp_path / "var"
    with own_store(request, backend_store) as store:
        ctx = ServiceContext.open(load_settings(data=data, training=True, store=store))
        try:
            assert isinstance(ctx.clock, ManualClock)
            reports_played = [scenario.held("LAP-X-01", "53.71"), scenario.held("LAP-X-02", "53.71")]
            scenario.play(ctx.store, ctx.clock, reports_played)
            store_url = ctx.settings.store
        finally:
            ctx.close()
        make_unreadable(store_url, "complaint-LAP-X-01", 2, "recorded_at")  # ComplaintDisposed
        with reporting_app(data, store) as service:
            service.caught_up()
            national = service.get("/api/reports/national")
            metrics = service.client.get("/metrics").text
    assert national["totals"]["reports"] == 2
    assert national["by_agency"] == [{"agency_id": "pemda-53.71", "name": "Pemerintah Kota Kupang", "reports": 1}]
    assert 'lapor_subscription_parked_events{consumer="reporting.complaints"} 2.0' in metrics
    assert 'lapor_subscription_lag_positions{consumer="reporting.complaints"} 0.0' in metrics
