"""Where each stage of the figures starts and ends (docs/reporting.md, "Definitions"): a pend pauses the verification
stage, a resolution answers the reporter, a re-disposition starts the follow-up stage again, an Ombudsman takeover
does not, and a unit's own view holds the reports assigned to it. On SQLite and PostgreSQL; every test has a
region (or agency) of its own, since on PostgreSQL the module's tests share one schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lapor.principal import Role
from schemas import events as ev
from tests.reporting import scenario as s
from tests.reporting.conftest import played

OMBUDSMAN = "ombudsman-ri"
REPORTER = {"role": "reporter"}


def stage(view: dict[str, Any], name: str) -> tuple[int, int, int]:
    [found] = [line for line in view["sla"] if line["stage"] == name]
    return found["on_time"], found["late"], found["overdue"]


def line_of(board: list[dict[str, Any]], agency_id: str) -> dict[str, Any]:
    [found] = [line for line in board if line["agency_id"] == agency_id]
    return found


def pended(tracking_id: str, region: str, *, pended_on: float, answered_on: float | None, due: float) -> s.Report:
    """Submitted on day 0 (verification due day 3), pended on `pended_on`, answered on `answered_on` with a new
    verification deadline on `due`."""
    report = s.submitted(tracking_id, 0, region)
    report.at(pended_on, ev.ComplaintPended(information_requested="Di mana lokasinya?",
                                            archive_due=s.day(pended_on + 30)), s.OFFICER)
    if answered_on is not None:
        report.at(answered_on, ev.InformationProvided(text="Jl. El Tari 1.", verification_due=s.day(due)),
                  {**REPORTER, "actor": f"reporter:{tracking_id}"})
    return report


def test_a_pend_pauses_the_verification_stage(tmp_path: Path, backend_store: str | None):
    """The deadline restarts when the reporter answers: verifying after the new one is late, and a report back
    from the reporter and past it is overdue. A pend by the deadline leaves nothing due while the reporter is
    asked, so archiving it for no answer is on time; a late pend makes the stage late whatever comes after."""
    reports = {
        "53.02": pended("LAP-PND-1", "53.02", pended_on=1, answered_on=2, due=5),  # verified day 10: late
        "53.03": pended("LAP-PND-2", "53.03", pended_on=1, answered_on=2, due=5),  # never verified: overdue
        "53.04": pended("LAP-PND-3", "53.04", pended_on=1, answered_on=None, due=0),  # archived day 9: on time
        "53.05": pended("LAP-PND-4", "53.05", pended_on=5, answered_on=6, due=9),  # pended late, verified day 7
        "53.06": pended("LAP-PND-5", "53.06", pended_on=1, answered_on=None, due=0),  # still asked: nothing due
    }
    s.verified(reports["53.02"], 10, "pengaduan", "kesehatan")
    reports["53.04"].at(9, ev.ComplaintArchived(reason="Pelapor tidak melengkapi."), s.SYSTEM)
    s.verified(reports["53.05"], 7, "pengaduan", "kesehatan")
    with played(tmp_path / "var", backend_store, list(reports.values()), now=s.day(10.5)) as service:
        views = {region: service.get(f"/api/reports/national?region={region}") for region in reports}
    assert stage(views["53.02"], "verification") == (0, 1, 0)
    assert stage(views["53.03"], "verification") == (0, 0, 1)
    assert stage(views["53.04"], "verification") == (1, 0, 0)
    assert stage(views["53.05"], "verification") == (0, 1, 0)
    assert stage(views["53.06"], "verification") == (0, 0, 0)
    assert views["53.06"]["sla"][0]["compliance"] is None


def test_a_resolution_answers_the_reporter(tmp_path: Path, backend_store: str | None):
    """Resolved without a follow-up post: by the deadline it is followed up on time; after a red mark it is late,
    not dropped from the stage (before, resolving took an overdue report out of the figures), and the holder has
    answered it."""
    on_time = s.held("LAP-RSV-1", "53.07")
    after_red_mark = s.red_mark(s.held("LAP-RSV-2", "53.08"), 7, "agency", "regional", s.NTT, 12)
    on_time.at(4, ev.ComplaintResolved(resolution="Sudah diperbaiki.", feedback_due=s.day(14)), s.staff(s.KUPANG))
    with played(tmp_path / "var", backend_store, [on_time, after_red_mark], now=s.day(8)) as service:
        overdue = service.get("/api/reports/national?region=53.08")
        service.append("LAP-RSV-2", ev.ComplaintResolved(resolution="Sudah diperbaiki.", feedback_due=s.day(18)),
               s.staff(s.KUPANG))
        first = service.get("/api/reports/national?region=53.07")
        second = service.get("/api/reports/national?region=53.08")
        board = service.get("/api/reports/national/agencies?region=53.08")["agencies"]
    assert stage(first, "follow_up") == (1, 0, 0)
    assert stage(overdue, "follow_up") == (0, 0, 1)
    assert stage(second, "follow_up") == (0, 1, 0)
    assert (line_of(board, s.KUPANG)["followed_up"], line_of(board, s.KUPANG)["overdue"]) == (1, 0)
    assert sum(day["followed_up"] for day in second["daily"]) == 1


def test_a_redisposition_starts_the_follow_up_stage_again(tmp_path: Path, backend_store: str | None):
    """Kupang answers on day 2 and returns the report on day 3; disposed to the province (due day 8), which never
    answers. On day 12 the report is overdue, in the national figures and in the province's own view, which
    before credited it with Kupang's answer."""
    report = s.follow_up(s.held("LAP-RDS-1", "53.09"), 2, s.KUPANG)
    report.at(3, ev.DispositionReturned(agency_id=s.KUPANG, reason="Kewenangan provinsi.", suggested_agency_id=s.NTT),
              s.staff(s.KUPANG))
    s.accepted(s.disposed(report, 3, s.NTT, 8), 4, s.NTT)
    with played(tmp_path / "var", backend_store, [report], now=s.day(12)) as service:
        national = service.get("/api/reports/national?region=53.09")
        province = service.get(f"/api/reports/agencies/{s.NTT}")
    assert stage(national, "follow_up") == (0, 0, 1)
    assert stage(province, "follow_up") == (0, 0, 1)
    assert (province["score"]["followed_up"], province["score"]["overdue"]) == (0, 1)


def taken_over(report: s.Report, consented: float, handed_over: float, level: str, due: float) -> s.Report:
    """The reporter consents on day `consented` (the takeover was offered before) and routing hands the report to the
    Ombudsman on day `handed_over`, from `level`, with the Ombudsman's deadline on day `due`."""
    report.at(consented, ev.OmbudsmanConsentGiven(), {**REPORTER, "actor": f"reporter:{report.tracking_id}"})
    return report.at(handed_over, ev.ComplaintEscalated(
        kind="ombudsman", reason="Pelapor setuju.", from_level=level, to_level="ombudsman", to_agency_id=OMBUDSMAN,
        automatic=True, follow_up_due=s.day(due)), s.SYSTEM)


def ombudsman_answers(
    tmp_path: Path, backend_store: str | None, report: s.Report, region: str, now: float, answered_on: float
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """The national view and the scoreboard of `region` on day `now`; then, the Ombudsman having answered on day
    `answered_on`, the national view and the Ombudsman's."""
    with played(tmp_path / "var", backend_store, [report], now=s.day(now)) as service:
        before = service.get(f"/api/reports/national?region={region}")
        board = service.get(f"/api/reports/national/agencies?region={region}")["agencies"]
        service.clock.set(s.day(answered_on))
        service.append(report.tracking_id, ev.FollowUpPosted(follow_up_id=f"fu-{report.tracking_id}",
                                                             text="Ombudsman meminta klarifikasi."), s.staff(OMBUDSMAN))
        answered = service.get(f"/api/reports/national?region={region}")
        ombudsman = service.get(f"/api/reports/agencies/{OMBUDSMAN}?region={region}")
    return before, board, answered, ombudsman


def test_an_ombudsman_takeover_keeps_the_missed_stage_overdue(tmp_path: Path, backend_store: str | None):
    """Malang missed its deadline (red marks on days 7 and 13) and never answered; the Ombudsman takes the report
    over on day 62 (due day 67). On day 63 the stage is still overdue, though not on the Ombudsman's line of the
    scoreboard; answered on day 64, it is late."""
    report = s.red_mark(s.held("LAP-OTK-1", "35.07", s.MALANG), 7, "agency", "regional", s.JATIM, 12)
    s.red_mark(report, 13, "regional", "national", "kemenpanrb", 18)
    report.at(61, ev.ComplaintEscalated(kind="ombudsman_offer", reason="60 hari belum selesai.",
                                        from_level="national", to_level="national", automatic=True), s.SYSTEM)
    taken_over(report, 62, 62, "national", 67)
    before, board, answered, ombudsman = ombudsman_answers(tmp_path, backend_store, report, "35.07", 63, 64)
    assert stage(before, "follow_up") == (0, 0, 1)
    # Its own pace: from the takeover on day 62 to its answer on day 64.
    assert ombudsman["time_to_first_follow_up"] == {"reports": 1, "median_hours": 48.0, "p90_hours": 48.0}
    assert line_of(board, OMBUDSMAN)["overdue"] == 0
    assert stage(answered, "follow_up") == (0, 1, 0)


def test_a_takeover_after_a_deadline_passed_unmarked_keeps_the_missed_stage_overdue(
    tmp_path: Path, backend_store: str | None
):
    """Offered to the Ombudsman while Malang held it, returned and disposed to Jawa Timur on day 62 (due day 67);
    the reporter consents on day 66, and routing, down over day 67, hands the report over on day 68 before it
    red-marks Jatim's passed deadline (the handover's new deadline replaces it, so the mark never comes). The stage
    Jatim missed is overdue on day 69 and late when the Ombudsman answers on day 70, by its own deadline. Until
    session 27 it was counted nowhere on day 69 and on time on day 70 (found writing the figures' oracle,
    tests/reporting/oracle.py, from docs/reporting.md)."""
    report = s.follow_up(s.held("LAP-OTK-2", "35.08", s.MALANG), 3, s.MALANG)
    report.at(61, ev.ComplaintEscalated(kind="ombudsman_offer", reason="60 hari belum selesai.", from_level="agency",
                                        to_level="agency", automatic=True), s.SYSTEM)
    report.at(62, ev.DispositionReturned(agency_id=s.MALANG, reason="Kewenangan provinsi."), s.staff(s.MALANG))
    s.accepted(s.disposed(report, 62, s.JATIM, 67), 63, s.JATIM)
    taken_over(report, 66, 68, "agency", 73)
    before, board, answered, _ = ombudsman_answers(tmp_path, backend_store, report, "35.08", 69, 70)
    assert stage(before, "follow_up") == (0, 0, 1)
    assert line_of(board, OMBUDSMAN)["overdue"] == 0  # the Ombudsman has not missed its own deadline
    assert stage(answered, "follow_up") == (0, 1, 0)


def test_a_units_view_holds_the_reports_assigned_to_it(tmp_path: Path, backend_store: str | None):
    """Three reports assigned to Kupang's health office (scenario group G8) are what its unit officer's view
    counts, where before it counted none: they keep Kupang as their agency."""
    unit = f"{s.KUPANG}/dinkes"
    with played(tmp_path / "var", backend_store, [s.g8(i) for i in range(3)]) as service:
        response = service.client.get(f"/api/reports/agencies/{unit}",
                                       headers=service.bearer(Role.unit_officer, agency_id=s.KUPANG, unit_id=unit))
        kupang = service.get(f"/api/reports/agencies/{s.KUPANG}")
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["totals"]["reports"] == 3
    assert view["score"]["followed_up"] == 3
    assert [(line["unit_id"], line["reports"]) for line in view["units"]] == [(unit, 3)]
    assert [(line["unit_id"], line["reports"]) for line in kupang["units"]] == [(unit, 3)]


def test_a_red_mark_on_a_units_report_counts_in_the_units_view(tmp_path: Path, backend_store: str | None):
    """Kupang assigns a report to its health office on day 2; the office misses the deadline and routing
    escalates from the unit to Kupang on day 7 (a red mark). The office's view counts the red mark, its escalation
    and the assignment (before session 22 it counted none: they were Kupang's alone); Kupang's view counts them too,
    as it holds the report through its office."""
    unit = f"{s.KUPANG}/dinkes"
    report = s.held("LAP-UNT-1", "53.10")
    report.at(2, ev.ComplaintAssigned(unit_id=unit), s.staff(s.KUPANG))
    s.red_mark(report, 7, "unit", "agency", s.KUPANG, 12)
    with played(tmp_path / "var", backend_store, [report], now=s.day(8)) as service:
        office = service.get(f"/api/reports/agencies/{unit}?region=53.10")
        kupang = service.get(f"/api/reports/agencies/{s.KUPANG}?region=53.10")
    for view in (office, kupang):
        assert view["escalations"] == {"total": 1, "by_kind": {"follow_up_overdue": 1}, "bounces": 0, "red_marks": 1}
        assert (view["score"]["red_marks"], view["score"]["overdue"]) == (1, 1)
    assert [(row["day"], row["assigned"]) for row in office["daily"]] == [(s.day(2).date().isoformat(), 1)]
    assert office["score"]["dispositions"] == 0  # the unit received it by assignment, not by disposition
    assert kupang["score"]["dispositions"] == 1
    # Kupang's list of its units says which one missed the deadline.
    [line] = kupang["units"]
    assert (line["unit_id"], line["assigned"], line["red_marks"], line["overdue"]) == (unit, 1, 1, 1)


def test_an_agencys_view_times_its_own_answer_after_a_redisposition(tmp_path: Path, backend_store: str | None):
    """Kupang answered on day 2 (a day after the disposition) and returned the report on day 3; disposed to the
    province on day 3, which answered on day 6. The province's view times its own answer, 72 hours, not Kupang's
    (before session 22 it showed 24); the national view keeps the reporter's wait for a first answer, 24 hours."""
    report = s.follow_up(s.held("LAP-HLD-1", "53.11"), 2, s.KUPANG)
    report.at(3, ev.DispositionReturned(agency_id=s.KUPANG, reason="Kewenangan provinsi.", suggested_agency_id=s.NTT),
              s.staff(s.KUPANG))
    s.follow_up(s.accepted(s.disposed(report, 3, s.NTT, 8), 4, s.NTT), 6, s.NTT)
    with played(tmp_path / "var", backend_store, [report], now=s.day(7)) as service:
        province = service.get(f"/api/reports/agencies/{s.NTT}?region=53.11")
        national = service.get("/api/reports/national?region=53.11")
    assert province["time_to_first_follow_up"] == {"reports": 1, "median_hours": 72.0, "p90_hours": 72.0}
    assert national["time_to_first_follow_up"] == {"reports": 1, "median_hours": 24.0, "p90_hours": 24.0}


def test_the_bounce_limit_flag_is_not_the_escalation_of_the_agency_that_received_the_report(
    tmp_path: Path, backend_store: str | None,
):
    """Returned as bukan wewenang three times, the report is disposed to the province, and routing flags it to the
    national admin at that moment (bounce_limit). The flag is about routing's dispositions: the national view
    counts it, the province's view does not (before session 22 it showed an escalation it had no part in)."""
    report = s.verified(s.submitted("LAP-BNC-1", 0, "53.12"), 1, "pengaduan", "kesehatan")
    for n, agency in enumerate((s.KUPANG, s.MALANG, s.JATIM), start=1):
        s.disposed(report, n, agency, n + 5)
        report.at(n + 0.5, ev.DispositionReturned(agency_id=agency, reason="Bukan wewenang."), s.staff(agency))
    s.disposed(report, 4, s.NTT, 9)
    report.at(4, ev.ComplaintEscalated(kind="bounce_limit", reason="Dikembalikan 3 kali.", from_level="agency",
                                       to_level="agency", to_agency_id="kemenpanrb", automatic=True), s.SYSTEM)
    with played(tmp_path / "var", backend_store, [report], now=s.day(5)) as service:
        national = service.get("/api/reports/national?region=53.12")
        province = service.get(f"/api/reports/agencies/{s.NTT}?region=53.12")
    assert national["escalations"] == {"total": 1, "by_kind": {"bounce_limit": 1}, "bounces": 3, "red_marks": 0}
    assert province["escalations"] == {"total": 0, "by_kind": {}, "bounces": 0, "red_marks": 0}
    assert province["score"]["dispositions"] == 1


def test_an_agencys_units_list_names_a_unit_that_had_a_report_in_the_period(tmp_path: Path, backend_store: str | None):
    """Assigned to the health office on day 2 and moved to the transport office on day 3: Kupang's list of units
    has both, the first holding nothing now but assigned one report in the period."""
    report = s.held("LAP-UNT-2", "53.13")
    report.at(2, ev.ComplaintAssigned(unit_id=f"{s.KUPANG}/dinkes"), s.staff(s.KUPANG))
    report.at(3, ev.ComplaintAssigned(unit_id=f"{s.KUPANG}/dishub"), s.staff(s.KUPANG))
    with played(tmp_path / "var", backend_store, [report], now=s.day(4)) as service:
        units = service.get(f"/api/reports/agencies/{s.KUPANG}?region=53.13")["units"]
    assert [(line["unit_id"], line["reports"], line["assigned"]) for line in units] == [
        (f"{s.KUPANG}/dinkes", 0, 1), (f"{s.KUPANG}/dishub", 1, 1)
    ]


def test_a_miss_at_the_agencys_level_and_a_return_are_the_agencys_not_its_units(
    tmp_path: Path, backend_store: str | None,
):
    """Assigned to the health office on day 2 and red-marked from the unit to Kupang on day 7 (the office's miss);
    Kupang misses the next deadline too and is red-marked to the province on day 13 (Kupang's miss, though the
    report stays assigned to the office), then returns the report on day 14 (Kupang's return: a unit cannot)."""
    unit = f"{s.KUPANG}/dinkes"
    report = s.held("LAP-UNT-3", "53.14")
    report.at(2, ev.ComplaintAssigned(unit_id=unit), s.staff(s.KUPANG))
    s.red_mark(report, 7, "unit", "agency", s.KUPANG, 12)
    s.red_mark(report, 13, "agency", "regional", s.NTT, 18)
    report.at(14, ev.DispositionReturned(agency_id=s.KUPANG, reason="Bukan wewenang kota."), s.staff(s.KUPANG))
    with played(tmp_path / "var", backend_store, [report], now=s.day(15)) as service:
        office = service.get(f"/api/reports/agencies/{unit}?region=53.14")
        kupang = service.get(f"/api/reports/agencies/{s.KUPANG}?region=53.14")
    assert office["escalations"] == {"total": 1, "by_kind": {"follow_up_overdue": 1}, "bounces": 0, "red_marks": 1}
    assert kupang["escalations"] == {"total": 2, "by_kind": {"follow_up_overdue": 2}, "bounces": 1, "red_marks": 2}
    assert [(line["unit_id"], line["red_marks"]) for line in kupang["units"]] == [(unit, 1)]


def test_a_red_mark_for_an_answer_that_came_late_does_not_make_the_report_overdue_again(
        tmp_path: Path, backend_store: str | None):
    """Kupang answers on day 7, after its deadline of day 6, before routing's scheduler looked; routing then
    red-marks the missed deadline (with no new deadline: nothing is left to answer). The stage is late and the
    agency has its red mark, but the report, answered, is not overdue on the scoreboard."""
    report = s.follow_up(s.held("LAP-LTE-1", "53.15"), 7, s.KUPANG)
    report.at(7.01, ev.ComplaintEscalated(kind="follow_up_overdue", reason="Tindak lanjut melewati batas waktu.",
                                          from_level="agency", to_level="regional", to_agency_id=s.NTT,
                                          automatic=True), s.SYSTEM)
    with played(tmp_path / "var", backend_store, [report], now=s.day(9)) as service:
        national = service.get("/api/reports/national?region=53.15")
        board = service.get("/api/reports/national/agencies?region=53.15")["agencies"]
    assert stage(national, "follow_up") == (0, 1, 0)
    line = line_of(board, s.KUPANG)
    assert (line["followed_up"], line["red_marks"], line["overdue"]) == (1, 1, 0)
