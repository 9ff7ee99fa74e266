"""Intake's decisions, without a server: what each one records, and when the report's state refuses it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lapor.calendar import WorkingCalendar
from lapor.complaint import IllegalTransition, PendingEvent, fold
from lapor.policy import Sp4nPolicy
from lapor.problems import ValidationProblem
from schemas.events import (
    Channel,
    ComplaintDisposed,
    ComplaintEscalated,
    ComplaintPended,
    ComplaintReopened,
    ComplaintResolved,
    ComplaintVerified,
    DispositionAccepted,
    EscalationKind,
    EventData,
    FeedbackGiven,
    Level,
)
from services.intake.decide import (
    SubmitComplaint,
    decide_feedback,
    decide_information,
    decide_ombudsman_consent,
    decide_submission,
)

POLICY = Sp4nPolicy(calendar=WorkingCalendar())
# Friday 6 March 2026, 15:00 WIB
FRIDAY = datetime(2026, 3, 6, 8, 0, tzinfo=UTC)

COMMAND = SubmitComplaint(
    tracking_id="04HM-ASW9-K",
    kind="pengaduan",
    title="Lampu jalan mati",
    body="Lampu jalan di Jl. El Tari mati sejak dua bulan.",
    region_code="53.71",
    channel=Channel.web,
    reporter_token_hash="a" * 64,
)


def history(*events: EventData, at: datetime = FRIDAY):
    """The report's state after submission and `events`, each a minute after the last."""
    submitted = decide_submission(None, COMMAND, at, POLICY)
    pending = [submitted, *events]
    return fold(PendingEvent.from_model(e, n, at + timedelta(minutes=n)) for n, e in enumerate(pending))


def disposed() -> list[EventData]:
    return [
        ComplaintVerified(classification="pengaduan", category="Infrastruktur"),
        ComplaintDisposed(agency_id="pemda-53.71", follow_up_due=FRIDAY, ombudsman_offer_due=FRIDAY),
    ]


def resolved() -> list[EventData]:
    return [
        *disposed(),
        DispositionAccepted(agency_id="pemda-53.71"),
        ComplaintResolved(resolution="Lampu sudah diganti.", feedback_due=FRIDAY),
    ]


def test_a_report_submitted_on_friday_afternoon_must_be_verified_by_wednesday():
    event = decide_submission(None, COMMAND, FRIDAY, POLICY)
    assert event.verification_due.date().isoformat() == "2026-03-11"
    assert event.tracking_id == COMMAND.tracking_id


def test_a_taken_tracking_id_is_refused():
    with pytest.raises(IllegalTransition, match="already taken"):
        decide_submission(history(), COMMAND, FRIDAY, POLICY)


def test_masking_that_pushes_a_title_past_its_limit_is_a_validation_problem_not_a_crash():
    too_long = SubmitComplaint(**{**COMMAND.__dict__, "title": "x" * 201})
    with pytest.raises(ValidationProblem, match="title"):
        decide_submission(None, too_long, FRIDAY, POLICY)


def test_information_sends_a_pended_report_back_to_verification_with_a_fresh_deadline():
    state = history(ComplaintPended(information_requested="Foto lokasi?", archive_due=POLICY.archive_due(FRIDAY)))
    monday = FRIDAY + timedelta(days=3)
    event = decide_information(state, "Foto terlampir.", (), monday, POLICY)
    assert event.verification_due == POLICY.verification_due(monday)


def test_information_after_the_pending_period_is_refused_for_the_silence_archived_the_report():
    state = history(ComplaintPended(information_requested="Foto lokasi?", archive_due=FRIDAY))
    with pytest.raises(IllegalTransition, match="time to add the information ended"):
        decide_information(state, "Foto terlampir.", (), FRIDAY + timedelta(days=3), POLICY)
    assert decide_information(state, "Foto terlampir.", (), FRIDAY, POLICY).text == "Foto terlampir."


def test_information_is_refused_unless_the_report_is_pended():
    with pytest.raises(IllegalTransition, match="submitted"):
        decide_information(history(), "Tambahan.", (), FRIDAY, POLICY)


def test_feedback_answers_a_resolution_once():
    state = history(*resolved())
    assert decide_feedback(state, False, 2, "Masih mati.", FRIDAY) == FeedbackGiven(
        satisfied=False, rating=2, comment="Masih mati."
    )
    with pytest.raises(IllegalTransition, match="already given"):
        decide_feedback(history(*resolved(), FeedbackGiven(satisfied=True, rating=5)), True, 5, None, FRIDAY)


def test_feedback_before_a_resolution_is_refused():
    with pytest.raises(IllegalTransition):
        decide_feedback(history(*disposed()), True, 5, None, FRIDAY)


def test_feedback_after_the_answers_window_is_refused():
    """The silence closed the report when the window ended; an answer after it reopened the report or not by
    whether followup's closing loop had appended the closing yet."""
    state = history(*resolved())  # feedback_due: FRIDAY
    assert decide_feedback(state, True, 5, None, state.feedback_due).satisfied is True  # its last moment
    with pytest.raises(IllegalTransition, match="time to answer this resolution ended"):
        decide_feedback(state, False, 1, "Belum beres.", state.feedback_due + timedelta(seconds=1))


def test_ombudsman_consent_needs_the_offer():
    with pytest.raises(IllegalTransition, match="not been offered"):
        decide_ombudsman_consent(history(*disposed()), FRIDAY)
    offered = history(
        *disposed(),
        ComplaintEscalated(
            kind=EscalationKind.ombudsman_offer, reason="60 hari", from_level=Level.agency, to_level=Level.agency
        ),
    )
    assert decide_ombudsman_consent(offered, FRIDAY).event_type() == "OmbudsmanConsentGiven"


def test_ombudsman_consent_waits_for_the_answer_to_a_resolution():
    """Offered while unresolved, then resolved: the reporter answers the resolution first (session 27). Consent taken
    then handed a resolved report to the Ombudsman, which could do nothing with it; reopened, consent is taken."""
    offer = ComplaintEscalated(
        kind=EscalationKind.ombudsman_offer, reason="60 hari", from_level=Level.agency, to_level=Level.agency
    )
    accepted = [*disposed(), offer, DispositionAccepted(agency_id="pemda-53.71")]
    resolution = ComplaintResolved(resolution="Lampu sudah diganti.", feedback_due=FRIDAY + timedelta(days=14))
    with pytest.raises(IllegalTransition, match="answer the resolution first"):
        decide_ombudsman_consent(history(*accepted, resolution), FRIDAY)
    reopened = history(
        *accepted, resolution, FeedbackGiven(satisfied=False, rating=1),
        ComplaintReopened(reason="Lampu mati lagi.", follow_up_due=FRIDAY + timedelta(days=7)),
    )
    assert decide_ombudsman_consent(reopened, FRIDAY).event_type() == "OmbudsmanConsentGiven"
