"""Escalations in the figures: an answer after a red mark is late, and an Ombudsman takeover makes the
Ombudsman a holder that has not answered yet (on SQLite and PostgreSQL: a module of its own, since the backend's
schema is the module's)."""

from __future__ import annotations

from pathlib import Path

from schemas import events as ev
from tests.reporting import scenario as s
from tests.reporting.conftest import played

OMBUDSMAN = "ombudsman-ri"


def red_marked(tracking_id: str, *, answered_on: float | None, region: str = "53.71") -> s.Report:
    """Disposed to Kupang on day 1 (due day 6), escalated to the province on day 7 for the missed deadline with a
    new one on day 12, answered on `answered_on` (None: not yet)."""
    report = s.red_mark(s.held(tracking_id, region), 7, "agency", "regional", s.NTT, 12)
    return report if answered_on is None else s.follow_up(report, answered_on, s.KUPANG)


def taken_over(tracking_id: str) -> s.Report:
    """Malang answers on day 3; the reporter consents to the Ombudsman, who takes the report over on day 62."""
    report = s.follow_up(s.held(tracking_id, "35.73", s.MALANG), 3, s.MALANG)
    report.at(61, ev.ComplaintEscalated(kind="ombudsman_offer", reason="60 hari belum selesai.", from_level="agency",
                                        to_level="agency", automatic=True), s.SYSTEM)
    report.at(62, ev.OmbudsmanConsentGiven(), {"actor": f"reporter:{tracking_id}", "role": "reporter"})
    return report.at(62, ev.ComplaintEscalated(kind="ombudsman", reason="Pelapor setuju.", from_level="agency",
                                               to_level="ombudsman", to_agency_id=OMBUDSMAN, automatic=True,
                                               follow_up_due=s.day(67)), s.SYSTEM)


def test_an_answer_after_a_red_mark_is_late(tmp_path: Path, backend_store: str | None):
    """Answered on day 8, by the escalation's new deadline (day 12) but after the stage's own (day 6), which the
    red mark records: the stage missed its 5 working days. Another report, answered on day 5, was on time."""
    on_time = s.follow_up(s.held("LAP-RED-0", "53.71"), 5, s.KUPANG)
    reports = [red_marked("LAP-RED-1", answered_on=8), on_time]
    with played(tmp_path / "var", backend_store, reports, now=s.day(9)) as service:
        report = service.get("/api/reports/national?region=53.71")
    [follow_up] = [stage for stage in report["sla"] if stage["stage"] == "follow_up"]
    assert report["escalations"]["red_marks"] == 1
    assert (follow_up["on_time"], follow_up["late"], follow_up["overdue"]) == (1, 1, 0)
    assert follow_up["compliance"] == 0.5


def test_a_red_marked_report_is_overdue_until_its_holder_answers(tmp_path: Path, backend_store: str | None):
    """On day 8 the red-marked report is overdue, in the stage and on Kupang's line of the scoreboard, though the
    escalation's own deadline (day 12) is still ahead: Kupang's (day 6) has passed. Answered on day 9, it is late
    and no longer overdue. (Reported in Kabupaten Kupang, 53.01, apart from the module's other reports.)"""
    unanswered_report = red_marked("LAP-RED-2", answered_on=None, region="53.01")
    with played(tmp_path / "var", backend_store, [unanswered_report], now=s.day(8)) as service:
        unanswered = service.get("/api/reports/national?region=53.01")
        board = service.get("/api/reports/national/agencies?region=53.01")["agencies"]
        kupang = service.get(f"/api/reports/agencies/{s.KUPANG}")

        service.clock.set(s.day(9))
        service.append("LAP-RED-2", ev.FollowUpPosted(follow_up_id="fu-red-2", text="Sudah ditindaklanjuti."),
                       s.staff(s.KUPANG))
        answered = service.get("/api/reports/national?region=53.01")
        board_after = service.get("/api/reports/national/agencies?region=53.01")["agencies"]
    [before] = [stage for stage in unanswered["sla"] if stage["stage"] == "follow_up"]
    assert (before["on_time"], before["late"], before["overdue"]) == (0, 0, 1)
    [line] = [line for line in board if line["agency_id"] == s.KUPANG]
    assert line["overdue"] == 1
    assert kupang["score"]["overdue"] == 1
    [after] = [stage for stage in answered["sla"] if stage["stage"] == "follow_up"]
    assert (after["on_time"], after["late"], after["overdue"]) == (0, 1, 0)
    [line] = [line for line in board_after if line["agency_id"] == s.KUPANG]
    assert line["overdue"] == 0


def test_after_an_ombudsman_takeover_the_ombudsman_has_not_followed_up_until_it_answers(
    tmp_path: Path, backend_store: str | None
):
    with played(tmp_path / "var", backend_store, [taken_over("LAP-ORI-1")], now=s.day(63)) as service:
        board = {line["agency_id"]: line for line in service.get("/api/reports/national/agencies")["agencies"]}
        assert (board[OMBUDSMAN]["reports"], board[OMBUDSMAN]["followed_up"]) == (1, 0)
        assert board[OMBUDSMAN]["follow_up_rate"] == 0.0

        service.clock.set(s.day(64))
        service.append("LAP-ORI-1", ev.FollowUpPosted(follow_up_id="fu-ori-1", text="Ombudsman meminta klarifikasi."),
                       s.staff(OMBUDSMAN))
        board = {line["agency_id"]: line for line in service.get("/api/reports/national/agencies")["agencies"]}
        daily = service.get("/api/reports/national?region=35.73")["daily"]  # not the other test's reports
    assert (board[OMBUDSMAN]["followed_up"], board[OMBUDSMAN]["follow_up_rate"]) == (1, 1.0)
    answered = {row["day"]: row["followed_up"] for row in daily if row["followed_up"]}
    assert answered == {s.day(3).date().isoformat(): 1, s.day(64).date().isoformat(): 1}


# -- a red mark is the unit's that let the deadline pass, not the one holding the report when routing looked -------

DINKES, DISDIK = f"{s.KUPANG}/dinkes", f"{s.KUPANG}/disdik"


def reassigned_after_the_deadline(tracking_id: str, *, first: str | None, answered_late: bool) -> s.Report:
    """Kupang's report (due day 6) assigned to `first` on day 3 (None: kept at the agency's level), reassigned on day
    6.5, after the deadline passed, to Disdik; optionally answered late by `first` on day 6.2; red-marked on day 7,
    from the unit's level (the level the reassignment left it at), as routing does when it looks then."""
    report = s.held(tracking_id, "53.71")
    if first is not None:
        report.at(3, ev.ComplaintAssigned(unit_id=first), s.staff(s.KUPANG))
    if answered_late:
        report = s.follow_up(report, 6.2, s.KUPANG)
    report.at(6.5, ev.ComplaintAssigned(unit_id=DISDIK), s.staff(s.KUPANG))
    return report.at(7, ev.ComplaintEscalated(
        kind="follow_up_overdue", reason="Tindak lanjut melewati batas waktu.", from_level="unit", to_level="agency",
        to_agency_id=s.KUPANG, automatic=True, follow_up_due=None if answered_late else s.day(12)), s.SYSTEM)


def test_a_red_mark_raised_after_a_reassignment_counts_against_the_unit_that_missed_the_deadline(
    tmp_path: Path, backend_store: str | None
):
    """Dinkes held the report when its deadline passed; Kupang then gave it to Disdik, and routing's red mark came
    after (the seconds before its tick, or an outage). The mark was Disdik's, which had the report for half a day
    after the deadline. Not when Kupang held it itself at its own level: then the mark is the agency's, no unit's."""
    reports = [
        reassigned_after_the_deadline("LAP-RU-1", first=DINKES, answered_late=False),
        reassigned_after_the_deadline("LAP-RU-2", first=DINKES, answered_late=True),
        reassigned_after_the_deadline("LAP-RU-3", first=None, answered_late=False),
    ]
    with played(tmp_path / "var", backend_store, reports, now=s.day(8)) as service:
        kupang = service.get(f"/api/reports/agencies/{s.KUPANG}")
        disdik = service.get(f"/api/reports/agencies/{DISDIK}")
        dinkes = service.get(f"/api/reports/agencies/{DINKES}")
    units = {unit["unit_id"]: unit["red_marks"] for unit in kupang["units"]}
    assert units == {DINKES: 2, DISDIK: 0}
    assert (dinkes["escalations"]["red_marks"], disdik["escalations"]["red_marks"]) == (2, 0)
