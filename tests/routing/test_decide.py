"""Routing's decisions as pure functions: each one, its illegal cases, its deadlines on the real working-day
calendar (weekends, libur nasional, cuti bersama), the escalation chain and the routing proposals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lapor.complaint import IllegalTransition, PendingEvent, Status, evolve, initial_state, red_mark_pending
from lapor.policy import Sp4nPolicy
from schemas.events import (
    ComplaintAssigned,
    ComplaintEscalated,
    ComplaintReopened,
    ComplaintResolved,
    ComplaintSubmitted,
    DispositionAccepted,
    DispositionReturned,
    EventData,
    FollowUpPosted,
    Level,
    OmbudsmanConsentGiven,
)
from services.routing.decide import (
    ArchiveCommand,
    Basis,
    DeadlineKind,
    MarkDuplicateCommand,
    PendCommand,
    RoutingFacts,
    Rule,
    VerifyCommand,
    decide_archive,
    decide_deadline,
    decide_dispose,
    decide_mark_duplicate,
    decide_pend,
    decide_verify,
    next_level,
    propose,
    running_deadlines,
)
from tests.routing.harness import TOKEN_HASH, wib

POLICY = Sp4nPolicy()
TID = "LAP-2026-000001"
KUPANG = "pemda-53.71"
NTT = "pemda-53"


def end_of_day_wib(year: int, month: int, day: int) -> datetime:
    """23:59:59.999999 WIB, the instant a deadline on that day expires."""
    return datetime(year, month, day, 16, 59, 59, 999999, tzinfo=UTC)


class Story:
    """A report's history written event by event, each at its own moment."""

    def __init__(
        self,
        at: datetime,
        *,
        tracking_id: str = TID,
        category: str | None = "Infrastruktur",
        region_code: str = "53.71",
    ) -> None:
        self.state = initial_state(tracking_id)
        self.add(
            at,
            ComplaintSubmitted(
                tracking_id=tracking_id,
                kind="pengaduan",
                title="Jalan rusak di Oebobo",
                body="Jalan berlubang sejak dua bulan.",
                category=category,
                region_code=region_code,
                channel="web",
                reporter_token_hash=TOKEN_HASH,
                verification_due=POLICY.verification_due(at),
            ),
        )

    def add(self, at: datetime, *events: EventData) -> Story:
        for event in events:
            self.state = evolve(self.state, PendingEvent.from_model(event, self.state.version + 1, at))
        return self

    def decide(self, at: datetime, events: list[EventData]) -> Story:
        return self.add(at, *events)


T = wib(2026, 3, 2, 10)  # Monday 2 March 2026


def verified(at: datetime = T) -> Story:
    story = Story(at)
    return story.decide(at, decide_verify(story.state, VerifyCommand(), at))


def disposed(agency_id: str = KUPANG, at: datetime = T) -> Story:
    story = verified(at)
    return story.decide(at, decide_dispose(story.state, agency_id, at, POLICY))


# -- telaah -------------------------------------------------------------------------------------------------


def test_verification_classifies_the_report_and_keeps_the_reporters_category_unless_changed():
    story = Story(T)
    [event] = decide_verify(story.state, VerifyCommand(classification="aspirasi", tags=("jalan",)), T)
    after = story.add(T, event).state
    assert after.status is Status.verified
    assert (after.kind, after.category, after.tags) == ("aspirasi", "Infrastruktur", ("jalan",))


def test_a_report_cannot_be_verified_twice():
    story = verified()
    with pytest.raises(IllegalTransition, match="ComplaintVerified is not allowed while the report is verified"):
        decide_verify(story.state, VerifyCommand(), T)


def test_a_report_without_a_category_needs_one_to_be_verified():
    story = Story(T, category=None)
    with pytest.raises(IllegalTransition, match="category"):
        decide_verify(story.state, VerifyCommand(), T)
    [event] = decide_verify(story.state, VerifyCommand(category="Kesehatan"), T)
    assert event.category == "Kesehatan"


def test_a_report_cannot_be_disposed_before_it_is_verified():
    story = Story(T)
    with pytest.raises(IllegalTransition, match="ComplaintDisposed is not allowed while the report is submitted"):
        decide_dispose(story.state, KUPANG, T, POLICY)


def test_a_verified_report_can_no_longer_be_archived_or_pended():
    story = verified()
    with pytest.raises(IllegalTransition):
        decide_archive(story.state, ArchiveCommand(reason="Bukan pengaduan"), T)
    with pytest.raises(IllegalTransition):
        decide_pend(story.state, PendCommand(information_requested="Lokasi?"), T, POLICY)


def test_a_pended_report_is_archived_after_30_working_days_of_silence_counting_idul_fitri_and_easter():
    story = Story(T)
    [event] = decide_pend(story.state, PendCommand(information_requested="Mohon sebutkan lokasinya."), T, POLICY)
    # From Monday 2 March 2026: March loses 18-20 and 23-24 (Nyepi, Idulfitri), April loses 3 (Good Friday).
    assert event.archive_due == end_of_day_wib(2026, 4, 21)


def test_a_duplicate_must_point_at_another_existing_original():
    story = Story(T)
    with pytest.raises(IllegalTransition, match="itself"):
        decide_mark_duplicate(story.state, MarkDuplicateCommand(duplicate_of=TID), story.state, T)
    with pytest.raises(IllegalTransition, match="no report"):
        decide_mark_duplicate(story.state, MarkDuplicateCommand(duplicate_of="LAP-NONE"), None, T)
    original = Story(T - timedelta(hours=1), tracking_id="LAP-ORIGINAL").state
    [event] = decide_mark_duplicate(story.state, MarkDuplicateCommand(duplicate_of="LAP-ORIGINAL"), original, T)
    assert story.add(T, event).state.status is Status.duplicate


def test_the_later_of_two_reports_is_the_duplicate():
    earlier = Story(T - timedelta(hours=1), tracking_id="LAP-Z").state
    later = Story(T, tracking_id="LAP-A").state
    with pytest.raises(IllegalTransition, match="LAP-A came in after LAP-Z"):
        decide_mark_duplicate(earlier, MarkDuplicateCommand(duplicate_of="LAP-A"), later, T)
    assert decide_mark_duplicate(later, MarkDuplicateCommand(duplicate_of="LAP-Z"), earlier, T)
    # At the same moment the tracking ids decide, so two reports are never each other's original.
    same_a, same_z = Story(T, tracking_id="LAP-A").state, Story(T, tracking_id="LAP-Z").state
    assert decide_mark_duplicate(same_z, MarkDuplicateCommand(duplicate_of="LAP-A"), same_a, T)
    with pytest.raises(IllegalTransition, match="came in after"):
        decide_mark_duplicate(same_a, MarkDuplicateCommand(duplicate_of="LAP-Z"), same_z, T)


def test_a_duplicate_of_a_duplicate_is_refused_naming_the_original():
    first = Story(T - timedelta(hours=1), tracking_id="LAP-FIRST").state
    copy = Story(T, tracking_id="LAP-COPY")
    copy.add(T, *decide_mark_duplicate(copy.state, MarkDuplicateCommand(duplicate_of="LAP-FIRST"), first, T))
    with pytest.raises(IllegalTransition, match="LAP-FIRST"):
        decide_mark_duplicate(Story(T).state, MarkDuplicateCommand(duplicate_of="LAP-COPY"), copy.state, T)


# -- disposition deadlines ----------------------------------------------------------------------------------


def test_a_disposition_on_friday_is_due_the_next_friday():
    friday = wib(2026, 3, 6, 14)
    story = verified(friday)
    disposition = decide_dispose(story.state, KUPANG, friday, POLICY)[0]
    assert disposition.follow_up_due == end_of_day_wib(2026, 3, 13)


def test_a_disposition_on_the_eve_of_idul_fitri_is_due_five_working_days_after_the_holidays():
    eve = wib(2026, 3, 20, 10)  # Friday, cuti bersama; 1 Syawal 1447 H is Saturday 21 March
    story = verified(eve)
    disposition = decide_dispose(story.state, KUPANG, eve, POLICY)[0]
    # 20 and 23-24 March are cuti bersama, 21-22 the holiday itself: 25, 26, 27, 30, 31 March.
    assert disposition.follow_up_due == end_of_day_wib(2026, 3, 31)


def test_disposition_records_the_agency_note_and_rule():
    story = verified()
    [event] = decide_dispose(story.state, KUPANG, T, POLICY, note="Jalan kota", rule_id="kupang-jalan")
    assert (event.agency_id, event.note, event.rule_id) == (KUPANG, "Jalan kota", "kupang-jalan")


def bounced(story: Story, agency_id: str, at: datetime = T) -> Story:
    return story.add(at, DispositionReturned(agency_id=agency_id, reason="Bukan wewenang kami"))


def test_the_third_bounce_flags_the_report_to_the_national_admin_once():
    story = disposed("pemda-53.01")
    for agency_id in ("pemda-53.02", "pemda-53.03", KUPANG):
        bounced(story, story.state.agency_id)
        events = decide_dispose(story.state, agency_id, T, POLICY)
        story.decide(T, events)
        assert (story.state.bounce_count == 3) == (len(events) == 2)
    flag = story.state.escalations[-1]
    assert (flag.kind, flag.to_agency_id) == ("bounce_limit", "kemenpanrb")
    assert (flag.to_level, story.state.level) == (Level.agency, Level.agency)  # a flag, not a move
    bounced(story, KUPANG)
    assert len(decide_dispose(story.state, NTT, T, POLICY)) == 1  # flagged once is enough


def test_after_the_bounce_flag_a_missed_follow_up_still_escalates_one_level_up():
    """Until session 21 the flag put the report at the national level, above which nothing escalates: the agency
    that then missed its deadline was never marked (nilai merah)."""
    story = disposed("pemda-53.01")
    for agency_id in ("pemda-53.02", "pemda-53.03", KUPANG):
        bounced(story, story.state.agency_id)
        story.decide(T, decide_dispose(story.state, agency_id, T, POLICY))
    [escalation] = overdue(story, coordinator=NTT)
    assert isinstance(escalation, ComplaintEscalated)
    assert (escalation.kind, escalation.from_level, escalation.to_level, escalation.to_agency_id) == (
        "follow_up_overdue", Level.agency, Level.regional, NTT,
    )


def test_the_bounce_limit_comes_from_the_policy():
    story = disposed("pemda-53.01")
    bounced(story, "pemda-53.01")
    events = decide_dispose(story.state, KUPANG, T, Sp4nPolicy(bounce_limit=1))
    assert [type(event).__name__ for event in events] == ["ComplaintDisposed", "ComplaintEscalated"]


# -- escalation chain ---------------------------------------------------------------------------------------


def overdue(story: Story, coordinator: str | None = None) -> list[EventData]:
    """What the scheduler decides a second after the follow-up deadline, folded into the story."""
    due = story.state.follow_up_due
    assert due is not None
    now = due + timedelta(seconds=1)
    events = decide_deadline(story.state, DeadlineKind.follow_up, due, now, POLICY, coordinator_id=coordinator)
    story.add(now, *events)
    return events


def test_follow_up_overdue_escalates_one_level_at_a_time_up_to_national():
    story = disposed()
    story.add(T, DispositionAccepted(agency_id=KUPANG), ComplaintAssigned(unit_id=f"{KUPANG}/dpupr"))
    levels = []
    while events := overdue(story, coordinator=NTT):
        [escalation] = events
        assert isinstance(escalation, ComplaintEscalated)
        assert escalation.kind == "follow_up_overdue"
        assert escalation.automatic
        levels.append((escalation.from_level.value, escalation.to_level.value, escalation.to_agency_id))
    assert levels == [
        ("unit", "agency", KUPANG),
        ("agency", "regional", NTT),
        ("regional", "national", "kemenpanrb"),
    ]
    assert story.state.agency_id == KUPANG  # the agency still acts; the level says who watches


def test_a_ministry_has_no_regional_coordinator_so_it_escalates_to_national():
    story = disposed("kementerian-kesehatan")
    [escalation] = overdue(story, coordinator=None)
    assert (escalation.from_level, escalation.to_level, escalation.to_agency_id) == (
        Level.agency, Level.national, "kemenpanrb",
    )


def test_each_escalation_gives_whoever_watches_now_a_new_follow_up_deadline():
    story = disposed()
    due = story.state.follow_up_due
    now = due + timedelta(hours=1)
    [escalation] = decide_deadline(story.state, DeadlineKind.follow_up, due, now, POLICY, coordinator_id=NTT)
    assert escalation.follow_up_due == POLICY.follow_up_due(now)


def test_next_level_knows_nothing_above_national():
    national = disposed().add(T, ComplaintEscalated(kind="manual", reason="x", from_level="agency",
                                                    to_level="national")).state
    assert next_level(national, NTT) is None


def test_a_public_follow_up_ends_the_deadline_and_an_internal_note_does_not():
    story = disposed().add(T, DispositionAccepted(agency_id=KUPANG))
    story.add(T, FollowUpPosted(follow_up_id="n1", text="catatan internal", public=False))
    assert DeadlineKind.follow_up in running_deadlines(story.state)
    story.add(T, FollowUpPosted(follow_up_id="f1", text="Sudah ditinjau ke lokasi."))
    assert DeadlineKind.follow_up not in running_deadlines(story.state)


def test_a_deadline_that_moved_or_has_not_passed_decides_nothing():
    story = disposed()
    due = story.state.follow_up_due
    assert decide_deadline(story.state, DeadlineKind.follow_up, due, due - timedelta(minutes=1), POLICY) == []
    stale = due - timedelta(days=1)
    assert decide_deadline(story.state, DeadlineKind.follow_up, stale, due + timedelta(days=1), POLICY) == []


def test_verification_overdue_flags_the_national_admin():
    story = Story(T)
    due = story.state.verification_due
    [escalation] = decide_deadline(story.state, DeadlineKind.verification, due, due + timedelta(seconds=1), POLICY)
    assert (escalation.kind, escalation.to_level, escalation.to_agency_id) == (
        "verification_overdue", Level.national, "kemenpanrb",
    )


# -- the Ombudsman ------------------------------------------------------------------------------------------


def test_a_resolved_report_is_not_offered_to_the_ombudsman_until_it_is_reopened():
    story = disposed().add(T, DispositionAccepted(agency_id=KUPANG))
    assert DeadlineKind.ombudsman_offer in running_deadlines(story.state)
    story.add(T, ComplaintResolved(resolution="Sudah ditambal.", feedback_due=POLICY.feedback_due(T)))
    assert DeadlineKind.ombudsman_offer not in running_deadlines(story.state)
    story.add(T, ComplaintReopened(reason="Rusak lagi.", follow_up_due=POLICY.follow_up_due(T)))
    assert DeadlineKind.ombudsman_offer in running_deadlines(story.state)


def offered(story: Story) -> Story:
    due = story.state.ombudsman_offer_due
    return story.decide(due, decide_deadline(story.state, DeadlineKind.ombudsman_offer, due, due, POLICY))


def test_with_consent_an_agencys_report_escalates_to_the_ombudsman():
    story = offered(disposed().add(T, DispositionAccepted(agency_id=KUPANG)))
    story.add(T, OmbudsmanConsentGiven())
    [escalation] = decide_deadline(story.state, DeadlineKind.ombudsman, T, T, POLICY)
    after = story.add(T, escalation).state
    assert (after.level, after.agency_id) == (Level.ombudsman, "ombudsman-ri")
    assert running_deadlines(after).keys() == {DeadlineKind.follow_up}


def test_with_consent_a_report_back_with_routing_is_disposed_to_the_ombudsman():
    story = offered(disposed())
    bounced(story, KUPANG).add(T, OmbudsmanConsentGiven())
    [disposition] = decide_deadline(story.state, DeadlineKind.ombudsman, T, T, POLICY)
    assert story.add(T, disposition).state.agency_id == "ombudsman-ri"


# -- proposals ----------------------------------------------------------------------------------------------

RULES = [
    Rule("jkn", "bpjs-kesehatan", category="Jaminan Kesehatan Nasional"),
    Rule("ntt-sma", NTT, region_code="53", category="Pendidikan Menengah"),
    Rule("ntt", "pemda-53", region_code="53"),
    Rule("sms-kupang-listrik", "pln", keyword="KOTKUPANG", category="Listrik"),
]
EVERY_AGENCY = {"bpjs-kesehatan", NTT, KUPANG, "pln", "pemda-53.01", "kemenpanrb"}.__contains__


def facts(**changes: object) -> RoutingFacts:
    fields: dict[str, object] = {
        "status": Status.verified,
        "region_code": "53.71.04",
        "category": "Infrastruktur",
        "channel": "web",
        "submitted_suggestion": None,
        "suggested_agency_id": None,
    }
    fields.update(changes)
    return RoutingFacts(**fields)


def test_without_rules_the_regional_government_of_the_place_is_proposed():
    [proposal] = propose(facts(region_code="53.71.04.1001"), [], {}, EVERY_AGENCY)
    assert (proposal.agency_id, proposal.basis) == (KUPANG, Basis.region)


def test_the_more_specific_rule_comes_first_and_categories_ignore_case():
    found = propose(facts(category="pendidikan menengah"), RULES, {}, EVERY_AGENCY)
    assert [(p.agency_id, p.rule_id) for p in found] == [(NTT, "ntt-sma"), (KUPANG, None)]


def test_a_keyword_rule_matches_sms_reports_sent_with_that_keyword():
    sms = facts(channel="sms", category="Listrik", submitted_suggestion=KUPANG)
    found = propose(sms, RULES, {"KOTKUPANG": KUPANG}, EVERY_AGENCY)
    assert found[0].rule_id == "sms-kupang-listrik"
    assert "sms-kupang-listrik" not in [p.rule_id for p in propose(facts(category="Listrik"), RULES, {}, EVERY_AGENCY)]


def test_a_keyword_rule_whose_keyword_nobody_owns_matches_no_sms():
    """A typo in the rule, or the keyword's agency retired: it matched every SMS sent without a keyword (both
    "owners" None), and a dispose without an agency sent those reports to the rule's agency."""
    without_keyword = facts(channel="sms", category="Listrik", submitted_suggestion=None)
    found = propose(without_keyword, RULES, {}, EVERY_AGENCY)
    assert "sms-kupang-listrik" not in [p.rule_id for p in found]
    assert "pln" not in [p.agency_id for p in found]


def test_a_returned_report_proposes_the_returning_agencys_suggestion_and_never_the_agencies_that_returned_it():
    returned = facts(status=Status.returned, suggested_agency_id="pemda-53.01", returned_by=(NTT, KUPANG))
    found = propose(returned, RULES, {}, EVERY_AGENCY)
    assert [(p.agency_id, p.basis) for p in found] == [("pemda-53.01", Basis.returned_suggestion)]


def test_agencies_that_cannot_take_a_disposition_are_not_proposed():
    found = propose(facts(category="Jaminan Kesehatan Nasional"), RULES, {}, {KUPANG}.__contains__)
    assert [p.agency_id for p in found] == [KUPANG]


def test_followup_waits_to_close_exactly_the_late_answers_routing_will_red_mark():
    """`red_mark_pending` (followup holds the closing for it, session 30) names a late answer exactly where the
    scheduler's decision red-marks it: at the unit's, the agency's and the regional level, not at the national one
    nor on a report the Ombudsman holds (otherwise a report would wait for a mark that never comes)."""
    story = disposed()
    story.add(T, DispositionAccepted(agency_id=KUPANG), ComplaintAssigned(unit_id=f"{KUPANG}/dpupr"))
    seen = []
    while True:
        due = story.state.follow_up_due
        assert due is not None
        answered = Story(T)
        answered.state = story.state
        answered.add(due + timedelta(minutes=1), FollowUpPosted(follow_up_id=f"fu-{len(seen)}", text="Sudah."))
        now = due + timedelta(minutes=2)
        marks = decide_deadline(answered.state, DeadlineKind.follow_up, due, now, POLICY, coordinator_id=NTT)
        seen.append((story.state.level.value, red_mark_pending(answered.state) is not None, bool(marks)))
        if not overdue(story, coordinator=NTT):
            break
    assert seen == [("unit", True, True), ("agency", True, True), ("regional", True, True),
                    ("national", False, False)]
    taken = disposed("ombudsman-ri")
    taken.add(T, DispositionAccepted(agency_id="ombudsman-ri"))
    due = taken.state.follow_up_due
    assert due is not None
    taken.add(due + timedelta(minutes=1), FollowUpPosted(follow_up_id="fu-o", text="Sudah."))
    assert red_mark_pending(taken.state) is None
    assert decide_deadline(taken.state, DeadlineKind.follow_up, due, due + timedelta(minutes=2), POLICY) == []
