"""The complaint lifecycle: one pure fold from a complaint's events to its state, shared by every service.

```python
state = fold(store.read_stream(f"complaint-{tracking_id}"))      # None for a stream that does not exist
ensure_allowed(state, "ComplaintDisposed")                        # IllegalTransition if not now
state = evolve(state, PendingEvent.from_model(event, state.version + 1, now))
```

Speed matters: a full replay folds millions of events, so the fold works on the raw `data` dicts (validated once,
when decided, by `schemas`), dispatches through a dict, and builds each new state by copying the old one's
`__dict__` (`dataclasses.replace` is 20x slower with this many fields): 1–2 µs per event.

Deadline fields hold the deadline that is running *now* and are cleared when the stage they guard is done; see
docs/lifecycle.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from lapor.principal import NATIONAL_ADMIN_AGENCY, OMBUDSMAN_AGENCY
from schemas.events import Channel, CloseReason, ComplaintKind, EscalationKind, EventData, Level
from schemas.upcasters import current_version, upcast

__all__ = [
    "OPEN_STATUSES",
    "TERMINAL_STATUSES",
    "TRANSITIONS",
    "ComplaintEvent",
    "ComplaintState",
    "Escalation",
    "Feedback",
    "IllegalTransition",
    "Level",
    "PendingEvent",
    "Status",
    "StreamEvent",
    "Transition",
    "VersionGap",
    "allowed_event_types",
    "ensure_allowed",
    "evolve",
    "fold",
    "initial_state",
    "replay",
]


class Status(StrEnum):
    submitted = "submitted"  # waiting for verification (telaah)
    pended = "pended"  # tunda: waiting for the reporter's information
    verified = "verified"  # waiting for disposition
    disposed = "disposed"  # with an agency, not yet accepted
    returned = "returned"  # bukan wewenang: back with national routing
    in_progress = "in_progress"  # accepted by the agency (tindak lanjut)
    resolved = "resolved"  # waiting for the reporter's feedback
    closed = "closed"
    archived = "archived"
    duplicate = "duplicate"


TERMINAL_STATUSES = frozenset({Status.closed, Status.archived, Status.duplicate})
OPEN_STATUSES = frozenset(Status) - TERMINAL_STATUSES
# Statuses in which an agency holds the report (agency_id is set); in every other status it is with routing.
HELD_BY_AGENCY = frozenset({Status.disposed, Status.in_progress, Status.resolved, Status.closed})

_LEVELS = {level.value: level for level in Level}
_KINDS = {kind.value: kind for kind in ComplaintKind}
_CHANNELS = {channel.value: channel for channel in Channel}
_CLOSE_REASONS = {reason.value: reason for reason in CloseReason}
_ESCALATION_KINDS = {kind.value: kind for kind in EscalationKind}


class ComplaintEvent(Protocol):
    """What the fold reads of an event; `lapor.store.RecordedEvent` and `PendingEvent` both fit. An event
    may also carry `schema_version` (missing means current)."""

    @property
    def type(self) -> str: ...

    @property
    def data(self) -> Mapping[str, Any]: ...

    @property
    def version(self) -> int: ...

    @property
    def recorded_at(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event not (yet) stored: for tests, and for decisions that fold in what they are about to append."""

    type: str
    data: Mapping[str, Any]
    version: int
    recorded_at: datetime
    schema_version: int | None = None  # None: the current version of its type

    @classmethod
    def from_model(cls, event: EventData, version: int, recorded_at: datetime) -> PendingEvent:
        return cls(event.event_type(), event.to_data(), version, recorded_at, event.schema_version)


@dataclass(frozen=True, slots=True)
class Escalation:
    kind: EscalationKind
    from_level: Level
    to_level: Level
    to_agency_id: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class Feedback:
    satisfied: bool
    rating: int


@dataclass(frozen=True)  # no slots: `evolve` copies `__dict__` for speed
class ComplaintState:
    tracking_id: str
    version: int = -1  # -1 before the first event
    status: Status | None = None  # None before ComplaintSubmitted
    level: Level = Level.national
    kind: ComplaintKind | None = None
    title: str | None = None
    category: str | None = None
    tags: tuple[str, ...] = ()
    region_code: str | None = None
    channel: Channel | None = None
    anonymous: bool = False
    confidential: bool = False
    reporter_ref: str | None = None
    reporter_token_hash: str | None = None  # checks X-Reporter-Token; lapor.privacy keeps it out of views
    agency_id: str | None = None
    unit_id: str | None = None
    suggested_agency_id: str | None = None
    returned_from: str | None = None  # the agency that last returned it as bukan wewenang
    return_reason: str | None = None
    information_requested: str | None = None  # while pended
    resolution: str | None = None  # while resolved/closed
    close_reason: CloseReason | None = None
    archive_reason: str | None = None
    duplicate_of: str | None = None
    submitted_at: datetime | None = None
    verified_at: datetime | None = None
    disposed_at: datetime | None = None  # the latest disposition
    accepted_at: datetime | None = None  # acceptance of the latest disposition
    first_follow_up_at: datetime | None = None  # the first public follow-up ever
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    last_event_at: datetime | None = None
    verification_due: datetime | None = None
    archive_due: datetime | None = None
    follow_up_due: datetime | None = None
    # (deadline, moment) of the latest answer to the reporter that ended a follow-up deadline, until routing has
    # red-marked it: an answer after the deadline still gets its mark, whenever the scheduler looks. Copied, never
    # compared here (projections may carry times in their own form).
    follow_up_answered: tuple[datetime, datetime] | None = None
    feedback_due: datetime | None = None
    ombudsman_offer_due: datetime | None = None
    bounce_count: int = 0  # dispositions after a return
    escalations: tuple[Escalation, ...] = ()
    ombudsman_offered: bool = False
    ombudsman_consent: bool = False
    # The Ombudsman took the report over on that consent (the takeover escalation, or a disposition to it after the
    # consent): the consent is done with. Read by routing's scheduler only, never by a transition (session 31).
    ombudsman_took_over: bool = False
    reopen_count: int = 0
    follow_up_count: int = 0
    feedback: Feedback | None = None  # for the current resolution

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def owner(self) -> str:
        """The agency whose queue holds the report; the national admin while it is with routing."""
        return self.agency_id or NATIONAL_ADMIN_AGENCY


def _copy(state: ComplaintState, changes: Mapping[str, Any]) -> ComplaintState:
    """`state` with `changes`. Frozen only guards attribute assignment; this fills a fresh, unshared object
    (the generated `__init__` or `dataclasses.replace` would cost ten times as much)."""
    new = object.__new__(ComplaintState)
    fields = new.__dict__
    fields.update(state.__dict__)
    fields.update(changes)
    return new


_BLANK = ComplaintState(tracking_id="")


def initial_state(tracking_id: str) -> ComplaintState:
    return _copy(_BLANK, {"tracking_id": tracking_id})


# -- errors -----------------------------------------------------------------------------------------------


def _describe(status: Status | None) -> str:
    return "not yet submitted" if status is None else status.value.replace("_", " ")


class IllegalTransition(Exception):
    """The event may not happen to the report in its current state (HTTP 409)."""

    def __init__(self, event_type: str, status: Status | None, reason: str | None = None) -> None:
        self.event_type = event_type
        self.status = status
        self.reason = reason
        message = f"{event_type} is not allowed while the report is {_describe(status)}"
        super().__init__(f"{message}: {reason}" if reason else message)


class VersionGap(Exception):
    """Events must follow each other without a gap; anything else is a bug or a damaged stream."""

    def __init__(self, tracking_id: str, expected: int, got: int) -> None:
        self.tracking_id = tracking_id
        self.expected = expected
        self.got = got
        super().__init__(f"complaint {tracking_id or '?'}: expected event version {expected}, got {got}")


# -- the transitions --------------------------------------------------------------------------------------

# Transitions read the current state as its fields by name (`state.__dict__`, or the working dict of `fold`),
# so a fold over many events updates one dict instead of building a state per event.
Fields = Mapping[str, Any]
Changes = dict[str, Any]
Apply = Callable[[Fields, Mapping[str, Any], datetime], Changes]


def _moment(value: str | datetime | None) -> datetime | None:
    """Stored data carries ISO-8601 strings; events decided in-process may still hold datetimes."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


_NO_DEADLINES: Changes = {
    "verification_due": None,
    "archive_due": None,
    "follow_up_due": None,
    "follow_up_answered": None,
    "feedback_due": None,
    "ombudsman_offer_due": None,
}


def _answered(s: Fields, at: datetime) -> Changes:
    """An answer to the reporter (a public follow-up, a resolution) ends the follow-up deadline running."""
    due = s["follow_up_due"]
    if due is None:
        return {}
    return {"follow_up_due": None, "follow_up_answered": (due, at)}


def _submitted(s: Fields, data: Mapping[str, Any], at: datetime) -> Changes:
    tracking_id, expected = data["tracking_id"], s["tracking_id"]
    if expected and tracking_id != expected:
        raise IllegalTransition("ComplaintSubmitted", None, f"it names {tracking_id}, this stream is {expected}")
    return {
        "tracking_id": tracking_id,
        "level": Level.national,
        "kind": _KINDS[data["kind"]],
        "title": data["title"],
        "category": data.get("category"),
        "region_code": data.get("region_code"),
        "channel": _CHANNELS[data["channel"]],
        "anonymous": data.get("anonymous", False),
        "confidential": data.get("confidential", False),
        "reporter_ref": data.get("reporter_ref"),
        "reporter_token_hash": data["reporter_token_hash"],
        "suggested_agency_id": data.get("suggested_agency_id"),
        "submitted_at": at,
        "verification_due": _moment(data["verification_due"]),
    }


def _verified(s: Fields, data: Mapping[str, Any], at: datetime) -> Changes:
    return {
        "kind": _KINDS[data["classification"]],
        "category": data["category"],
        "title": data.get("title") or s["title"],
        "tags": tuple(data.get("tags", ())),
        "verified_at": at,
        "verification_due": None,
    }


def _pended(s: Fields, data: Mapping[str, Any], at: datetime) -> Changes:
    return {
        "information_requested": data["information_requested"],
        "archive_due": _moment(data["archive_due"]),
        "verification_due": None,
    }


def _information_provided(s: Fields, data: Mapping[str, Any], at: datetime) -> Changes:
    return {
        "information_requested": None,
        "archive_due": None,
        "verification_due": _moment(data["verification_due"]),
    }


def _archived(s: Fields, data: Mapping[str, Any], at: datetime) -> Changes:
    return {**_NO_DEADLINES, "archive_reason": data["reason"]}


def _duplicate_marked(s: Fields, data: Mapping[str, Any], at: datetime) -> Changes:
    return {**_NO_DEADLINES, "duplicate_of": data["duplicate_of"]}


def _disposed(s: Fields, data: Mapping[str, Any], at: datetime) -> Changes:
    return {
        "agency_id": data["agency_id"],
        "unit_id": None,
        "level": Level.agency,
        "disposed_at": at,
        "accepted_at": None,
        "follow_up_due": _moment(data["follow_up_due"]),
        "follow_up_answered": None,
        "ombudsman_offer_due": _moment(data["ombudsman_offer_due"]),
        "bounce_count": s["bounce_count"] + 1 if s["status"] is Status.returned else s["bounce_count"],
        "ombudsman_took_over": s["ombudsman_took_over"]
        or (s["ombudsman_consent"] and data["agency_id"] == OMBUDSMAN_AGENCY),
    }


def _returned(s: Fields, data: Mapping[str, Any], at: datetime) -> Changes:
    # "No wrong door": back to national routing, to be disposed again.
    return {
        "returned_from": data["agency_id"],
        "return_reason": data["reason"],
        "suggested_agency_id": data.get("suggested_agency_id"),
        "agency_id": None,
        "unit_id": None,
        "level": Level.national,
        "follow_up_due": None,
        "follow_up_answered": None,  # with routing nothing escalates: a return is counted as a bounce
    }


def _accepted(s: Fields, data: Mapping[str, Any], at: datetime) -> Changes:
    return {"accepted_at": at}


def _assigned(s: Fields, data: Mapping[str, Any], at: datetime) -> Changes:
    # The event says where the report is watched afterwards when that is not the unit's level (an escalated one
    # stays where it was escalated to: `services.followup.decide.decide_assign`); an assignment recorded without
    # it, as every one before session 24, means the unit's, so stored histories fold as they always did.
    level = data.get("level")
    if level is None or level == Level.unit:
        return {"unit_id": data["unit_id"], "level": Level.unit}
    if level != s["level"] or s["level"] is Level.unit:
        # Only the level the report is at may be kept; any other would move it where no escalation took it.
        refusal = f"it keeps level {level}, and the report is at {s['level']}"
        raise IllegalTransition("ComplaintAssigned", s["status"], refusal)
    return {"unit_id": data["unit_id"]}


def _follow_up_posted(s: Fields, data: Mapping[str, Any], at: datetime) -> Changes:
    changes: Changes = {"follow_up_count": s["follow_up_count"] + 1}
    if data.get("public", True):  # an internal note is not an answer to the reporter
        changes.update(_answered(s, at))
        if s["first_follow_up_at"] is None:
            changes["first_follow_up_at"] = at
    return changes


def _escalation_refusal(
    s: Fields, kind: EscalationKind, from_level: Level, to_level: Level, to_agency_id: str | None
) -> str | None:
    if from_level is not s["level"]:
        return f"it escalates from level {from_level}, but the report is at level {s['level']}"
    if kind is EscalationKind.ombudsman_offer:
        if s["ombudsman_offered"]:
            return "the Ombudsman takeover was already offered"
        if to_level is not from_level:
            return "an Ombudsman offer does not move the report"
        return None
    if kind is EscalationKind.ombudsman:
        if not s["ombudsman_consent"]:
            return "the reporter has not consented to the Ombudsman takeover"
        if to_level is not Level.ombudsman or to_agency_id is None:
            return "an Ombudsman escalation goes to level ombudsman and names the Ombudsman office"
        if s["status"] not in HELD_BY_AGENCY:
            return "no agency holds the report; dispose it to the Ombudsman instead"
        return None
    if to_level is Level.ombudsman and s["level"] is not Level.ombudsman:
        return "only an escalation of kind ombudsman, with consent, goes to the Ombudsman"
    if s["agency_id"] is None and to_level is not Level.national:
        return "the report is with national routing, so it can only escalate at the national level"
    if to_level is Level.unit and s["unit_id"] is None:
        return "no unit is assigned"
    if to_level is Level.regional and to_agency_id is None:
        return "a regional escalation names the provincial coordinator"
    return None


def _escalated(s: Fields, data: Mapping[str, Any], at: datetime) -> Changes:
    kind = _ESCALATION_KINDS[data["kind"]]
    from_level = _LEVELS[data["from_level"]]
    to_level = _LEVELS[data["to_level"]]
    to_agency_id = data.get("to_agency_id")
    refusal = _escalation_refusal(s, kind, from_level, to_level, to_agency_id)
    if refusal:
        raise IllegalTransition("ComplaintEscalated", s["status"], refusal)
    changes: Changes = {
        "escalations": (*s["escalations"], Escalation(kind, from_level, to_level, to_agency_id, at)),
        "level": to_level,
    }
    if kind is EscalationKind.ombudsman_offer:
        changes["ombudsman_offered"] = True
        changes["ombudsman_offer_due"] = None
    elif kind is EscalationKind.ombudsman:
        changes["agency_id"] = to_agency_id
        changes["unit_id"] = None
        changes["ombudsman_took_over"] = True
    elif kind is EscalationKind.follow_up_overdue:
        changes["follow_up_answered"] = None
    follow_up_due = data.get("follow_up_due")
    if follow_up_due is not None:
        changes["follow_up_due"] = _moment(follow_up_due)
    return changes


def _resolved(s: Fields, data: Mapping[str, Any], at: datetime) -> Changes:
    return {
        **_answered(s, at),
        "follow_up_due": None,
        "resolution": data["resolution"],
        "resolved_at": at,
        "feedback_due": _moment(data["feedback_due"]),
        "feedback": None,
    }


def _feedback_given(s: Fields, data: Mapping[str, Any], at: datetime) -> Changes:
    return {"feedback": Feedback(data["satisfied"], data["rating"]), "feedback_due": None}


def _reopened(s: Fields, data: Mapping[str, Any], at: datetime) -> Changes:
    return {
        "reopen_count": s["reopen_count"] + 1,
        "follow_up_due": _moment(data["follow_up_due"]),
        "resolution": None,
        "resolved_at": None,
        "feedback": None,
        "feedback_due": None,
    }


def _closed(s: Fields, data: Mapping[str, Any], at: datetime) -> Changes:
    return {**_NO_DEADLINES, "closed_at": at, "close_reason": _CLOSE_REASONS[data["reason"]]}


def _consent_given(s: Fields, data: Mapping[str, Any], at: datetime) -> Changes:
    return {"ombudsman_consent": True}


def _feedback_refusal(s: Fields) -> str | None:
    return "feedback was already given for this resolution" if s["feedback"] is not None else None


def _consent_refusal(s: Fields) -> str | None:
    if not s["ombudsman_offered"]:
        return "the Ombudsman takeover has not been offered"
    if s["ombudsman_consent"]:
        return "consent was already given"
    return None


@dataclass(frozen=True, slots=True)
class Transition:
    allowed_from: frozenset[Status | None]  # None: the empty stream
    to: Status | None  # None: the status stays as it is
    apply: Apply
    refusal: Callable[[Fields], str | None] | None = None  # why a state refuses it, beyond its status
    schema_version: int = 1  # current schema version of the event's data


def _rule(
    event_type: str,
    allowed_from: Iterable[Status | None],
    to: Status | None,
    apply: Apply,
    refusal: Callable[[Fields], str | None] | None = None,
) -> tuple[str, Transition]:
    return event_type, Transition(frozenset(allowed_from), to, apply, refusal, current_version(event_type))


TRANSITIONS: dict[str, Transition] = dict(
    [
        _rule("ComplaintSubmitted", [None], Status.submitted, _submitted),
        _rule("ComplaintVerified", [Status.submitted], Status.verified, _verified),
        _rule("ComplaintPended", [Status.submitted], Status.pended, _pended),
        _rule("InformationProvided", [Status.pended], Status.submitted, _information_provided),
        _rule("ComplaintArchived", [Status.submitted, Status.pended], Status.archived, _archived),
        _rule(
            "DuplicateMarked", [Status.submitted, Status.pended, Status.verified], Status.duplicate, _duplicate_marked
        ),
        _rule("ComplaintDisposed", [Status.verified, Status.returned], Status.disposed, _disposed),
        _rule("DispositionReturned", [Status.disposed, Status.in_progress], Status.returned, _returned),
        _rule("DispositionAccepted", [Status.disposed], Status.in_progress, _accepted),
        _rule("ComplaintAssigned", [Status.in_progress], None, _assigned),
        _rule("FollowUpPosted", [Status.in_progress], None, _follow_up_posted),
        _rule("ComplaintEscalated", OPEN_STATUSES, None, _escalated),
        _rule("ComplaintResolved", [Status.in_progress], Status.resolved, _resolved),
        _rule("FeedbackGiven", [Status.resolved], None, _feedback_given, _feedback_refusal),
        _rule("ComplaintReopened", [Status.resolved], Status.in_progress, _reopened),
        _rule("ComplaintClosed", [Status.resolved], Status.closed, _closed),
        _rule("OmbudsmanConsentGiven", OPEN_STATUSES, None, _consent_given, _consent_refusal),
    ]
)


# -- the fold ---------------------------------------------------------------------------------------------


class StreamEvent(ComplaintEvent, Protocol):
    @property
    def stream(self) -> str: ...


STREAM_PREFIX = "complaint-"


def _transition(s: Fields, event_type: str) -> Transition:
    transition = TRANSITIONS.get(event_type)
    status = s["status"]
    if transition is None:
        raise IllegalTransition(event_type, status, "it is not a complaint event")
    if status not in transition.allowed_from:
        raise IllegalTransition(event_type, status)
    if transition.refusal is not None:
        refusal = transition.refusal(s)
        if refusal:
            raise IllegalTransition(event_type, status, refusal)
    return transition


def _changes(s: Fields, event: ComplaintEvent) -> Changes:
    """What `event` changes in the state with fields `s`; raises IllegalTransition or VersionGap."""
    version = event.version
    expected = s["version"] + 1
    if version != expected:
        raise VersionGap(s["tracking_id"], expected, version)
    event_type = event.type
    transition = _transition(s, event_type)
    data = event.data
    schema_version = getattr(event, "schema_version", None)
    if schema_version is not None and schema_version != transition.schema_version:
        data, _ = upcast(event_type, schema_version, dict(data))
    at = event.recorded_at
    changes = transition.apply(s, data, at)
    changes["version"] = version
    changes["last_event_at"] = at
    if transition.to is not None:
        changes["status"] = transition.to
    return changes


def ensure_allowed(state: ComplaintState, event_type: str) -> None:
    """Raise IllegalTransition unless `event_type` may happen now. Checks that need the event's data (the
    escalation rules) are made by `evolve`."""
    _transition(state.__dict__, event_type)


def missed_follow_up(state: ComplaintState) -> datetime | None:
    """The follow-up deadline the agency answered after, not red-marked yet (the answer came before routing's
    scheduler looked). Compared here, at decision time, never by the fold."""
    answered = state.follow_up_answered
    return answered[0] if answered is not None and answered[1] > answered[0] else None


def red_mark_pending(state: ComplaintState) -> datetime | None:
    """The follow-up deadline answered late that routing's scheduler will still red-mark (`missed_follow_up`, where
    a level above the report's watches it: not at the national level nor the Ombudsman's, nor on a report the
    Ombudsman holds, as routing's `next_level` has it). Followup closes the report only once it is marked (session
    30): closed, a report takes no event, and the agency's red mark was lost."""
    missed = missed_follow_up(state)
    if (
        missed is None
        or state.agency_id in (None, OMBUDSMAN_AGENCY)
        or state.level in (Level.national, Level.ombudsman)
    ):
        return None
    return missed


def ombudsman_offer_running(state: ComplaintState) -> datetime | None:
    """The Ombudsman offer's deadline if it runs now (routing offers the takeover when it passes): None once the
    offer was made (it is made once; a disposition after it sets `ombudsman_offer_due` again), while resolved (the
    report waits for its reporter, not "unresolved"), and on a report the Ombudsman holds (session 27: never
    offered to the office that holds it). Routing's scheduler and the agency queue's "resolution" deadline both
    read it (session 30: the queue showed a deadline that never ran)."""
    if (
        state.ombudsman_offered
        or state.status is Status.resolved
        or state.agency_id == OMBUDSMAN_AGENCY
    ):
        return None
    return state.ombudsman_offer_due


def allowed_event_types(state: ComplaintState) -> list[str]:
    """The event types the report's state accepts now (what a screen may offer as actions)."""
    s = state.__dict__
    return [
        event_type
        for event_type, transition in TRANSITIONS.items()
        if state.status in transition.allowed_from and (transition.refusal is None or not transition.refusal(s))
    ]


def evolve(state: ComplaintState, event: ComplaintEvent) -> ComplaintState:
    """The state after `event`. Pure: raises IllegalTransition or VersionGap and changes nothing."""
    return _copy(state, _changes(state.__dict__, event))


def fold(events: Iterable[ComplaintEvent], state: ComplaintState | None = None) -> ComplaintState | None:
    """Fold one complaint's `events` onto `state` (from scratch when None); None when both are empty.
    Equal to evolving event by event, but updates one working dict instead of building a state per event."""
    working: dict[str, Any] | None = None
    for event in events:
        if working is None:
            working = dict((state or _BLANK).__dict__)
        working.update(_changes(working, event))
    return state if working is None else _copy(_BLANK, working)


def replay(
    events: Iterable[StreamEvent], states: Mapping[str, ComplaintState] | None = None
) -> dict[str, ComplaintState]:
    """Fold events of many complaint streams, in any interleaving (e.g. `store.read_all(category="complaint")`),
    onto `states` (tracking_id -> state). Returns the new state of every complaint the events touched."""
    known = states or {}
    working: dict[str, dict[str, Any]] = {}
    for event in events:
        tracking_id = event.stream.removeprefix(STREAM_PREFIX)
        fields = working.get(tracking_id)
        if fields is None:
            fields = working[tracking_id] = dict(known.get(tracking_id, _BLANK).__dict__)
            fields["tracking_id"] = tracking_id
        fields.update(_changes(fields, event))
    return {tracking_id: _copy(_BLANK, fields) for tracking_id, fields in working.items()}
