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

from lapor.complaint import ComplaintState, IllegalTransition, ensure_allowed
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


def decide_information(
    state: ComplaintState,
    text: str,
    attachments: tuple[Mapping[str, Any], ...],
    now: datetime,
    policy: Sp4nPolicy,
) -> InformationProvided:
    """The reporter answers a tunda: the report goes back to verification with a fresh deadline."""
    ensure_allowed(state, "InformationProvided")
    due = policy.verification_due(now)
    return _build(InformationProvided, text=text, attachments=attachments, verification_due=due)


def decide_feedback(
    state: ComplaintState, satisfied: bool, rating: int, comment: str | None, now: datetime
) -> FeedbackGiven:
    """The reporter answers a resolution; followup closes (satisfied) or reopens (not) the report. Only within the
    answer's window (10 working days): after it the silence has closed the report, whether or not followup's closing
    loop has appended that yet (an answer that came after the window but before the loop reopened the report, or
    did not, by which came first)."""
    ensure_allowed(state, "FeedbackGiven")
    if answer_too_late(state, now):
        assert state.feedback_due is not None
        reason = (
            f"the time to answer this resolution ended on {state.feedback_due.isoformat()}; the report closes "
            "without an answer"
        )
        raise IllegalTransition("FeedbackGiven", state.status, reason)
    return _build(FeedbackGiven, satisfied=satisfied, rating=rating, comment=comment)


def answer_too_late(state: ComplaintState, now: datetime) -> bool:
    """Whether the reporter's window to answer the resolution has ended (the view then offers no answer)."""
    return state.feedback_due is not None and now > state.feedback_due


def decide_ombudsman_consent(state: ComplaintState) -> OmbudsmanConsentGiven:
    """The reporter accepts the Ombudsman takeover offered after 60 working days unresolved; routing escalates."""
    ensure_allowed(state, "OmbudsmanConsentGiven")
    return OmbudsmanConsentGiven()
