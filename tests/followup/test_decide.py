"""The followup decisions as pure functions: a folded state, a command and a time in, events or a refusal out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lapor.calendar import WorkingCalendar
from lapor.complaint import ComplaintState, IllegalTransition, PendingEvent, Status, evolve, fold
from lapor.policy import Sp4nPolicy
from lapor.problems import ValidationProblem
from schemas.events import (
    CloseReason,
    ComplaintAssigned,
    ComplaintClosed,
    ComplaintDisposed,
    ComplaintEscalated,
    ComplaintReopened,
    ComplaintResolved,
    ComplaintVerified,
    DispositionAccepted,
    DispositionReturned,
    EventData,
    FeedbackGiven,
    FollowUpPosted,
    Level,
)
from services.followup.decide import (
    NO_REASON_GIVEN,
    Accept,
    Assign,
    PostFollowUp,
    Resolve,
    Return,
    decide_accept,
    decide_assign,
    decide_close_in_silence,
    decide_follow_up,
    decide_on_feedback,
    decide_resolve,
    decide_return,
)
from tests.event_examples import submitted

MONDAY = datetime(2031, 6, 9, 2, 0, tzinfo=UTC)  # 09:00 WIB; no day off until 2 July
POLICY = Sp4nPolicy(calendar=WorkingCalendar())
KUPANG, DINKES = "pemda-53.71", "pemda-53.71/dinkes"


class Directory:
    def __init__(self, *active: str) -> None:
        self.active = set(active)

    def is_active(self, agency_id: str) -> bool:
        return agency_id in self.active


DIRECTORY = Directory(KUPANG, DINKES, "pemda-53.71/disdik", "kementerian-pu", "pemda-35.73")


def then(state: ComplaintState | None, *events: EventData, at: datetime = MONDAY) -> ComplaintState:
    """`state` (or a new report) after `events`, as the fold sees them."""
    if state is None:
        state = fold([PendingEvent.from_model(submitted(tracking_id="LAP-TEST-1"), 0, at)])
    assert state is not None
    for event in events:
        state = evolve(state, PendingEvent.from_model(event, state.version + 1, at))
    return state


def disposed() -> ComplaintState:
    return then(
        None,
        ComplaintVerified(classification="pengaduan", category="kesehatan"),
        ComplaintDisposed(
            agency_id=KUPANG, follow_up_due=POLICY.follow_up_due(MONDAY),
            ombudsman_offer_due=POLICY.ombudsman_offer_due(MONDAY),
        ),
    )


def in_progress() -> ComplaintState:
    return then(disposed(), DispositionAccepted(agency_id=KUPANG))


def resolved(at: datetime = MONDAY) -> ComplaintState:
    return then(in_progress(), ComplaintResolved(resolution="Sudah ditangani.", feedback_due=POLICY.feedback_due(at)))


def test_accepting_a_disposition_names_the_agency_holding_it():
    [event] = decide_accept(disposed(), Accept(note="Kami tangani."), MONDAY)
    assert event == DispositionAccepted(agency_id=KUPANG, note="Kami tangani.")


def test_a_disposition_is_accepted_once():
    with pytest.raises(IllegalTransition):
        decide_accept(in_progress(), Accept(), MONDAY)


def test_returning_as_bukan_wewenang_carries_the_reason_and_the_suggested_agency():
    [event] = decide_return(
        disposed(), Return(reason="Jalan nasional.", suggested_agency_id="kementerian-pu"), MONDAY, DIRECTORY
    )
    assert event == DispositionReturned(
        agency_id=KUPANG, reason="Jalan nasional.", suggested_agency_id="kementerian-pu"
    )
    assert then(disposed(), event).status is Status.returned


def test_an_agency_cannot_suggest_itself_or_its_own_unit():
    for suggestion in (KUPANG, DINKES):
        with pytest.raises(ValidationProblem, match="assign it inside the agency"):
            decide_return(disposed(), Return(reason="Bukan kami.", suggested_agency_id=suggestion), MONDAY, DIRECTORY)


def test_a_suggested_agency_must_be_in_the_directory():
    with pytest.raises(ValidationProblem, match="not an agency of the directory"):
        decide_return(disposed(), Return(reason="Bukan kami.", suggested_agency_id="kementerian-x"), MONDAY, DIRECTORY)


def test_a_report_is_assigned_to_a_unit_inside_the_agency_after_acceptance():
    with pytest.raises(IllegalTransition):
        decide_assign(disposed(), Assign(unit_id=DINKES), MONDAY, DIRECTORY)
    [event] = decide_assign(in_progress(), Assign(unit_id=DINKES), MONDAY, DIRECTORY)
    assert event == ComplaintAssigned(unit_id=DINKES)


def test_a_unit_of_another_agency_or_the_agency_itself_is_refused():
    for unit in ("pemda-35.73/dinkes", "pemda-53.710/dinkes", KUPANG):
        with pytest.raises(ValidationProblem, match=r"is not a unit of pemda-53\.71$"):
            decide_assign(in_progress(), Assign(unit_id=unit), MONDAY, DIRECTORY)


def test_a_unit_missing_from_the_directory_is_refused():
    with pytest.raises(ValidationProblem, match="not a unit of the directory"):
        decide_assign(in_progress(), Assign(unit_id="pemda-53.71/dishub"), MONDAY, DIRECTORY)


def test_assigning_to_the_unit_already_holding_it_changes_nothing():
    state = then(in_progress(), ComplaintAssigned(unit_id=DINKES))
    assert decide_assign(state, Assign(unit_id=DINKES), MONDAY, DIRECTORY) == []


def test_an_assignment_keeps_the_level_an_escalation_of_this_holding_took_the_report_to():
    """Reassigning to another unit must not bring a unit's escalated report back to the unit's level (the next miss
    climbed to the agency again instead of on to the province), nor an escalated one below where it is watched."""
    fresh = in_progress()
    assert decide_assign(fresh, Assign(unit_id=DINKES), MONDAY, DIRECTORY)[0].level is None  # the unit's
    at_unit = then(fresh, ComplaintAssigned(unit_id=DINKES))
    up = then(at_unit, ComplaintEscalated(kind="follow_up_overdue", reason="Terlambat.", from_level="unit",
                                          to_level="agency", to_agency_id=KUPANG, automatic=True),
              at=MONDAY + timedelta(days=8))
    [moved] = decide_assign(up, Assign(unit_id="pemda-53.71/disdik"), MONDAY, DIRECTORY)
    assert moved.level is Level.agency
    assert then(up, moved).level is Level.agency
    regional = then(fresh, ComplaintEscalated(kind="follow_up_overdue", reason="Terlambat.", from_level="agency",
                                              to_level="regional", to_agency_id="pemda-53", automatic=True))
    assert decide_assign(regional, Assign(unit_id=DINKES), MONDAY, DIRECTORY)[0].level is Level.regional


def test_a_follow_up_names_both_officers_of_a_two_step_approval():
    [event] = decide_follow_up(
        in_progress(), PostFollowUp(text="Petugas meninjau lokasi."), MONDAY, follow_up_id="fu-1",
        drafted_by="admin-kupang", approved_by="liaison-kupang",
    )
    assert isinstance(event, FollowUpPosted)
    assert (event.drafted_by, event.approved_by, event.public) == ("admin-kupang", "liaison-kupang", True)


def test_no_follow_up_before_the_agency_accepts():
    with pytest.raises(IllegalTransition):
        decide_follow_up(disposed(), PostFollowUp(text="Catatan."), MONDAY, follow_up_id="fu-1")


def test_the_reporter_has_ten_working_days_after_a_resolution():
    [event] = decide_resolve(in_progress(), Resolve(resolution="Puskesmas buka kembali."), MONDAY, POLICY)
    assert isinstance(event, ComplaintResolved)
    # Monday 9 June + 10 working days (no day off in between): the end of Monday 23 June, WIB.
    assert event.feedback_due == datetime(2031, 6, 23, 16, 59, 59, 999999, tzinfo=UTC)


def test_a_satisfied_reporter_closes_the_report():
    state = then(resolved(), FeedbackGiven(satisfied=True, rating=5))
    [event] = decide_on_feedback(state, satisfied=True, comment=None, now=MONDAY, policy=POLICY)
    assert event == ComplaintClosed(reason=CloseReason.satisfied)


def test_a_dissatisfied_reporter_reopens_it_with_their_reason_and_a_new_follow_up_clock():
    answered = MONDAY + timedelta(days=2)  # Wednesday 11 June
    state = then(resolved(), FeedbackGiven(satisfied=False, rating=1, comment="Masih tutup."), at=answered)
    [event] = decide_on_feedback(state, satisfied=False, comment="Masih tutup.", now=answered, policy=POLICY)
    assert isinstance(event, ComplaintReopened)
    assert event.reason == "Masih tutup."
    assert event.follow_up_due == datetime(2031, 6, 18, 16, 59, 59, 999999, tzinfo=UTC)  # 5 working days on
    assert then(state, event).status is Status.in_progress


def test_a_dissatisfied_answer_without_words_still_gives_a_reason():
    state = then(resolved(), FeedbackGiven(satisfied=False, rating=2))
    [event] = decide_on_feedback(state, satisfied=False, comment=None, now=MONDAY, policy=POLICY)
    assert isinstance(event, ComplaintReopened)
    assert event.reason == NO_REASON_GIVEN


def test_an_answer_to_a_report_that_moved_on_decides_nothing():
    state = then(resolved(), FeedbackGiven(satisfied=True, rating=5), ComplaintClosed(reason=CloseReason.satisfied))
    assert decide_on_feedback(state, satisfied=True, comment=None, now=MONDAY, policy=POLICY) == []
    assert decide_on_feedback(resolved(), satisfied=True, comment=None, now=MONDAY, policy=POLICY) == []


def test_silence_closes_only_once_the_feedback_window_has_passed():
    state = resolved()
    assert state.feedback_due is not None
    assert decide_close_in_silence(state, state.feedback_due) == []
    [event] = decide_close_in_silence(state, state.feedback_due + timedelta(microseconds=1))
    assert event == ComplaintClosed(reason=CloseReason.no_response)


def test_an_answered_resolution_is_never_closed_for_silence():
    state = then(resolved(), FeedbackGiven(satisfied=False, rating=1, comment="Belum."))
    assert decide_close_in_silence(state, MONDAY + timedelta(days=60)) == []
