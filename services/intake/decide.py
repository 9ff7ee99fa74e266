"""Intake's decisions: pure functions of the complaint's state, the command and the time.

Intake decides ComplaintSubmitted, InformationProvided, FeedbackGiven and OmbudsmanConsentGiven. Whether the
state allows an event is the shared fold's rule (`lapor.complaint.ensure_allowed`: information only while
pended, feedback once per resolution, consent only once offered); deadlines come from the SP4N policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from lapor.complaint import ComplaintState, IllegalTransition, Status, ensure_allowed
from lapor.policy import Sp4nPolicy
from lapor.problems import ValidationProblem
from schemas.events import (
    Channel,
    ComplaintKind,
    ComplaintSubmitted,
    EventData,
    FeedbackGiven,
    InformationProvided,
    OmbudsmanConsentGiven,
)

Event = TypeVar("Event", bound=EventData)


@dataclass(frozen=True)
class SubmitComplaint:
    """A report from any channel, its text already masked and its identity already in the vault."""

    tracking_id: str
    kind: ComplaintKind
    title: str
    body: str
    region_code: str | None
    channel: Channel
    reporter_token_hash: str
    category: str | None = None
    location: Mapping[str, Any] | None = None
    attachments: tuple[Mapping[str, Any], ...] = ()
    channel_ref: str | None = None
    anonymous: bool = False
    confidential: bool = False
    reporter_ref: str | None = None
    suggested_agency_id: str | None = None
    duplicate_suspect_of: tuple[str, ...] = field(default=())


def _build(model: type[Event], **data: Any) -> Event:
    """The event, or a 422 when the command passed the request's checks but not the event contract (masking can
    lengthen a text that was at its limit)."""
    try:
        return model(**data)
    except ValidationError as error:
        errors = [
            {"location": [str(part) for part in item["loc"]], "message": item["msg"], "type": item["type"]}
            for item in error.errors(include_url=False)
        ]
        first = errors[0]
        detail = f"the report does not fit {model.event_type()}: {'.'.join(first['location'])}: {first['message']}"
        raise ValidationProblem(detail, errors=errors) from None


def decide_submission(
    state: ComplaintState | None, command: SubmitComplaint, now: datetime, policy: Sp4nPolicy
) -> ComplaintSubmitted:
    if state is not None:
        raise IllegalTransition("ComplaintSubmitted", state.status, f"{command.tracking_id} is already taken")
    return _build(
        ComplaintSubmitted,
        tracking_id=command.tracking_id,
        kind=command.kind,
        title=command.title,
        body=command.body,
        category=command.category,
        region_code=command.region_code,
        location=command.location,
        channel=command.channel,
        channel_ref=command.channel_ref,
        anonymous=command.anonymous,
        confidential=command.confidential,
        reporter_ref=command.reporter_ref,
        reporter_token_hash=command.reporter_token_hash,
        attachments=command.attachments,
        suggested_agency_id=command.suggested_agency_id,
        duplicate_suspect_of=command.duplicate_suspect_of,
        verification_due=policy.verification_due(now),
    )


# The reporter's actions open only until a deadline of the fold, and why it is too late after it: the silence has
# decided (the pended report is archived, the resolved one closed), whether or not the loop that appends that
# (routing's scheduler, followup's closing) has run yet. Before, a late answer acted or not by which came first.
WINDOWS: Mapping[str, tuple[str, str]] = {
    "InformationProvided": (
        "archive_due",
        "the time to add the information ended on {}; the report is archived without it",
    ),
    "FeedbackGiven": (
        "feedback_due",
        "the time to answer this resolution ended on {}; the report closes without an answer",
    ),
}


# Consent to the Ombudsman's takeover is for a report still unresolved. Once the agency has resolved it, the reporter
# answers the resolution first: dissatisfied reopens it, and consent can be given then (routing offers the takeover
# only while the report is unresolved, and hands it over only then). Taken while resolved, routing handed the report
# to the Ombudsman, which can do nothing with a resolved report, and it closed on the agency's resolution.
RESOLVED_FIRST = (
    "the agency has resolved the report: answer the resolution first; if it does not satisfy you the report is "
    "reopened, and the Ombudsman's takeover can be asked for then"
)


def refused_now(state: ComplaintState, event_type: str, now: datetime) -> str | None:
    """Why the reporter may not take `event_type` now although the report's status allows it (the view then offers
    no form for it): its window has ended, or the report waits for the answer to a resolution."""
    window = WINDOWS.get(event_type)
    if window is not None and (due := getattr(state, window[0])) is not None and now > due:
        return window[1].format(due.isoformat())
    if event_type == "OmbudsmanConsentGiven" and state.status is Status.resolved:
        return RESOLVED_FIRST
    return None


def ensure_now(state: ComplaintState, event_type: str, now: datetime) -> None:
    """Raises IllegalTransition unless the reporter may take `event_type` now (each decision below checks it first)."""
    ensure_allowed(state, event_type)
    reason = refused_now(state, event_type, now)
    if reason:
        raise IllegalTransition(event_type, state.status, reason)


def decide_information(
    state: ComplaintState,
    text: str,
    attachments: tuple[Mapping[str, Any], ...],
    now: datetime,
    policy: Sp4nPolicy,
) -> InformationProvided:
    """The reporter answers a tunda: the report goes back to verification with a fresh deadline. Only within the
    pending period (`archive_due`, 30 working days; a bug hunt found late information reviving the report when it
    came before the scheduler's archiving)."""
    ensure_now(state, "InformationProvided", now)
    due = policy.verification_due(now)
    return _build(InformationProvided, text=text, attachments=attachments, verification_due=due)


def decide_feedback(
    state: ComplaintState, satisfied: bool, rating: int, comment: str | None, now: datetime
) -> FeedbackGiven:
    """The reporter answers a resolution; followup closes (satisfied) or reopens (not) the report. Only within the
    answer's window (`feedback_due`, 10 working days)."""
    ensure_now(state, "FeedbackGiven", now)
    return _build(FeedbackGiven, satisfied=satisfied, rating=rating, comment=comment)


def decide_ombudsman_consent(state: ComplaintState, now: datetime) -> OmbudsmanConsentGiven:
    """The reporter accepts the Ombudsman takeover offered after 60 working days unresolved; routing escalates. Not
    while a resolution waits for the reporter's answer (`RESOLVED_FIRST`)."""
    ensure_now(state, "OmbudsmanConsentGiven", now)
    return OmbudsmanConsentGiven()
