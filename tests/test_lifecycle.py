"""The complaint lifecycle: legal paths, illegal transitions, and properties of random histories."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import hypothesis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lapor.clock import ManualClock
from lapor.complaint import (
    OPEN_STATUSES,
    TERMINAL_STATUSES,
    ComplaintState,
    IllegalTransition,
    Level,
    PendingEvent,
    Status,
    VersionGap,
    allowed_event_types,
    ensure_allowed,
    evolve,
    fold,
    initial_state,
    replay,
)
from lapor.principal import NATIONAL_ADMIN_AGENCY, OMBUDSMAN_AGENCY
from lapor.store import NewEvent, open_store
from schemas import UpcastError
from schemas.events import (
    COMPLAINT_EVENTS,
    ComplaintArchived,
    ComplaintAssigned,
    ComplaintClosed,
    ComplaintDisposed,
    ComplaintEscalated,
    ComplaintPended,
    ComplaintReopened,
    ComplaintResolved,
    ComplaintVerified,
    DispositionAccepted,
    DispositionReturned,
    DuplicateMarked,
    EscalationKind,
    EventData,
    FeedbackGiven,
    FollowUpPosted,
    InformationProvided,
    OmbudsmanConsentGiven,
)
from tests.event_examples import T0, TRACKING_ID, due, submitted

KUPANG = "pemda-53.71"
NTT = "pemda-53"


class Story:
    """Given/when helper: events happen one hour apart and are folded as they are told."""

    def __init__(self) -> None:
        self.state = initial_state(TRACKING_ID)
        self.events: list[PendingEvent] = []
        self.at = T0

    def then(self, *events: EventData) -> Story:
        for event in events:
            pending = self.pending(event)
            self.state = evolve(self.state, pending)
            self.events.append(pending)
            self.at += timedelta(hours=1)
        return self

    def pending(self, event: EventData) -> PendingEvent:
        return PendingEvent.from_model(event, self.state.version + 1, self.at)

    def attempt(self, event: EventData) -> ComplaintState:
        return evolve(self.state, self.pending(event))


def verified() -> ComplaintVerified:
    return ComplaintVerified(classification="pengaduan", category="infrastruktur", tags=("jalan",))


def disposed(agency_id: str = KUPANG) -> ComplaintDisposed:
    return ComplaintDisposed(agency_id=agency_id, follow_up_due=due(8), ombudsman_offer_due=due(90))


def follow_up(public: bool = True, n: int = 1) -> FollowUpPosted:
    return FollowUpPosted(follow_up_id=f"fu-{n}", text="Sedang ditangani.", public=public)


def resolved() -> ComplaintResolved:
    return ComplaintResolved(resolution="Lubang sudah ditambal.", feedback_due=due(20))


def escalation(kind: str, from_level: str, to_level: str, **fields: object) -> ComplaintEscalated:
    return ComplaintEscalated(
        kind=kind, reason="Batas waktu terlewati.", from_level=from_level, to_level=to_level, **fields
    )


def in_progress_story() -> Story:
    return Story().then(submitted(), verified(), disposed(), DispositionAccepted(agency_id=KUPANG))


def resolved_story() -> Story:
    return in_progress_story().then(follow_up(), resolved())


def offered_story() -> Story:
    return in_progress_story().then(escalation("ombudsman_offer", "agency", "agency", automatic=True))


# -- legal paths ------------------------------------------------------------------------------------------


def test_a_new_report_waits_for_verification_with_routing():
    state = Story().then(submitted(channel="sms", suggested_agency_id=KUPANG)).state
    assert (state.status, state.level, state.agency_id, state.owner) == (
        Status.submitted,
        Level.national,
        None,
        NATIONAL_ADMIN_AGENCY,
    )
    assert state.submitted_at == T0
    assert state.verification_due == due(3)
    assert state.suggested_agency_id == KUPANG
    assert state.reporter_token_hash == submitted().reporter_token_hash
    assert state.is_open


def test_a_report_travels_from_submission_to_closing_with_a_satisfied_reporter():
    story = Story().then(submitted(), verified())
    assert story.state.status is Status.verified
    assert story.state.verification_due is None  # verified in time: nothing left to wait for

    story.then(disposed())
    assert (story.state.status, story.state.agency_id, story.state.level, story.state.owner) == (
        Status.disposed,
        KUPANG,
        Level.agency,
        KUPANG,
    )
    assert (story.state.follow_up_due, story.state.ombudsman_offer_due) == (due(8), due(90))

    story.then(DispositionAccepted(agency_id=KUPANG), ComplaintAssigned(unit_id=f"{KUPANG}/dpupr"))
    assert (story.state.status, story.state.unit_id, story.state.level) == (
        Status.in_progress,
        f"{KUPANG}/dpupr",
        Level.unit,
    )

    posted_at = story.at
    story.then(follow_up(), resolved())
    assert story.state.first_follow_up_at == posted_at
    assert story.state.follow_up_count == 1
    assert (story.state.status, story.state.feedback_due) == (Status.resolved, due(20))

    story.then(FeedbackGiven(satisfied=True, rating=5), ComplaintClosed(reason="satisfied"))
    state = story.state
    assert state.status is Status.closed
    assert (state.feedback.satisfied, state.feedback.rating) == (True, 5)
    assert state.close_reason == "satisfied"
    assert state.closed_at == story.at - timedelta(hours=1)
    assert not state.is_open
    assert state.version == 8


def test_report_pended_for_information_goes_back_to_verification_when_the_reporter_answers():
    story = Story().then(submitted(), ComplaintPended(information_requested="Nomor rumah?", archive_due=due(33)))
    assert (story.state.status, story.state.archive_due, story.state.verification_due) == (
        Status.pended,
        due(33),
        None,
    )
    assert story.state.information_requested == "Nomor rumah?"

    story.then(InformationProvided(text="Nomor 17.", verification_due=due(6)))
    assert (story.state.status, story.state.verification_due, story.state.archive_due) == (
        Status.submitted,
        due(6),
        None,
    )


def test_silent_pended_report_is_archived_for_good():
    story = Story().then(
        submitted(),
        ComplaintPended(information_requested="Lokasi persisnya?", archive_due=due(33)),
        ComplaintArchived(reason="Tidak ada jawaban dalam 30 hari.", automatic=True),
    )
    assert story.state.status is Status.archived
    assert story.state.archive_due is None
    assert not story.state.is_open
    assert allowed_event_types(story.state) == []


def test_report_returned_as_not_our_authority_goes_back_to_routing_and_each_bounce_is_counted():
    story = Story().then(submitted(), verified(), disposed())
    story.then(DispositionReturned(agency_id=KUPANG, reason="Jalan nasional.", suggested_agency_id="kemenpu"))
    state = story.state
    assert (state.status, state.agency_id, state.level, state.owner) == (
        Status.returned,
        None,
        Level.national,
        NATIONAL_ADMIN_AGENCY,
    )
    assert (state.returned_from, state.return_reason, state.suggested_agency_id) == (
        KUPANG,
        "Jalan nasional.",
        "kemenpu",
    )
    assert state.bounce_count == 0

    story.then(disposed("kemenpu"), DispositionAccepted(agency_id="kemenpu"))
    assert (story.state.agency_id, story.state.bounce_count) == ("kemenpu", 1)

    story.then(DispositionReturned(agency_id="kemenpu", reason="Jalan provinsi."), disposed(NTT))
    assert (story.state.status, story.state.agency_id, story.state.bounce_count) == (Status.disposed, NTT, 2)
    assert story.state.accepted_at is None  # the new agency has not accepted yet


def test_internal_notes_do_not_count_as_the_follow_up_the_reporter_waits_for():
    story = in_progress_story().then(follow_up(public=False))
    assert story.state.follow_up_count == 1
    assert story.state.first_follow_up_at is None
    assert story.state.follow_up_due == due(8)

    story.then(follow_up(public=True, n=2))
    assert story.state.first_follow_up_at is not None
    assert story.state.follow_up_due is None


def test_overdue_follow_up_escalates_one_level_up_with_a_new_deadline():
    story = in_progress_story().then(ComplaintAssigned(unit_id=f"{KUPANG}/dpupr"))
    story.then(escalation("follow_up_overdue", "unit", "agency", automatic=True, follow_up_due=due(15)))
    state = story.state
    assert (state.status, state.level, state.agency_id, state.follow_up_due) == (
        Status.in_progress,
        Level.agency,
        KUPANG,
        due(15),
    )
    [record] = state.escalations
    assert (record.kind, record.from_level, record.to_level) == ("follow_up_overdue", Level.unit, Level.agency)

    story.then(escalation("follow_up_overdue", "agency", "regional", to_agency_id=NTT))
    assert story.state.level is Level.regional
    assert story.state.agency_id == KUPANG  # still the agency's to act on; the province now watches
    assert story.state.follow_up_due == due(15)  # no new deadline given: the old one stands


def test_an_assignment_says_the_level_it_leaves_the_report_at_and_without_it_the_units():
    story = in_progress_story().then(escalation("follow_up_overdue", "agency", "regional", to_agency_id=NTT))
    story.then(ComplaintAssigned(unit_id=f"{KUPANG}/dpupr", level="regional"))
    assert (story.state.level, story.state.unit_id) == (Level.regional, f"{KUPANG}/dpupr")
    # Recorded before the field existed: the unit's level, and the escalations written after it from there fold
    # as they always did (a stored history must not become unreadable).
    old = in_progress_story().then(escalation("follow_up_overdue", "agency", "regional", to_agency_id=NTT))
    old.then(ComplaintAssigned(unit_id=f"{KUPANG}/dpupr"))
    assert old.state.level is Level.unit
    old.then(escalation("follow_up_overdue", "unit", "agency", automatic=True))
    assert old.state.level is Level.agency


@pytest.mark.parametrize("level", ["ombudsman", "national", "agency"])
def test_an_assignment_may_keep_only_the_level_the_report_is_at(level):
    """Any other would move the report where no escalation took it (`ombudsman` without consent stopped it from
    ever escalating again)."""
    story = in_progress_story().then(escalation("follow_up_overdue", "agency", "regional", to_agency_id=NTT))
    with pytest.raises(IllegalTransition, match="it keeps level"):
        story.then(ComplaintAssigned(unit_id=f"{KUPANG}/dpupr", level=level))
    assert story.state.level is Level.regional


def test_dissatisfied_reporter_reopens_the_report_and_may_judge_the_next_resolution():
    story = resolved_story().then(FeedbackGiven(satisfied=False, rating=1, comment="Belum diperbaiki."))
    story.then(ComplaintReopened(reason="Belum diperbaiki.", follow_up_due=due(40)))
    state = story.state
    assert (state.status, state.reopen_count, state.follow_up_due) == (Status.in_progress, 1, due(40))
    assert (state.resolution, state.resolved_at, state.feedback, state.feedback_due) == (None, None, None, None)

    story.then(resolved(), FeedbackGiven(satisfied=True, rating=4))
    assert story.state.feedback.rating == 4


def test_silence_after_a_resolution_closes_the_report():
    story = resolved_story().then(ComplaintClosed(reason="no_response"))
    assert (story.state.status, story.state.close_reason, story.state.feedback) == (
        Status.closed,
        "no_response",
        None,
    )
    assert story.state.resolved_at is not None
    assert story.state.feedback_due is None


def test_ombudsman_takes_over_after_the_offer_and_the_reporters_consent():
    story = offered_story()
    assert story.state.ombudsman_offered
    assert story.state.ombudsman_offer_due is None  # the offer was made
    assert story.state.level is Level.agency

    story.then(OmbudsmanConsentGiven())
    assert story.state.ombudsman_consent

    story.then(escalation("ombudsman", "agency", "ombudsman", to_agency_id=OMBUDSMAN_AGENCY))
    state = story.state
    assert (state.level, state.agency_id, state.owner, state.status) == (
        Level.ombudsman,
        OMBUDSMAN_AGENCY,
        OMBUDSMAN_AGENCY,
        Status.in_progress,
    )
    assert [e.kind for e in state.escalations] == ["ombudsman_offer", "ombudsman"]


def test_duplicate_report_points_at_the_original():
    story = Story().then(submitted(), DuplicateMarked(duplicate_of="LAP-2026-000099"))
    assert (story.state.status, story.state.duplicate_of, story.state.verification_due) == (
        Status.duplicate,
        "LAP-2026-000099",
        None,
    )


def test_verification_corrects_title_and_classification_but_keeps_the_reporters_title_by_default():
    story = Story().then(submitted(kind="pengaduan"))
    relabelled = story.attempt(
        ComplaintVerified(classification="aspirasi", category="tata-kota", title="Usulan trotoar Jl. Frans Seda")
    )
    assert (relabelled.kind, relabelled.category, relabelled.title) == (
        "aspirasi",
        "tata-kota",
        "Usulan trotoar Jl. Frans Seda",
    )
    assert story.attempt(verified()).title == submitted().title


# -- illegal transitions -----------------------------------------------------------------------------------


def _closed_story() -> Story:
    return resolved_story().then(ComplaintClosed(reason="satisfied"))


ILLEGAL = [
    ("dispose before verify", lambda: Story().then(submitted()), disposed(), Status.submitted),
    ("verify twice", lambda: Story().then(submitted(), verified()), verified(), Status.verified),
    ("accept after close", _closed_story, DispositionAccepted(agency_id=KUPANG), Status.closed),
    (
        "feedback twice",
        lambda: resolved_story().then(FeedbackGiven(satisfied=True, rating=5)),
        FeedbackGiven(satisfied=False, rating=1),
        Status.resolved,
    ),
    ("consent without offer", in_progress_story, OmbudsmanConsentGiven(), Status.in_progress),
    ("consent twice", lambda: offered_story().then(OmbudsmanConsentGiven()), OmbudsmanConsentGiven(), None),
    (
        "offer twice",
        offered_story,
        escalation("ombudsman_offer", "agency", "agency"),
        Status.in_progress,
    ),
    (
        "ombudsman without consent",
        offered_story,
        escalation("ombudsman", "agency", "ombudsman", to_agency_id=OMBUDSMAN_AGENCY),
        Status.in_progress,
    ),
    ("submit twice", lambda: Story().then(submitted()), submitted(), Status.submitted),
    ("history that does not start with a submission", Story, verified(), None),
    ("reopen while in progress", in_progress_story, ComplaintReopened(reason="x", follow_up_due=due(9)), None),
    (
        "information nobody asked for",
        lambda: Story().then(submitted()),
        InformationProvided(text="Tambahan.", verification_due=due(5)),
        Status.submitted,
    ),
    ("archive after verification", lambda: Story().then(submitted(), verified()), ComplaintArchived(reason="x"), None),
    (
        "assign before acceptance",
        lambda: Story().then(submitted(), verified(), disposed()),
        ComplaintAssigned(unit_id=f"{KUPANG}/dpupr"),
        Status.disposed,
    ),
    ("follow-up after resolution", resolved_story, follow_up(n=2), Status.resolved),
    ("close without resolution", in_progress_story, ComplaintClosed(reason="administrative"), None),
    (
        "escalation from a level the report is not at",
        in_progress_story,
        escalation("follow_up_overdue", "unit", "agency"),
        Status.in_progress,
    ),
    ("escalation down to a unit never assigned", in_progress_story, escalation("manual", "agency", "unit"), None),
    (
        "regional escalation naming no coordinator",
        in_progress_story,
        escalation("follow_up_overdue", "agency", "regional"),
        None,
    ),
    (
        "agency level while routing holds the report",
        lambda: Story().then(submitted()),
        escalation("verification_overdue", "national", "agency"),
        Status.submitted,
    ),
    ("escalation after closing", _closed_story, escalation("manual", "agency", "national"), Status.closed),
]


@pytest.mark.parametrize(("case", "given", "event", "status"), ILLEGAL, ids=[case[0] for case in ILLEGAL])
def test_illegal_transition_is_refused_and_changes_nothing(case, given, event, status):
    story = given()
    before = dict(vars(story.state))
    with pytest.raises(IllegalTransition) as refused:
        story.attempt(event)
    assert refused.value.event_type == event.event_type()
    assert refused.value.status == story.state.status
    if status is not None:
        assert refused.value.status is status
    assert f"{event.event_type()} is not allowed while the report is" in str(refused.value)
    assert vars(story.state) == before


def test_refusal_message_names_the_event_and_the_status():
    with pytest.raises(IllegalTransition) as refused:
        Story().then(submitted()).attempt(disposed())
    assert str(refused.value) == "ComplaintDisposed is not allowed while the report is submitted"


def test_refusal_explains_a_missing_consent():
    with pytest.raises(IllegalTransition, match="has not consented"):
        offered_story().attempt(escalation("ombudsman", "agency", "ombudsman", to_agency_id=OMBUDSMAN_AGENCY))


def test_ensure_allowed_answers_before_anything_is_decided():
    state = Story().then(submitted()).state
    ensure_allowed(state, "ComplaintVerified")
    with pytest.raises(IllegalTransition, match="ComplaintResolved is not allowed while the report is submitted"):
        ensure_allowed(state, "ComplaintResolved")
    with pytest.raises(IllegalTransition, match="not a complaint event"):
        ensure_allowed(state, "AgencyRegistered")


def test_submission_into_a_stream_of_another_tracking_id_is_refused():
    with pytest.raises(IllegalTransition, match="OTHER-1"):
        Story().attempt(submitted(tracking_id="OTHER-1"))


@pytest.mark.parametrize("version", [2, 0, 1 - 1_000])
def test_event_out_of_sequence_is_a_version_gap(version):
    story = Story().then(submitted())
    with pytest.raises(VersionGap, match="expected event version 1"):
        evolve(story.state, PendingEvent("ComplaintVerified", verified().to_data(), version, story.at))


def test_event_from_a_newer_schema_version_is_not_misread():
    story = Story().then(submitted())
    newer = PendingEvent("ComplaintVerified", verified().to_data(), 1, story.at, schema_version=2)
    with pytest.raises(UpcastError, match="newer than this code"):
        evolve(story.state, newer)


# -- folding -----------------------------------------------------------------------------------------------


def test_fold_of_no_events_is_no_complaint():
    assert fold([]) is None


def test_fold_continues_from_a_known_state():
    story = resolved_story()
    middle = fold(story.events[:3])
    assert fold(story.events[3:], middle) == story.state
    assert fold([], middle) is middle


def test_folding_the_stored_history_gives_the_decided_state(tmp_path):
    story = resolved_story().then(FeedbackGiven(satisfied=True, rating=5), ComplaintClosed(reason="satisfied"))
    clock = ManualClock(T0)
    stream = f"complaint-{TRACKING_ID}"
    with open_store(f"sqlite:///{tmp_path}/events.db", clock=clock) as store:
        for event in story.events:
            clock.set(event.recorded_at)  # the store stamps the time, as it would have at the decision
            store.append(stream, [NewEvent(event.type, dict(event.data))], expected_version=event.version - 1)
        recorded = store.read_stream(stream)
    assert fold(recorded) == story.state
    assert replay(recorded)[TRACKING_ID] == story.state


def test_replay_of_interleaved_complaints_equals_folding_each_alone():
    first = resolved_story()
    second = Story()
    second.state = initial_state("LAP-2026-000124")
    second.then(submitted(tracking_id="LAP-2026-000124"), verified())
    log = [
        _Recorded(f"complaint-{story.state.tracking_id}", event)
        for story, event in sorted(
            [(first, e) for e in first.events] + [(second, e) for e in second.events],
            key=lambda pair: (pair[1].version, pair[0] is second),
        )
    ]
    states = replay(log)
    assert states == {TRACKING_ID: first.state, "LAP-2026-000124": second.state}
    later = replay(
        [_Recorded(f"complaint-{TRACKING_ID}", first.pending(FeedbackGiven(satisfied=True, rating=3)))], states
    )
    assert later[TRACKING_ID].feedback.rating == 3


class _Recorded:
    def __init__(self, stream: str, event: PendingEvent) -> None:
        self.stream = stream
        self.type, self.data, self.version, self.recorded_at = event.type, event.data, event.version, event.recorded_at


# -- properties of random histories -------------------------------------------------------------------------

COMPLAINT_TYPES = [model.event_type() for model in COMPLAINT_EVENTS]
AGENCIES = [KUPANG, NTT, "kemenpu", OMBUDSMAN_AGENCY]
ROUTING_STATUSES = {
    Status.submitted,
    Status.pended,
    Status.verified,
    Status.returned,
    Status.archived,
    Status.duplicate,
}
DEADLINES = ("verification_due", "archive_due", "follow_up_due", "feedback_due", "ombudsman_offer_due")


@st.composite
def plausible_event(draw: st.DrawFn, event_type: str, state: ComplaintState, at: datetime) -> EventData:
    """Valid data for `event_type`, mostly consistent with `state` (so that deep histories happen)."""
    later = st.integers(1, 90).map(lambda days: at + timedelta(days=days))
    agency = st.sampled_from([state.agency_id, *AGENCIES] if state.agency_id else AGENCIES)
    level = st.sampled_from([state.level, state.level, *Level])
    text = st.sampled_from(["Sudah ditinjau.", "Mohon bukti foto.", "Bukan wewenang kami."])
    match event_type:
        case "ComplaintSubmitted":
            tracking_id = draw(st.sampled_from([TRACKING_ID, TRACKING_ID, TRACKING_ID, "LAP-2026-000999"]))
            return submitted(
                tracking_id=tracking_id,
                kind=draw(st.sampled_from(["pengaduan", "aspirasi", "permintaan_informasi"])),
                anonymous=draw(st.booleans()),
                confidential=draw(st.booleans()),
                verification_due=draw(later),
            )
        case "ComplaintVerified":
            return ComplaintVerified(
                classification=draw(st.sampled_from(["pengaduan", "aspirasi"])),
                category=draw(st.sampled_from(["infrastruktur", "kesehatan"])),
                title=draw(st.none() | st.just("Judul baru")),
            )
        case "ComplaintPended":
            return ComplaintPended(information_requested=draw(text), archive_due=draw(later))
        case "InformationProvided":
            return InformationProvided(text=draw(text), verification_due=draw(later))
        case "ComplaintArchived":
            return ComplaintArchived(reason=draw(text), automatic=draw(st.booleans()))
        case "DuplicateMarked":
            return DuplicateMarked(duplicate_of="LAP-2026-000099")
        case "ComplaintDisposed":
            return ComplaintDisposed(agency_id=draw(agency), follow_up_due=draw(later), ombudsman_offer_due=draw(later))
        case "DispositionAccepted":
            return DispositionAccepted(agency_id=draw(agency))
        case "DispositionReturned":
            return DispositionReturned(
                agency_id=draw(agency), reason=draw(text), suggested_agency_id=draw(st.none() | agency)
            )
        case "ComplaintAssigned":
            return ComplaintAssigned(unit_id=f"{draw(agency)}/{draw(st.sampled_from(['dinkes', 'dpupr']))}")
        case "FollowUpPosted":
            return FollowUpPosted(follow_up_id=f"fu-{state.version}", text=draw(text), public=draw(st.booleans()))
        case "ComplaintEscalated":
            takeover = [EscalationKind.ombudsman] * 5 if state.ombudsman_consent else []
            kind = draw(st.sampled_from(takeover + list(EscalationKind)))
            to_ombudsman = kind is EscalationKind.ombudsman and draw(st.integers(0, 4)) > 0
            return ComplaintEscalated(
                kind=kind,
                reason=draw(text),
                from_level=draw(level),
                to_level=Level.ombudsman if to_ombudsman else draw(level),
                to_agency_id=OMBUDSMAN_AGENCY if to_ombudsman else draw(st.none() | agency),
                automatic=draw(st.booleans()),
                follow_up_due=draw(st.none() | later),
            )
        case "ComplaintResolved":
            return ComplaintResolved(resolution=draw(text), feedback_due=draw(later))
        case "FeedbackGiven":
            return FeedbackGiven(satisfied=draw(st.booleans()), rating=draw(st.integers(1, 5)))
        case "ComplaintReopened":
            return ComplaintReopened(reason=draw(text), follow_up_due=draw(later))
        case "ComplaintClosed":
            return ComplaintClosed(reason=draw(st.sampled_from(["satisfied", "no_response", "administrative"])))
        case "OmbudsmanConsentGiven":
            return OmbudsmanConsentGiven()
    raise AssertionError(f"no strategy for {event_type}")


ENDINGS = {"ComplaintArchived", "DuplicateMarked", "ComplaintClosed"}


@st.composite
def steered_event_type(draw: st.DrawFn, state: ComplaintState, endings: bool) -> str:
    """Mostly event types the state accepts and that keep the report going, so that histories go deep; when
    `endings`, also the accepted ones that end it; and sometimes any type at all, to probe the refusals."""
    allowed = allowed_event_types(state)
    onward = [event_type for event_type in allowed if event_type not in ENDINGS]
    roll = draw(st.integers(0, 9))
    if roll < 8 and onward:
        return draw(st.sampled_from(onward))
    if roll == 8 and endings and allowed:
        return draw(st.sampled_from(allowed))
    return draw(st.sampled_from(COMPLAINT_TYPES))


def assert_consistent(state: ComplaintState, accepted: list[PendingEvent], statuses_before: list[Status | None]):
    types = [event.type for event in accepted]
    assert state.version == len(accepted) - 1
    assert state.tracking_id == TRACKING_ID
    assert state.submitted_at == accepted[0].recorded_at
    assert state.last_event_at == accepted[-1].recorded_at
    # An agency holds the report exactly when it was disposed and not returned; routing holds it nationally.
    assert (state.agency_id is None) == (state.status in ROUTING_STATUSES)
    if state.agency_id is None:
        assert state.level is Level.national
        assert state.unit_id is None
    if state.level is Level.unit:
        assert state.unit_id is not None
    bounces = sum(
        1
        for event, before in zip(accepted, statuses_before, strict=True)
        if event.type == "ComplaintDisposed" and before is Status.returned
    )
    assert state.bounce_count == bounces
    assert len(state.escalations) == types.count("ComplaintEscalated")
    assert state.follow_up_count == types.count("FollowUpPosted")
    assert state.reopen_count == types.count("ComplaintReopened")
    first_public = next(
        (e.recorded_at for e in accepted if e.type == "FollowUpPosted" and e.data["public"]),
        None,
    )
    assert state.first_follow_up_at == first_public
    if state.status is Status.closed:
        assert state.resolved_at is not None
        assert state.closed_at is not None
        assert state.close_reason is not None
    if state.status in TERMINAL_STATUSES:
        assert not state.is_open
        assert all(getattr(state, name) is None for name in DEADLINES)
    if state.status is Status.resolved:
        assert state.resolution is not None
        assert state.feedback_due is not None or state.feedback is not None
    if state.status is Status.pended:
        assert state.archive_due is not None
    if state.status is Status.submitted:
        assert state.verification_due is not None
    if state.feedback is not None:
        assert state.status in {Status.resolved, Status.closed}
    if state.ombudsman_consent:
        assert state.ombudsman_offered
    if state.level is Level.ombudsman:
        assert state.ombudsman_consent
    assert types.count("ComplaintSubmitted") == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_every_accepted_history_folds_to_a_consistent_state(data):
    state = initial_state(TRACKING_ID)
    accepted: list[PendingEvent] = []
    statuses_before: list[Status | None] = []
    at = T0
    endings = data.draw(st.booleans(), label="endings")
    for _ in range(data.draw(st.integers(1, 45), label="steps")):
        at += timedelta(hours=data.draw(st.integers(0, 200)))
        event_type = data.draw(steered_event_type(state, endings), label="type")
        event = PendingEvent.from_model(data.draw(plausible_event(event_type, state, at)), state.version + 1, at)
        before = dict(vars(state))
        try:
            new_state = evolve(state, event)
        except IllegalTransition:
            assert vars(state) == before  # a refused event changes nothing
            continue
        assert state.status not in TERMINAL_STATUSES, "a closed, archived or duplicate report accepted an event"
        statuses_before.append(state.status)
        accepted.append(event)
        state = new_state
        assert_consistent(state, accepted, statuses_before)
    # Coverage of the generator, shown by `pytest --hypothesis-show-statistics`.
    hypothesis.event(f"ends {state.status}")
    taken_over = any(record.kind == "ombudsman" for record in state.escalations)
    hypothesis.event(f"bounced={state.bounce_count > 0} reopened={state.reopen_count > 0} ombudsman={taken_over}")
    if accepted:
        assert fold(accepted) == state
        cut = data.draw(st.integers(0, len(accepted)), label="cut")
        assert fold(accepted[cut:], fold(accepted[:cut])) == state


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_an_open_report_can_always_be_escalated_by_hand(data):
    """No open report is ever stuck: a person can always raise it where it stands."""
    story = Story().then(submitted())
    state, at = story.state, story.at
    for _ in range(data.draw(st.integers(1, 30))):
        at += timedelta(hours=5)
        if state.status in TERMINAL_STATUSES:
            break
        event_type = data.draw(steered_event_type(state, endings=True))
        event = PendingEvent.from_model(data.draw(plausible_event(event_type, state, at)), state.version + 1, at)
        try:
            state = evolve(state, event)
        except IllegalTransition:
            continue
    if state.status in OPEN_STATUSES:
        manual = escalation("manual", state.level, state.level, to_agency_id=NTT)
        assert evolve(state, PendingEvent.from_model(manual, state.version + 1, at)).escalations[-1].kind == "manual"
    else:
        assert state.status in TERMINAL_STATUSES
        for event_type in COMPLAINT_TYPES:
            with pytest.raises(IllegalTransition):
                ensure_allowed(state, event_type)


def test_lifecycle_document_covers_every_complaint_event():
    document = (Path(__file__).parents[1] / "docs" / "lifecycle.md").read_text(encoding="utf-8")
    missing = [event_type for event_type in COMPLAINT_TYPES if f"| {event_type} |" not in document]
    assert not missing, f"docs/lifecycle.md has no row for {missing}"
