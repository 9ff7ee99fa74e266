"""The deadline scheduler on the real store and read models with a moving clock: what it emits as deadlines pass
(in working days, across weekends and Idul Fitri), each exactly once, also across restarts, a rebuilt read model
and two schedulers racing; and on PostgreSQL too."""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta
from typing import Any

import pytest

from lapor.directory import agency_stream
from lapor.principal import OMBUDSMAN_AGENCY, SYSTEM, Principal, Role
from lapor.store import NO_STREAM
from schemas.events import (
    AgencyKind,
    AgencyRegistered,
    AgencyUpdated,
    ComplaintAssigned,
    ComplaintEscalated,
    ComplaintReopened,
    ComplaintResolved,
    DispositionAccepted,
    DispositionReturned,
    EscalationKind,
    FeedbackGiven,
    FollowUpPosted,
    InformationProvided,
    Level,
    OmbudsmanConsentGiven,
)
from services.followup.decide import Assign, decide_assign
from services.followup.directory import Directory
from services.routing.decide import DeadlineKind, PendCommand, VerifyCommand, decide_dispose, decide_pend, decide_verify
from services.routing.directory import read_agency
from services.routing.handlers import DeadlineScheduler
from tests.routing.harness import Routing, agency_principal, of_kind, wib

KUPANG = "pemda-53.71"
KUPANG_ADMIN = agency_principal(KUPANG)
MALANG = "pemda-35.73"
REPORTER = Principal(subject="reporter:LAP-1", role=Role.reporter, tracking_id="LAP-1")


def verify(routing: Routing, tid: str) -> None:
    routing.decide(tid, lambda state, now: decide_verify(state, VerifyCommand(category="Infrastruktur"), now))


def dispose(routing: Routing, tid: str, agency_id: str = KUPANG) -> None:
    routing.decide(tid, lambda state, now: decide_dispose(state, agency_id, now, routing.ctx.policy))


def test_verification_overdue_is_escalated_to_the_national_admin_once(routing_at):
    routing = routing_at(wib(2026, 3, 2, 10))  # Monday: due end of Thursday 5 March
    routing.submit("LAP-1")
    routing.at(wib(2026, 3, 5, 23, 59))
    assert routing.tick() == 0
    routing.at(wib(2026, 3, 6, 0, 1))
    assert routing.tick() == 1
    routing.advance(days=3)
    assert routing.tick() == 0
    [escalation] = routing.escalations("LAP-1")
    assert (escalation["kind"], escalation["to_level"], escalation["to_agency_id"]) == (
        "verification_overdue", "national", "kemenpanrb",
    )
    assert escalation["automatic"] is True
    events = routing.events("LAP-1")
    assert events[-1].metadata["actor"] == "system"
    # Caused by the event that started the deadline: the submission (the deadline's cause in the read model).
    assert events[-1].metadata["causation_id"] == str(events[0].event_id)


def test_a_report_sent_on_the_eve_of_idul_fitri_is_not_overdue_during_the_holidays(routing_at):
    routing = routing_at(wib(2026, 3, 20, 20))  # malam takbiran; 20 and 23-24 March are cuti bersama
    routing.submit("LAP-1")
    routing.at(wib(2026, 3, 27, 23))  # three working days: 25, 26, 27 March
    assert routing.tick() == 0
    routing.at(wib(2026, 3, 28, 0, 30))
    assert routing.tick() == 1
    assert of_kind(routing.escalations("LAP-1"), "verification_overdue")


def test_information_provided_starts_a_new_verification_deadline_escalated_on_its_own(routing_at):
    routing = routing_at(wib(2026, 3, 2, 10))
    routing.submit("LAP-1")
    routing.at(wib(2026, 3, 9, 9))
    routing.tick()
    routing.decide("LAP-1", lambda state, now: decide_pend(
        state, PendCommand(information_requested="Mohon kirim foto."), now, routing.ctx.policy))
    routing.append("LAP-1", InformationProvided(
        text="Foto terlampir.", verification_due=routing.ctx.policy.verification_due(routing.clock.now())),
        by=REPORTER)
    assert routing.tick() == 0
    routing.advance(days=7)
    assert routing.tick() == 1
    assert len(of_kind(routing.escalations("LAP-1"), "verification_overdue")) == 2


def test_a_pended_report_is_archived_automatically_after_30_working_days(routing_at):
    routing = routing_at(wib(2026, 3, 2, 10))
    routing.submit("LAP-1")
    routing.decide("LAP-1", lambda state, now: decide_pend(
        state, PendCommand(information_requested="Di mana lokasinya?"), now, routing.ctx.policy))
    routing.at(wib(2026, 4, 21, 23))  # the 30th working day, Idul Fitri and Good Friday not counted
    assert routing.tick() == 0
    routing.at(wib(2026, 4, 22, 8))
    assert routing.tick() == 1
    archived = routing.events("LAP-1")[-1]
    assert archived.type == "ComplaintArchived"
    assert archived.data["automatic"] is True
    assert routing.state("LAP-1").status == "archived"


def test_follow_up_overdue_climbs_unit_agency_province_national_and_stops(routing_at):
    routing = routing_at(wib(2026, 3, 2, 10))
    routing.submit("LAP-1")
    verify(routing, "LAP-1")
    dispose(routing, "LAP-1")
    routing.append("LAP-1", DispositionAccepted(agency_id=KUPANG), ComplaintAssigned(unit_id=f"{KUPANG}/dpupr"),
                   by=KUPANG_ADMIN)
    climbed = []
    for _ in range(5):
        routing.advance(days=8)  # more than five working days, whatever the week holds
        routing.tick()
        climbed = [(e["from_level"], e["to_level"], e["to_agency_id"])
                   for e in of_kind(routing.escalations("LAP-1"), "follow_up_overdue")]
    assert climbed == [
        ("unit", "agency", KUPANG),
        ("agency", "regional", "pemda-53"),
        ("regional", "national", "kemenpanrb"),
    ]


def test_an_escalated_report_assigned_to_a_unit_keeps_climbing_from_where_it_was(routing_at):
    """The agency hands a report its province already watches to a unit (followup's decision): the escalation is
    not undone, and the next missed deadline goes on to national. Assigning set the unit's level again, and the
    report, its missed deadline handled, was never escalated again."""
    routing = routing_at(wib(2026, 3, 2, 10))
    routing.submit("LAP-1")
    verify(routing, "LAP-1")
    dispose(routing, "LAP-1")
    routing.append("LAP-1", DispositionAccepted(agency_id=KUPANG), by=KUPANG_ADMIN)
    routing.advance(days=8)
    routing.tick()
    assert routing.state("LAP-1").level is Level.regional
    directory = Directory(routing.store)
    [assigned] = decide_assign(routing.state("LAP-1"), Assign(unit_id=f"{KUPANG}/dpupr"), routing.clock.now(),
                               directory)
    routing.append("LAP-1", assigned, by=KUPANG_ADMIN)
    assert (routing.state("LAP-1").level, routing.state("LAP-1").unit_id) == (Level.regional, f"{KUPANG}/dpupr")
    routing.advance(days=8)
    routing.tick()
    climbed = [(e["from_level"], e["to_level"]) for e in of_kind(routing.escalations("LAP-1"), "follow_up_overdue")]
    assert climbed == [("agency", "regional"), ("regional", "national")]


def test_a_public_follow_up_in_time_stops_the_escalation(routing_at):
    routing = routing_at(wib(2026, 3, 2, 10))
    routing.submit("LAP-1")
    verify(routing, "LAP-1")
    dispose(routing, "LAP-1")
    routing.append("LAP-1", DispositionAccepted(agency_id=KUPANG),
                   FollowUpPosted(follow_up_id="fu-1", text="Petugas sudah ke lokasi."), by=KUPANG_ADMIN)
    routing.advance(days=30)
    routing.tick()
    assert of_kind(routing.escalations("LAP-1"), "follow_up_overdue") == []


def test_unresolved_sixty_working_days_after_disposition_the_ombudsman_is_offered_then_takes_over(routing_at):
    routing = routing_at(wib(2026, 3, 2, 10))
    routing.submit("LAP-1")
    verify(routing, "LAP-1")
    dispose(routing, "LAP-1")
    routing.append("LAP-1", DispositionAccepted(agency_id=KUPANG),
                   FollowUpPosted(follow_up_id="fu-1", text="Sedang dikerjakan."), by=KUPANG_ADMIN)
    offer_due = routing.state("LAP-1").ombudsman_offer_due
    routing.at(offer_due - timedelta(hours=1))
    routing.tick()
    assert of_kind(routing.escalations("LAP-1"), "ombudsman_offer") == []
    routing.at(offer_due + timedelta(hours=1))
    routing.tick()
    assert len(of_kind(routing.escalations("LAP-1"), "ombudsman_offer")) == 1
    routing.append("LAP-1", OmbudsmanConsentGiven(), by=REPORTER)
    routing.tick()
    [takeover] = of_kind(routing.escalations("LAP-1"), "ombudsman")
    assert (takeover["to_level"], takeover["to_agency_id"]) == ("ombudsman", "ombudsman-ri")
    assert routing.state("LAP-1").agency_id == "ombudsman-ri"
    routing.tick()
    assert len(of_kind(routing.escalations("LAP-1"), "ombudsman")) == 1


def test_a_resolved_report_waiting_for_feedback_is_not_offered_to_the_ombudsman(routing_at):
    routing = routing_at(wib(2026, 3, 2, 10))
    routing.submit("LAP-1")
    verify(routing, "LAP-1")
    dispose(routing, "LAP-1")
    routing.append("LAP-1", DispositionAccepted(agency_id=KUPANG), ComplaintResolved(
        resolution="Sudah diperbaiki.", feedback_due=routing.ctx.policy.feedback_due(routing.clock.now())),
        by=KUPANG_ADMIN)
    routing.at(routing.state("LAP-1").ombudsman_offer_due + timedelta(days=1))
    routing.tick()
    assert of_kind(routing.escalations("LAP-1"), "ombudsman_offer") == []


def test_a_report_disposed_to_the_ombudsman_is_not_offered_to_the_ombudsman(routing_at):
    """The national admin disposes a report to Ombudsman RI itself (session 27): sixty working days unresolved, the
    reporter was offered the Ombudsman's takeover of what the Ombudsman already held, and asked to consent."""
    routing = routing_at(wib(2026, 3, 2, 10))
    routing.submit("LAP-1")
    verify(routing, "LAP-1")
    dispose(routing, "LAP-1", OMBUDSMAN_AGENCY)
    routing.append("LAP-1", DispositionAccepted(agency_id=OMBUDSMAN_AGENCY),
                   FollowUpPosted(follow_up_id="fu-1", text="Sedang diperiksa."),
                   by=Principal(subject="ombudsman-1", role=Role.ombudsman, agency_id=OMBUDSMAN_AGENCY))
    routing.at(routing.state("LAP-1").ombudsman_offer_due + timedelta(days=1))
    routing.tick()
    assert of_kind(routing.escalations("LAP-1"), "ombudsman_offer") == []
    assert routing.state("LAP-1").ombudsman_offered is False


def test_the_ombudsman_taking_over_a_returned_report_is_not_escalated_above_itself(routing_at):
    """Consent while the report is back with routing disposes it to the Ombudsman, at the agency level (session 27):
    the Ombudsman's missed follow-up went up to the national admin as a red mark, while on a report it took over
    from an agency (level ombudsman) nothing escalates. Nobody is above the Ombudsman either way."""
    routing = routing_at(wib(2026, 3, 2, 10))
    routing.submit("LAP-1")
    verify(routing, "LAP-1")
    dispose(routing, "LAP-1")
    routing.append("LAP-1", DispositionAccepted(agency_id=KUPANG),
                   DispositionReturned(agency_id=KUPANG, reason="Bukan wewenang kota."), by=KUPANG_ADMIN)
    routing.at(routing.state("LAP-1").ombudsman_offer_due + timedelta(hours=1))
    routing.tick()
    routing.append("LAP-1", OmbudsmanConsentGiven(), by=REPORTER)
    routing.tick()
    taken = routing.state("LAP-1")
    assert (taken.status, taken.agency_id, taken.level) == ("disposed", OMBUDSMAN_AGENCY, "agency")
    routing.at(taken.follow_up_due + timedelta(days=1))
    routing.tick()
    assert of_kind(routing.escalations("LAP-1"), "follow_up_overdue") == []
    assert routing.state("LAP-1").level == "agency"


def test_the_ombudsman_taking_over_a_report_returned_for_the_third_time_raises_no_bounce_flag(routing_at):
    """Three agencies return the report as bukan wewenang and the reporter consents while it is back with routing:
    the takeover is a disposition to the Ombudsman, which counts the third return (the fold's `bounce_count`: the
    returns before the present holding), and it flagged the national admin "periksa disposisinya" about a report the
    Ombudsman now holds, chosen by the reporter's consent, not by routing. No flag on the takeover (session 30); a
    disposition by the national admin after a later return still raises it."""
    routing = routing_at(wib(2026, 3, 2, 10))
    routing.submit("LAP-1")
    verify(routing, "LAP-1")
    for agency_id in (KUPANG, MALANG, "pemda-53"):
        dispose(routing, "LAP-1", agency_id)
        routing.append("LAP-1", DispositionReturned(agency_id=agency_id, reason="Bukan wewenang kami."),
                       by=agency_principal(agency_id))
    assert routing.state("LAP-1").bounce_count == 2  # the third return is counted by the next disposition
    routing.at(routing.state("LAP-1").ombudsman_offer_due + timedelta(hours=1))
    routing.tick()
    routing.append("LAP-1", OmbudsmanConsentGiven(), by=REPORTER)
    routing.tick()
    taken = routing.state("LAP-1")
    assert (taken.status, taken.agency_id, taken.bounce_count) == ("disposed", OMBUDSMAN_AGENCY, 3)
    assert of_kind(routing.escalations("LAP-1"), "bounce_limit") == []
    ombudsman = Principal(subject="ombudsman-1", role=Role.ombudsman, agency_id=OMBUDSMAN_AGENCY)
    routing.append("LAP-1", DispositionReturned(agency_id=OMBUDSMAN_AGENCY, reason="Bukan wewenang kami."),
                   by=ombudsman)
    dispose(routing, "LAP-1", KUPANG)
    [flag] = of_kind(routing.escalations("LAP-1"), "bounce_limit")
    assert flag["reason"].startswith("Dikembalikan sebagai bukan wewenang 4 kali")


@pytest.mark.parametrize("taken_from", ["agency", "routing"])
def test_a_report_the_ombudsman_took_over_and_returned_is_the_national_admins_to_dispose(routing_at, taken_from):
    """The reporter consents, the Ombudsman takes the report over (from the agency holding it, or by a disposition
    while it was back with routing), and its liaison returns it as bukan wewenang. The consent stood, so the next tick
    handed the report back to the Ombudsman at once, every time it returned it, and a report the national admin then
    disposed to another agency was taken from that agency at once (session 31). The consent is done with once the
    Ombudsman has taken the report: routing holds it like any returned report, and the national admin disposes it."""
    routing = routing_at(wib(2026, 3, 2, 10))
    routing.submit("LAP-1")
    verify(routing, "LAP-1")
    dispose(routing, "LAP-1")
    held = (
        FollowUpPosted(follow_up_id="fu-1", text="Sedang dikerjakan.") if taken_from == "agency"
        else DispositionReturned(agency_id=KUPANG, reason="Bukan wewenang kota.")
    )
    routing.append("LAP-1", DispositionAccepted(agency_id=KUPANG), held, by=KUPANG_ADMIN)
    offered_and_consented(routing)
    assert routing.state("LAP-1").agency_id == OMBUDSMAN_AGENCY
    liaison = agency_principal(OMBUDSMAN_AGENCY, Role.liaison)
    if taken_from == "routing":  # a disposition: the Ombudsman accepts it (taken from an agency, it is in progress)
        routing.append("LAP-1", DispositionAccepted(agency_id=OMBUDSMAN_AGENCY), by=liaison)
    routing.append("LAP-1", DispositionReturned(agency_id=OMBUDSMAN_AGENCY, reason="Bukan maladministrasi."),
                   by=liaison)
    routing.advance(minutes=1)
    routing.tick()
    returned = routing.state("LAP-1")
    assert (returned.status, returned.agency_id) == ("returned", None)
    dispose(routing, "LAP-1", MALANG)
    routing.advance(minutes=1)
    routing.tick()
    disposed = routing.state("LAP-1")
    assert (disposed.status, disposed.agency_id, disposed.level) == ("disposed", MALANG, "agency")
    assert routing.types("LAP-1")[-2:] == ["DispositionReturned", "ComplaintDisposed"]


def offered_and_consented(routing: Routing) -> None:
    """Sixty working days after the disposition routing offers the Ombudsman; the reporter consents; a tick."""
    routing.at(routing.state("LAP-1").ombudsman_offer_due + timedelta(hours=1))
    routing.tick()
    routing.append("LAP-1", OmbudsmanConsentGiven(), by=REPORTER)
    routing.tick()


def test_a_consent_given_just_before_a_resolution_is_handed_over_only_if_the_reporter_reopens(routing_at):
    """The reporter consents, and the agency resolves before the scheduler's next tick (session 27): handed over
    then, the Ombudsman held a resolved report it could neither follow up nor resolve, with a follow-up deadline
    running, and the report closed on the agency's resolution. It waits for the reporter's answer instead."""
    routing = routing_at(wib(2026, 3, 2, 10))
    routing.submit("LAP-1")
    verify(routing, "LAP-1")
    dispose(routing, "LAP-1")
    routing.append("LAP-1", DispositionAccepted(agency_id=KUPANG), by=KUPANG_ADMIN)
    routing.at(routing.state("LAP-1").ombudsman_offer_due + timedelta(hours=1))
    routing.tick()
    routing.append("LAP-1", OmbudsmanConsentGiven(), by=REPORTER)
    routing.append("LAP-1", ComplaintResolved(
        resolution="Sudah diperbaiki.", feedback_due=routing.ctx.policy.feedback_due(routing.clock.now())),
        by=KUPANG_ADMIN)
    routing.tick()
    state = routing.state("LAP-1")
    assert (state.status, state.agency_id, state.follow_up_due) == ("resolved", KUPANG, None)
    assert of_kind(routing.escalations("LAP-1"), "ombudsman") == []
    routing.advance(days=1)
    routing.append("LAP-1", FeedbackGiven(satisfied=False, rating=1), by=REPORTER)
    routing.append("LAP-1", ComplaintReopened(
        reason="Belum beres.", follow_up_due=routing.ctx.policy.follow_up_due(routing.clock.now())),
        by=KUPANG_ADMIN)
    routing.tick()
    [takeover] = of_kind(routing.escalations("LAP-1"), "ombudsman")
    assert takeover["to_agency_id"] == "ombudsman-ri"
    assert (routing.state("LAP-1").status, routing.state("LAP-1").agency_id) == ("in_progress", "ombudsman-ri")


def set_ombudsman_office_active(routing: Routing, active: bool) -> None:
    """The national admin retires Ombudsman RI's directory record (or restores it), as PUT /api/agencies does."""
    office = read_agency(routing.store, OMBUDSMAN_AGENCY)
    assert office is not None
    record = AgencyUpdated(agency_id=OMBUDSMAN_AGENCY, name=office.name, kind=office.kind, active=active)
    routing.store.append(agency_stream(OMBUDSMAN_AGENCY), [record.to_new_event()], office.version)


@pytest.mark.parametrize("returned", [False, True], ids=["held-by-agency", "back-with-routing"])
def test_a_consent_waits_while_the_ombudsman_office_is_not_active_then_is_handed_over_once(routing_at, caplog,
                                                                                          returned):
    """The reporter consents while Ombudsman RI's directory record is retired (session 29): the report went to an
    office that takes no dispositions, held by nobody who works a queue. The hand-over waits, with a warning, and
    happens once the office is active again."""
    routing = routing_at(wib(2026, 3, 2, 10))
    routing.submit("LAP-1")
    verify(routing, "LAP-1")
    dispose(routing, "LAP-1")
    routing.append("LAP-1", DispositionAccepted(agency_id=KUPANG), by=KUPANG_ADMIN)
    if returned:
        routing.append("LAP-1", DispositionReturned(agency_id=KUPANG, reason="Bukan wewenang kota."),
                       by=KUPANG_ADMIN)
    routing.at(routing.state("LAP-1").ombudsman_offer_due + timedelta(hours=1))
    routing.tick()
    set_ombudsman_office_active(routing, False)
    routing.append("LAP-1", OmbudsmanConsentGiven(), by=REPORTER)
    before = routing.state("LAP-1")
    for _ in range(2):
        with caplog.at_level("WARNING", logger="lapor.routing.scheduler"):
            assert routing.tick() == 0
        assert routing.state("LAP-1").version == before.version
        assert "LAP-1" in caplog.text
        assert f"{OMBUDSMAN_AGENCY} is not an active agency" in caplog.text
        caplog.clear()
        routing.advance(days=1)
    set_ombudsman_office_active(routing, True)
    routing.tick()
    taken = routing.state("LAP-1")
    assert (taken.agency_id, taken.status) == (OMBUDSMAN_AGENCY, "disposed" if returned else "in_progress")
    routing.tick()
    assert routing.types("LAP-1")[before.version + 1:] == (
        ["ComplaintDisposed"] if returned else ["ComplaintEscalated"]
    )


def overdue_everywhere(routing: Routing) -> None:
    """Three reports, each past a different deadline."""
    routing.submit("LAP-V")  # verification
    routing.submit("LAP-P")
    routing.decide("LAP-P", lambda state, now: decide_pend(
        state, PendCommand(information_requested="Lokasi?"), now, routing.ctx.policy))
    routing.submit("LAP-F")
    verify(routing, "LAP-F")
    dispose(routing, "LAP-F")
    routing.advance(days=60)


def reactions(routing: Routing) -> dict[str, list[str]]:
    return {tid: routing.types(tid)[1:] for tid in ("LAP-V", "LAP-P", "LAP-F")}


EXPECTED = {
    "LAP-V": ["ComplaintEscalated"],
    "LAP-P": ["ComplaintPended", "ComplaintArchived"],
    "LAP-F": ["ComplaintVerified", "ComplaintDisposed", "ComplaintEscalated"],
}


def test_restarting_the_scheduler_never_emits_twice(routing_at):
    routing = routing_at(wib(2026, 3, 2, 10))
    overdue_everywhere(routing)
    routing.tick()
    assert reactions(routing) == EXPECTED
    routing.close()
    restarted = routing_at(routing.clock.now())
    assert restarted.tick() == 0
    assert reactions(restarted) == EXPECTED


def test_a_scheduler_that_crashed_before_marking_its_work_done_does_not_repeat_it(routing_at):
    routing = routing_at(wib(2026, 3, 2, 10))
    overdue_everywhere(routing)
    routing.tick()
    with routing.ctx.db.transaction() as tx:
        tx.execute("DELETE FROM routing_deadline_settled")  # as if it died between append and bookkeeping
    assert routing.tick() == 0
    assert reactions(routing) == EXPECTED


def test_a_read_model_rebuilt_from_scratch_does_not_make_the_scheduler_repeat_itself(routing_at, tmp_path):
    routing = routing_at(wib(2026, 3, 2, 10))
    overdue_everywhere(routing)
    routing.tick()
    moment = routing.clock.now()
    routing.close()
    for path in (tmp_path / "var").glob("readmodels.db*"):
        path.unlink()
    rebuilt = routing_at(moment)
    assert rebuilt.tick() == 0
    assert reactions(rebuilt) == EXPECTED


def test_two_schedulers_racing_over_the_same_deadlines_emit_each_reaction_once(routing_at):
    routing = routing_at(wib(2026, 3, 2, 10))
    overdue_everywhere(routing)
    routing.catch_up()
    other = DeadlineScheduler(routing.ctx)
    threads = [threading.Thread(target=scheduler.tick) for scheduler in (routing.scheduler, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    routing.catch_up()
    assert reactions(routing) == EXPECTED


class _SetBack:
    """A clock (`lapor.clock.Clock`) set back right after its first reading, as NTP steps a system clock: the tick
    finds a deadline due, and the decision that follows reads a moment before it."""

    def __init__(self, clock: Any, back: timedelta) -> None:
        self.clock, self.back, self.read = clock, back, False

    def now(self) -> Any:
        moment = self.clock.now() - (self.back if self.read else timedelta(0))
        self.read = True
        return moment


def test_a_deadline_the_clock_stepped_back_from_is_decided_once_the_clock_is_past_it_again(routing_at):
    """Session 32: the decision found the deadline not passed yet and decided nothing, and the tick settled it all
    the same: the verification escalation (a red mark, an automatic archive) was never made."""
    routing = routing_at(wib(2026, 3, 2, 10))  # Monday: due end of Thursday 5 March
    routing.submit("LAP-1")
    routing.at(wib(2026, 3, 6, 0, 1))
    routing.catch_up()
    stepped = DeadlineScheduler(dataclasses.replace(routing.ctx, clock=_SetBack(routing.clock, timedelta(minutes=5))))
    assert stepped.tick() == 0
    assert routing.escalations("LAP-1") == []
    assert routing.tick() == 1
    [escalation] = routing.escalations("LAP-1")
    assert escalation["kind"] == "verification_overdue"


@pytest.mark.postgres
def test_restarting_the_scheduler_never_emits_twice_on_postgresql(routing_at, postgres_url):
    routing = routing_at(wib(2026, 3, 2, 10), store_url=postgres_url)
    overdue_everywhere(routing)
    routing.tick()
    routing.close()
    restarted = routing_at(routing.clock.now(), store_url=postgres_url)
    assert restarted.tick() == 0
    assert reactions(restarted) == EXPECTED


def accepted_by_kupang(routing: Routing) -> None:
    """LAP-1 submitted, verified, disposed to Kota Kupang and accepted there, all now."""
    routing.submit("LAP-1")
    verify(routing, "LAP-1")
    dispose(routing, "LAP-1")
    routing.append("LAP-1", DispositionAccepted(agency_id=KUPANG), by=KUPANG_ADMIN)


def late_answer(routing: Routing, *answers: Any) -> None:
    """Kota Kupang accepts on the day of the disposition, then answers a minute after its follow-up deadline has
    passed, before the scheduler's next tick."""
    accepted_by_kupang(routing)
    routing.tick()
    routing.at(routing.state("LAP-1").follow_up_due + timedelta(minutes=1))
    routing.append("LAP-1", *answers, by=KUPANG_ADMIN)


@pytest.mark.parametrize("answer", ["follow-up", "resolution"])
def test_an_answer_after_the_follow_up_deadline_still_gets_its_red_mark(routing_at, answer):
    """Whether the agency missed its deadline does not depend on when the scheduler looked: an answer that came
    after the deadline, in the seconds before the next tick (or while routing was down), left the report without
    its nilai merah, though the reports count the stage late."""
    routing = routing_at(wib(2026, 3, 2, 10))
    due_text = "09-03-2026"  # five working days after Monday 2 March: Monday 9 March
    if answer == "follow-up":
        late_answer(routing, FollowUpPosted(follow_up_id="fu-1", text="Petugas sudah ke lokasi."))
    else:
        late_answer(routing, ComplaintResolved(
            resolution="Sudah diperbaiki.", feedback_due=routing.ctx.policy.feedback_due(routing.clock.now())))
    assert routing.tick() == 1
    [red_mark] = of_kind(routing.escalations("LAP-1"), "follow_up_overdue")
    assert (red_mark["from_level"], red_mark["to_level"], red_mark["to_agency_id"]) == (
        "agency", "regional", "pemda-53")
    assert due_text in red_mark["reason"]
    # The agency answered: nothing runs for it to miss again, so no new follow-up deadline starts.
    assert red_mark.get("follow_up_due") is None
    assert routing.state("LAP-1").follow_up_due is None
    # Once: neither another tick nor the passing of time marks it again.
    routing.advance(days=30)
    assert routing.tick() == 0 or not of_kind(routing.escalations("LAP-1")[1:], "follow_up_overdue")
    assert len(of_kind(routing.escalations("LAP-1"), "follow_up_overdue")) == 1


def test_an_internal_note_after_the_deadline_is_no_answer_and_the_report_escalates_as_before(routing_at):
    routing = routing_at(wib(2026, 3, 2, 10))
    late_answer(routing, FollowUpPosted(follow_up_id="fu-1", text="Catatan internal.", public=False))
    assert routing.tick() == 1
    [red_mark] = of_kind(routing.escalations("LAP-1"), "follow_up_overdue")
    assert red_mark["follow_up_due"] is not None  # still unanswered: the province's deadline runs


def test_a_report_returned_after_its_deadline_is_not_escalated_from_routing(routing_at):
    """Bukan wewenang after the deadline: the report is back with the national admin, above whom nothing
    escalates; the return is counted as a bounce, not a red mark (docs/routing.md)."""
    routing = routing_at(wib(2026, 3, 2, 10))
    late_answer(routing, DispositionReturned(agency_id=KUPANG, reason="Jalan nasional, bukan wewenang kota."))
    assert routing.tick() == 0
    assert of_kind(routing.escalations("LAP-1"), "follow_up_overdue") == []


# -- a red mark does not depend on when the scheduler looked: the Ombudsman's takeover (session 30) ----------------


@pytest.mark.parametrize("answered", [True, False], ids=["answered-late", "unanswered"])
def test_a_deadline_passed_before_the_ombudsman_took_over_still_gets_its_red_mark(routing_at, answered):
    """The reporter had been offered the Ombudsman and consents; the agency's follow-up deadline passed (answered a
    minute late, or not at all) and the scheduler handed the report over before it looked at that deadline (two rows
    of one report in one tick, on parallel threads; or routing back from an outage). Taken over, the report was
    the Ombudsman's, above which nothing escalates: the agency's red mark was lost. The hand-over marks it first."""
    routing = routing_at(wib(2026, 3, 2, 10))
    routing.submit("LAP-1")
    verify(routing, "LAP-1")
    dispose(routing, "LAP-1")
    routing.append("LAP-1", DispositionAccepted(agency_id=KUPANG), by=KUPANG_ADMIN)
    routing.append("LAP-1", ComplaintEscalated(
        kind=EscalationKind.ombudsman_offer, reason="Ditawarkan.", from_level=Level.agency, to_level=Level.agency,
        automatic=True), by=SYSTEM)  # as if offered early (a policy of a few days); the deadline is the follow-up's
    routing.tick()
    routing.at(routing.state("LAP-1").follow_up_due + timedelta(minutes=1))
    if answered:
        routing.append("LAP-1", FollowUpPosted(follow_up_id="fu-1", text="Petugas sudah ke lokasi."),
                       by=KUPANG_ADMIN)
    routing.append("LAP-1", OmbudsmanConsentGiven(), by=REPORTER)
    routing.catch_up()
    due = routing.scheduler.due(routing.clock.now())
    assert sorted(row.kind.value for row in due) == ["follow_up", "ombudsman"]
    [handover] = [row for row in due if row.kind is DeadlineKind.ombudsman]
    assert routing.scheduler.handle(handover) == 2  # the hand-over looked at first: the red mark, then the takeover
    routing.tick()
    [red_mark] = of_kind(routing.escalations("LAP-1"), "follow_up_overdue")
    assert (red_mark["from_level"], red_mark["to_level"], red_mark["to_agency_id"]) == (
        "agency", "regional", "pemda-53")
    assert red_mark.get("follow_up_due") is None  # the Ombudsman takes the report: nobody waits at the province
    assert of_kind(routing.escalations("LAP-1"), "ombudsman")[0]["from_level"] == "regional"
    taken = routing.state("LAP-1")
    assert (taken.agency_id, taken.level, taken.follow_up_answered) == (OMBUDSMAN_AGENCY, "ombudsman", None)
    assert taken.follow_up_due is not None  # the Ombudsman's own deadline


# -- the level at which a deadline was missed (session 30) -------------------------------------------------------


@pytest.mark.parametrize("answered", [False, True], ids=["unanswered", "answered-late"])
def test_an_agency_that_missed_its_deadline_is_escalated_from_its_level_though_it_assigned_a_unit_since(
    routing_at, answered
):
    """Kota Kupang holds a report itself (no unit) and lets its follow-up deadline pass (answering it late, or not
    at all); before routing's scheduler looks, it assigns the report to its Dinas PUPR (followup's own decision).
    The assignment took the report to the unit's level, and the scheduler escalated unit -> agency: the red mark
    went one level too low (to Kupang itself instead of its province), and the province never saw the report."""
    routing = routing_at(wib(2026, 3, 2, 10))
    accepted_by_kupang(routing)
    routing.tick()
    routing.at(routing.state("LAP-1").follow_up_due + timedelta(minutes=5))
    if answered:
        routing.append("LAP-1", FollowUpPosted(follow_up_id="fu-1", text="Petugas sudah ke lokasi."),
                       by=KUPANG_ADMIN)
    [assigned] = decide_assign(routing.state("LAP-1"), Assign(unit_id=f"{KUPANG}/dpupr"), routing.clock.now(),
                               Directory(routing.store))
    routing.append("LAP-1", assigned, by=KUPANG_ADMIN)
    assert routing.state("LAP-1").unit_id == f"{KUPANG}/dpupr"
    routing.tick()
    [red_mark] = of_kind(routing.escalations("LAP-1"), "follow_up_overdue")
    assert (red_mark["from_level"], red_mark["to_level"], red_mark["to_agency_id"]) == (
        "agency", "regional", "pemda-53")
    assert (red_mark.get("follow_up_due") is None) is answered  # unanswered: the province's deadline runs
    assert routing.state("LAP-1").level is Level.regional


def test_a_unit_assigned_before_the_deadline_passed_is_the_level_that_missed_it(routing_at):
    """The same assignment made while the deadline still ran: the unit held the report when it passed, and the
    missed deadline escalates from the unit's level to its agency, as before."""
    routing = routing_at(wib(2026, 3, 2, 10))
    accepted_by_kupang(routing)
    routing.at(routing.state("LAP-1").follow_up_due - timedelta(minutes=5))
    [assigned] = decide_assign(routing.state("LAP-1"), Assign(unit_id=f"{KUPANG}/dpupr"), routing.clock.now(),
                               Directory(routing.store))
    routing.append("LAP-1", assigned, by=KUPANG_ADMIN)
    routing.advance(minutes=10)
    routing.tick()
    [red_mark] = of_kind(routing.escalations("LAP-1"), "follow_up_overdue")
    assert (red_mark["from_level"], red_mark["to_level"], red_mark["to_agency_id"]) == ("unit", "agency", KUPANG)


# -- the Ombudsman offer counts from the first disposition (session 30) ------------------------------------------


def test_a_report_bouncing_between_agencies_is_offered_to_the_ombudsman_sixty_working_days_after_its_first_disposition(
    routing_at,
):
    """Kota Kupang returns the report as bukan wewenang after weeks, naming Kota Malang, which gets it and works
    it slowly. Each disposition started the sixty working days again, so a report passed from agency to agency was
    never offered to the Ombudsman; the reporter has waited since the first disposition, and the offer comes then."""
    routing = routing_at(wib(2026, 3, 2, 10))
    accepted_by_kupang(routing)
    first_offer_due = routing.state("LAP-1").ombudsman_offer_due
    routing.advance(days=40)
    routing.append("LAP-1", DispositionReturned(agency_id=KUPANG, reason="Bukan wewenang kota.",
                                                suggested_agency_id=MALANG), by=KUPANG_ADMIN)
    dispose(routing, "LAP-1", MALANG)
    routing.append("LAP-1", DispositionAccepted(agency_id=MALANG),
                   FollowUpPosted(follow_up_id="fu-1", text="Sedang ditangani."), by=agency_principal(MALANG))
    assert routing.state("LAP-1").ombudsman_offer_due == first_offer_due
    routing.at(first_offer_due + timedelta(hours=1))
    routing.tick()
    [offer] = of_kind(routing.escalations("LAP-1"), "ombudsman_offer")
    assert (offer["from_level"], offer["to_level"]) == ("agency", "agency")
    assert "disposisi pertama" in offer["reason"]


def test_a_report_disposed_again_after_the_offer_is_not_offered_again(routing_at):
    """The offer is made once: a disposition after it starts no new one."""
    routing = routing_at(wib(2026, 3, 2, 10))
    accepted_by_kupang(routing)
    routing.at(routing.state("LAP-1").ombudsman_offer_due + timedelta(hours=1))
    routing.tick()
    routing.append("LAP-1", DispositionReturned(agency_id=KUPANG, reason="Bukan wewenang kota."), by=KUPANG_ADMIN)
    dispose(routing, "LAP-1", MALANG)
    routing.advance(days=200)
    routing.tick()
    assert len(of_kind(routing.escalations("LAP-1"), "ombudsman_offer")) == 1


# -- nothing escalates on a report the Ombudsman holds, at any level (session 30) --------------------------------

PERWAKILAN_NTT = f"{OMBUDSMAN_AGENCY}/perwakilan-ntt"


def test_a_unit_of_the_ombudsman_that_misses_a_deadline_on_a_report_taken_over_from_routing_escalates_nowhere(
    routing_at,
):
    """A report back with routing is taken over by a disposition to the Ombudsman, at the agency level; the
    Ombudsman's liaison hands it to its Perwakilan NTT (a unit the national admin registered), which lets the
    follow-up deadline pass. The unit's level went up to the Ombudsman itself as a red mark with a new deadline,
    while on a report taken over from an agency (level ombudsman, which an assignment keeps) nothing escalates, nor
    does `lapor.complaint.red_mark_pending` expect a mark there (followup could close the report before it)."""
    routing = routing_at(wib(2026, 3, 2, 10))
    routing.store.append(agency_stream(PERWAKILAN_NTT), [AgencyRegistered(
        agency_id=PERWAKILAN_NTT, name="Ombudsman RI Perwakilan Nusa Tenggara Timur", parent_id=OMBUDSMAN_AGENCY,
        kind=AgencyKind.unit).to_new_event()], NO_STREAM)
    accepted_by_kupang(routing)
    routing.append("LAP-1", DispositionReturned(agency_id=KUPANG, reason="Bukan wewenang kota."), by=KUPANG_ADMIN)
    routing.at(routing.state("LAP-1").ombudsman_offer_due + timedelta(hours=1))
    routing.tick()
    routing.append("LAP-1", OmbudsmanConsentGiven(), by=REPORTER)
    routing.tick()
    ombudsman_liaison = agency_principal(OMBUDSMAN_AGENCY, Role.liaison)
    routing.append("LAP-1", DispositionAccepted(agency_id=OMBUDSMAN_AGENCY), by=ombudsman_liaison)
    [assigned] = decide_assign(routing.state("LAP-1"), Assign(unit_id=PERWAKILAN_NTT), routing.clock.now(),
                               Directory(routing.store))
    routing.append("LAP-1", assigned, by=ombudsman_liaison)
    taken = routing.state("LAP-1")
    assert (taken.agency_id, taken.unit_id, taken.level) == (OMBUDSMAN_AGENCY, PERWAKILAN_NTT, "unit")
    routing.at(taken.follow_up_due + timedelta(days=1))
    assert routing.tick() == 0
    assert of_kind(routing.escalations("LAP-1"), "follow_up_overdue") == []
