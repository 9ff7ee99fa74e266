"""Routing's decisions: pure functions of a complaint's state, a command and the time, returning the events to
append or raising `IllegalTransition` (409).

- telaah (verification): `decide_verify`, `decide_pend`, `decide_archive`, `decide_mark_duplicate`;
- disposition: `propose` (what the rules suggest), `decide_dispose` (with the bounce-limit flag);
- deadlines: `running_deadlines` (what the scheduler watches) and `decide_deadline` (what it does when one
  passes: escalate one level up, archive a silent pended report, offer the Ombudsman, hand over on consent).

Every decision folds its own events onto the state before returning them (`_checked`), so an event the
lifecycle would refuse is refused here, before anything is appended.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from lapor.calendar import jakarta_date
from lapor.complaint import (
    HELD_BY_AGENCY,
    ComplaintEvent,
    ComplaintState,
    IllegalTransition,
    PendingEvent,
    Status,
    ensure_allowed,
    evolve,
    missed_follow_up,
    ombudsman_offer_running,
)
from lapor.limits import Category, Once, Reason, Tag, Title, like_a_category_label
from lapor.policy import Sp4nPolicy
from lapor.principal import NATIONAL_ADMIN_AGENCY, OMBUDSMAN_AGENCY
from schemas.events import (
    AgencyId,
    ComplaintArchived,
    ComplaintDisposed,
    ComplaintEscalated,
    ComplaintKind,
    ComplaintPended,
    ComplaintVerified,
    DuplicateMarked,
    EscalationKind,
    EventData,
    Level,
    TrackingId,
)
from services.routing.directory import disposing_agency, region_agency_id, region_within

# -- commands (also the request bodies of the API) ----------------------------------------------------------


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VerifyCommand(_Command):
    """Telaah selesai: classify the report so it can be disposed."""

    category: Category | None = Field(None, description="kategori; defaults to the one given at submission")
    classification: ComplaintKind | None = Field(None, description="klasifikasi; defaults to the reporter's")
    title: Title | None = Field(None, description="a corrected title; omit to keep the reporter's")
    tags: Annotated[tuple[Tag, ...], Field(max_length=20), Once] = Field(
        (), description="each kept once, in the order first given (a tag given again is dropped)"
    )


class PendCommand(_Command):
    """Tunda: ask the reporter for more."""

    information_requested: Reason


class ArchiveCommand(_Command):
    reason: Reason


class MarkDuplicateCommand(_Command):
    duplicate_of: TrackingId


class DisposeCommand(_Command):
    """Disposisi. Without `agency_id` the first proposal is confirmed."""

    agency_id: AgencyId | None = None
    note: Reason | None = None


# -- helpers ------------------------------------------------------------------------------------------------


def _checked(state: ComplaintState, events: Sequence[EventData], now: datetime) -> ComplaintState:
    """The state after `events`; raises IllegalTransition if the lifecycle refuses any of them."""
    for event in events:
        state = evolve(state, PendingEvent.from_model(event, state.version + 1, now))
    return state


def _wib(moment: datetime) -> str:
    return f"{jakarta_date(moment):%d-%m-%Y}"


# -- telaah -------------------------------------------------------------------------------------------------


def decide_verify(state: ComplaintState, command: VerifyCommand, now: datetime) -> list[EventData]:
    ensure_allowed(state, "ComplaintVerified")
    category = command.category or state.category
    if category is None:
        raise IllegalTransition("ComplaintVerified", state.status, "the report has no category yet: give one")
    if like_a_category_label(category):
        # The reporter's, given before session 31 refused such names (`Category`): not one to classify by.
        raise IllegalTransition(
            "ComplaintVerified", state.status, "the report's category reads as a label of the figures: give one"
        )
    assert state.kind is not None  # set by ComplaintSubmitted
    event = ComplaintVerified(
        classification=command.classification or state.kind,
        category=category,
        title=command.title if command.title and command.title != state.title else None,
        tags=command.tags,
    )
    _checked(state, [event], now)
    return [event]


def decide_pend(state: ComplaintState, command: PendCommand, now: datetime, policy: Sp4nPolicy) -> list[EventData]:
    ensure_allowed(state, "ComplaintPended")
    event = ComplaintPended(information_requested=command.information_requested, archive_due=policy.archive_due(now))
    _checked(state, [event], now)
    return [event]


def decide_archive(state: ComplaintState, command: ArchiveCommand, now: datetime) -> list[EventData]:
    ensure_allowed(state, "ComplaintArchived")
    event = ComplaintArchived(reason=command.reason)
    _checked(state, [event], now)
    return [event]


def decide_mark_duplicate(
    state: ComplaintState, command: MarkDuplicateCommand, original: ComplaintState | None, now: datetime
) -> list[EventData]:
    """`original` is the folded report it duplicates (None when there is no such report)."""
    ensure_allowed(state, "DuplicateMarked")
    reason = None
    if command.duplicate_of == state.tracking_id:
        reason = "a report cannot duplicate itself"
    elif original is None or original.status is None:
        reason = f"there is no report {command.duplicate_of}"
    elif original.status is Status.duplicate:
        reason = f"{command.duplicate_of} is itself a duplicate of {original.duplicate_of}: mark it as that one's"
    elif not came_first(original, state):
        # The later report is the duplicate. Without an order two officers marking two reports as each other's
        # at once (each checked against the other's state before its own append) made both duplicates, and the
        # complaint was lost (found in a bug hunt).
        reason = f"{command.duplicate_of} came in after {state.tracking_id}: mark {command.duplicate_of} as the copy"
    if reason:
        raise IllegalTransition("DuplicateMarked", state.status, reason)
    event = DuplicateMarked(duplicate_of=command.duplicate_of)
    _checked(state, [event], now)
    return [event]


def came_first(original: ComplaintState, report: ComplaintState) -> bool:
    """Whether `original` was submitted before `report` (by time, then by tracking id): a strict order, so two
    reports can never each be the other's original."""
    if original.submitted_at is None or report.submitted_at is None:
        return original.tracking_id < report.tracking_id
    return (original.submitted_at, original.tracking_id) < (report.submitted_at, report.tracking_id)


# -- disposition --------------------------------------------------------------------------------------------


def decide_dispose(
    state: ComplaintState,
    agency_id: str,
    now: datetime,
    policy: Sp4nPolicy,
    *,
    note: str | None = None,
    rule_id: str | None = None,
    takeover: bool = False,
) -> list[EventData]:
    """Disposisi to `agency_id` (the caller has checked it is an active agency of the directory). A
    re-disposition that brings the bounce count to the policy's limit also flags the report to the national
    admin (an escalation of kind bounce_limit), once. The flag tells, it does not move: the report stays
    watched at the agency's level, so a missed follow-up deadline still escalates one level up (until session
    21 it went to the national level, above which nothing escalates, and the agency's missed deadline was never
    marked).

    The Ombudsman offer counts from the first disposition: a disposition after a return carries the deadline
    still running (session 30: each disposition started the sixty working days again, so a report passed from
    agency to agency might never be offered to the Ombudsman, the safeguard for just such a report). After the
    offer the deadline carried is a new one, at which nothing runs (the offer is made once).

    A `takeover` (the reporter's consent while the report is back with routing: a disposition to the Ombudsman)
    counts the return before it like any disposition, but raises no bounce flag (session 30): the flag asks the
    national admin to check routing's disposition, and this one is the reporter's choice of the supervisor, which
    holds the report now. A later disposition after a return raises it, once, as before."""
    ensure_allowed(state, "ComplaintDisposed")
    disposed = ComplaintDisposed(
        agency_id=agency_id,
        note=note,
        rule_id=rule_id,
        follow_up_due=policy.follow_up_due(now),
        ombudsman_offer_due=ombudsman_offer_running(state) or policy.ombudsman_offer_due(now),
    )
    after = _checked(state, [disposed], now)
    events: list[EventData] = [disposed]
    flagged = any(e.kind is EscalationKind.bounce_limit for e in after.escalations)
    if policy.bounce_limit_reached(after.bounce_count) and not flagged and not takeover:
        events.append(
            ComplaintEscalated(
                kind=EscalationKind.bounce_limit,
                reason=(
                    f"Dikembalikan sebagai bukan wewenang {after.bounce_count} kali "
                    f"(batas {policy.bounce_limit}): periksa disposisinya"
                ),
                from_level=after.level,
                to_level=after.level,
                to_agency_id=NATIONAL_ADMIN_AGENCY,
                automatic=True,
            )
        )
        _checked(after, events[1:], now)
    return events


@dataclass(frozen=True)
class Rule:
    """A routing rule as the proposals read it (RoutingRuleChanged, flattened)."""

    rule_id: str
    agency_id: str
    keyword: str | None = None
    region_code: str | None = None
    category: str | None = None

    @property
    def specificity(self) -> tuple[int, int]:
        """More matched fields first, then the narrower region."""
        given = sum(value is not None for value in (self.keyword, self.region_code, self.category))
        return given, len(self.region_code or "")


@dataclass(frozen=True)
class RoutingFacts:
    """What the proposals look at in a report."""

    status: Status | None
    region_code: str | None
    category: str | None
    channel: str | None
    submitted_suggestion: str | None  # suggested_agency_id at submission (SMS keyword, integrating channel)
    suggested_agency_id: str | None  # the current one: after a return, the returning agency's suggestion
    returned_by: tuple[str, ...] = ()  # agencies that returned it as bukan wewenang


def facts_of(state: ComplaintState, events: Sequence[ComplaintEvent]) -> RoutingFacts:
    """The routing facts of a report from its folded state and its events (`events` may be empty for a report
    never disposed: what was suggested at submission is then still the state's suggestion)."""
    submitted = next((event for event in events if event.type == "ComplaintSubmitted"), None)
    returned_by: list[str] = []
    for event in events:
        if event.type == "DispositionReturned" and event.data["agency_id"] not in returned_by:
            returned_by.append(event.data["agency_id"])
    return RoutingFacts(
        status=state.status,
        region_code=state.region_code,
        category=state.category,
        channel=state.channel.value if state.channel else None,
        submitted_suggestion=submitted.data.get("suggested_agency_id") if submitted else state.suggested_agency_id,
        suggested_agency_id=state.suggested_agency_id,
        returned_by=tuple(returned_by),
    )


class Basis(StrEnum):
    returned_suggestion = "returned_suggestion"  # the agency that returned it named the right one
    rule = "rule"  # a routing rule matched
    submission = "submission"  # the SMS keyword or the integrating channel named the agency
    region = "region"  # the regional government of the place of the problem


@dataclass(frozen=True)
class Proposal:
    agency_id: str
    basis: Basis
    rule_id: str | None = None


def _matches(rule: Rule, facts: RoutingFacts, keyword_agency: Mapping[str, str]) -> bool:
    if rule.keyword is not None:
        # An SMS sent with the keyword: it named the agency that owns the keyword. A keyword nobody owns (a typo in
        # the rule, or its agency retired) matches nothing; it matched every SMS sent without a keyword, whose
        # suggestion is None too (found in a bug hunt).
        owner = keyword_agency.get(rule.keyword)
        if facts.channel != "sms" or owner is None or owner != facts.submitted_suggestion:
            return False
    if rule.region_code is not None and not (facts.region_code and region_within(facts.region_code, rule.region_code)):
        return False
    return rule.category is None or (
        facts.category is not None and facts.category.casefold() == rule.category.casefold()
    )


def propose(
    facts: RoutingFacts,
    rules: Sequence[Rule],
    keyword_agency: Mapping[str, str],
    disposable: Callable[[str], bool],
) -> list[Proposal]:
    """The agencies to offer the admin, best first: the suggestion of the agency that returned the report, then
    matching rules (most specific first), then the agency named at submission, then the regional government of
    the region. A suggestion naming an OPD or unit (a returning agency may name the office the report belongs to)
    proposes the agency it belongs to, which assigns it (session 29: it was left out). Agencies that already
    returned the report and agencies that cannot take a disposition (`disposable` false: unknown, inactive) are
    left out."""
    candidates: list[Proposal] = []
    if facts.status is Status.returned and facts.suggested_agency_id:
        candidates.append(Proposal(disposing_agency(facts.suggested_agency_id), Basis.returned_suggestion))
    matching = sorted(
        (rule for rule in rules if _matches(rule, facts, keyword_agency)),
        key=lambda rule: (-rule.specificity[0], -rule.specificity[1], rule.rule_id),
    )
    candidates += [Proposal(rule.agency_id, Basis.rule, rule.rule_id) for rule in matching]
    if facts.submitted_suggestion:
        candidates.append(Proposal(disposing_agency(facts.submitted_suggestion), Basis.submission))
    if facts.region_code:
        candidates.append(Proposal(region_agency_id(facts.region_code), Basis.region))
    seen = set(facts.returned_by)
    proposals = []
    for candidate in candidates:
        if candidate.agency_id in seen or not disposable(candidate.agency_id):
            continue
        seen.add(candidate.agency_id)
        proposals.append(candidate)
    return proposals


# -- deadlines ----------------------------------------------------------------------------------------------


class DeadlineKind(StrEnum):
    verification = "verification"  # telaah overdue -> flag the national admin
    archive = "archive"  # pended in silence -> archive
    follow_up = "follow_up"  # tindak lanjut overdue -> one level up
    ombudsman_offer = "ombudsman_offer"  # unresolved -> offer the Ombudsman takeover
    ombudsman = "ombudsman"  # the reporter consented -> hand over to the Ombudsman at once


def running_deadlines(state: ComplaintState) -> dict[DeadlineKind, datetime | None]:
    """The deadlines the scheduler must watch for this report now, each with its due moment (None: due at
    once). Read from the fold's `*_due` fields, which hold only the deadlines running now."""
    if not state.is_open:
        return {}
    running: dict[DeadlineKind, datetime | None] = {}
    if state.status is Status.submitted and state.verification_due is not None:
        running[DeadlineKind.verification] = state.verification_due
    if state.status is Status.pended and state.archive_due is not None:
        running[DeadlineKind.archive] = state.archive_due
    # A deadline answered late is still to be red-marked, before one a reopening may have started.
    follow_up = missed_follow_up(state) or state.follow_up_due
    if follow_up is not None:
        running[DeadlineKind.follow_up] = follow_up
    # Not once offered, nor while resolved (it waits for its reporter), nor on a report the Ombudsman holds.
    offer = ombudsman_offer_running(state)
    if offer is not None:
        running[DeadlineKind.ombudsman_offer] = offer
    # Nor is it handed over while resolved (a consent given just before the resolution): the Ombudsman could do
    # nothing with it, and it would close on the agency's resolution. Reopened, it is handed over then. Once only
    # (session 31): the Ombudsman that took it over and returned it as bukan wewenang got it straight back, disposed
    # by the next tick, and so every time it returned it; and a report the national admin disposed elsewhere after
    # such a return was taken from that agency at once. The national admin disposes it, as any returned report.
    if (
        state.ombudsman_consent
        and not state.ombudsman_took_over
        and state.status is not Status.resolved
        and state.level is not Level.ombudsman
        and state.agency_id != OMBUDSMAN_AGENCY
    ):
        running[DeadlineKind.ombudsman] = None
    return running


def next_level(state: ComplaintState, coordinator_id: str | None) -> tuple[Level, str] | None:
    """One level up from where the report is watched now: unit -> agency -> regional coordinator (the
    province of a regency/city) -> national. None at the national level (nobody above) and at the Ombudsman: at its
    level, and on any report it holds. A takeover of a report back with routing is a disposition to the Ombudsman,
    which leaves the report at the agency level; until session 27 the Ombudsman's missed deadline on such a report
    was escalated to the national admin and red-marked, while on one taken over from an agency it never was. Nor from a
    unit of the Ombudsman (session 30: a report taken over by a disposition and assigned to an Ombudsman office went
    from the unit up to the Ombudsman itself, with a new deadline, where `lapor.complaint.red_mark_pending`, which
    followup closes by, expects no mark; an assignment of one taken over from an agency keeps level ombudsman)."""
    if state.agency_id == OMBUDSMAN_AGENCY:
        return None
    if state.level is Level.unit and state.agency_id:
        return Level.agency, state.agency_id
    if state.level is Level.agency:
        if coordinator_id:
            return Level.regional, coordinator_id
        return Level.national, NATIONAL_ADMIN_AGENCY
    if state.level is Level.regional:
        return Level.national, NATIONAL_ADMIN_AGENCY
    return None


def decide_deadline(
    state: ComplaintState,
    kind: DeadlineKind,
    due: datetime,
    now: datetime,
    policy: Sp4nPolicy,
    *,
    coordinator_id: str | None = None,
) -> list[EventData]:
    """What to do now that the deadline `kind` that was due at `due` has passed. Nothing when it no longer runs
    (the report moved on since the scheduler looked) or has not passed yet. For a consent (kind ombudsman)
    `due` is when it was seen. `coordinator_id` is the regional coordinator of the report's agency, if any."""
    running = running_deadlines(state)
    if kind not in running or now < due:
        return []
    current = running[kind]
    if current is not None and current != due:
        return []  # a newer deadline replaced the one the scheduler saw
    events: list[EventData]
    if kind is DeadlineKind.verification:
        events = [
            ComplaintEscalated(
                kind=EscalationKind.verification_overdue,
                reason=f"Verifikasi melewati batas {policy.verification_days} hari kerja (jatuh tempo {_wib(due)})",
                from_level=state.level,
                to_level=Level.national,
                to_agency_id=NATIONAL_ADMIN_AGENCY,
                automatic=True,
            )
        ]
    elif kind is DeadlineKind.archive:
        events = [
            ComplaintArchived(
                reason=(
                    f"Diarsipkan otomatis: pelapor tidak menambahkan informasi dalam {policy.pending_archive_days} "
                    "hari kerja sejak laporan ditunda"
                ),
                automatic=True,
            )
        ]
    elif kind is DeadlineKind.follow_up:
        mark = _red_mark(state, due, now, policy, coordinator_id)
        if mark is None:
            return []
        events = [mark]
    elif kind is DeadlineKind.ombudsman_offer:
        events = [
            ComplaintEscalated(
                kind=EscalationKind.ombudsman_offer,
                reason=(
                    f"Belum selesai {policy.ombudsman_offer_days} hari kerja setelah disposisi pertama: pelapor "
                    "ditawari pengambilalihan oleh Ombudsman RI"
                ),
                from_level=state.level,
                to_level=state.level,
                automatic=True,
            )
        ]
    else:
        events = _hand_to_ombudsman(state, now, policy, coordinator_id)
    _checked(state, events, now)
    return events


def _red_mark(
    state: ComplaintState,
    due: datetime,
    now: datetime,
    policy: Sp4nPolicy,
    coordinator_id: str | None,
    *,
    handed_over: bool = False,
) -> ComplaintEscalated | None:
    """The red mark (nilai merah) of the follow-up deadline `due`, passed: an escalation one level up, with a new
    deadline for whoever watches now. None where nothing is above (national, the Ombudsman). Answered after the
    deadline, before the scheduler looked, or `handed_over` to the Ombudsman in the same append: the mark and the move
    up are the ones it would have made in time, but nothing is left for the next level to wait for."""
    up = next_level(state, coordinator_id)
    if up is None:
        return None
    to_level, to_agency_id = up
    answered = missed_follow_up(state) == due
    if answered:
        late = "ditanggapi setelah batas waktu"
    elif handed_over:
        late = "diambil alih Ombudsman RI"
    else:
        late = "dieskalasi satu tingkat"
    return ComplaintEscalated(
        kind=EscalationKind.follow_up_overdue,
        reason=f"Tindak lanjut melewati batas waktu (jatuh tempo {_wib(due)}): {late}",
        from_level=state.level,
        to_level=to_level,
        to_agency_id=to_agency_id,
        automatic=True,
        follow_up_due=None if answered or handed_over else policy.follow_up_due(now),
    )


def _hand_to_ombudsman(
    state: ComplaintState, now: datetime, policy: Sp4nPolicy, coordinator_id: str | None
) -> list[EventData]:
    """With the reporter's consent: an agency holding the report hands it up to the Ombudsman; a report back
    with routing (returned) is disposed to the Ombudsman directly. A follow-up deadline of the agency that passed
    before the hand-over (answered late or not at all) is red-marked first, in the same append (session 30: the
    scheduler could hand the report over before it looked at that deadline, and a report the Ombudsman holds is
    never escalated, so the agency's red mark was lost)."""
    reason = "Pelapor menyetujui pengambilalihan laporan oleh Ombudsman RI"
    if state.status not in HELD_BY_AGENCY:
        return decide_dispose(state, OMBUDSMAN_AGENCY, now, policy, note=reason, takeover=True)
    events: list[EventData] = []
    passed = missed_follow_up(state) or state.follow_up_due
    mark = None
    if passed is not None and now >= passed:
        mark = _red_mark(state, passed, now, policy, coordinator_id, handed_over=True)
    if mark is not None:
        events.append(mark)
        state = _checked(state, events, now)
    events.append(
        ComplaintEscalated(
            kind=EscalationKind.ombudsman,
            reason=reason,
            from_level=state.level,
            to_level=Level.ombudsman,
            to_agency_id=OMBUDSMAN_AGENCY,
            automatic=True,
            follow_up_due=policy.follow_up_due(now),
        )
    )
    return events
