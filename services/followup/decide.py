"""What an agency may do with a report, as pure decisions: `(state, command, now) -> [event, ...]` or a refusal.

A refusal is `IllegalTransition` (HTTP 409) when the report's state does not allow the action now, and
`ValidationProblem` (422) when the command itself does not fit the report (a unit outside the agency, an unknown
agency suggested). An empty list means there is nothing to do. Deadlines are computed here, with the policy's
working-day calendar, and carried in the events.

The command models double as the HTTP request bodies (`services.followup.api`), so a limit is written once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Protocol

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from lapor.auth import within
from lapor.complaint import ComplaintState, Status, ensure_allowed, missed_follow_up, red_mark_pending
from lapor.limits import MaxItems, Once, Reason, Text, WholeNumber
from lapor.patterns import CONTROL, INVISIBLE, WHITESPACE
from lapor.policy import Sp4nPolicy
from lapor.privacy import present_escalations
from lapor.problems import ValidationProblem
from schemas.events import (
    AgencyId,
    Attachment,
    AttachmentSize,
    CloseReason,
    ComplaintAssigned,
    ComplaintClosed,
    ComplaintReopened,
    ComplaintResolved,
    DispositionAccepted,
    DispositionReturned,
    EventData,
    FollowUpPosted,
    Level,
)

# The reason a reopening carries when the dissatisfied reporter wrote none (the event requires one).
NO_REASON_GIVEN = "Pelapor tidak puas dengan penyelesaian (tanpa alasan tertulis)."


class Directory(Protocol):
    """What the decisions need to know of the agency directory."""

    def is_active(self, agency_id: str) -> bool: ...


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Accept(_Command):
    """Terima disposisi: the agency takes the report on."""

    note: Reason | None = None


class Return(_Command):
    """Kembalikan sebagai "bukan wewenang": not this agency's authority; routing disposes it again."""

    reason: Reason
    suggested_agency_id: AgencyId | None = Field(None, description="the agency the report belongs to, if known")


class Assign(_Command):
    """Teruskan ke unit: hand the report to a unit (OPD, puskesmas, kecamatan, ...) inside the agency."""

    unit_id: AgencyId = Field(description="the unit, as <agency_id>/<unit>", examples=["pemda-53.71/dinkes"])
    note: Reason | None = None


class AttachmentIn(Attachment):
    """An attachment as an officer gives it: its size is a JSON number, never text or a flag (`lapor.limits.
    WholeNumber`), as a reporter's is; the event keeps `schemas.events.Attachment`'s fields. Its address holds no
    control character nor one that shows nothing, as a reporter's may not (session 31: a NUL, an escape or
    `…/\u202egpj.exe`, shown as `…/exe.jpg`, was posted to the reporter and the public). Checked on the request
    only: events recorded before keep what they hold."""

    url: Annotated[
        str, StringConstraints(pattern=rf"^(https?://|/)[^{WHITESPACE}{CONTROL}{INVISIBLE}]+$", max_length=2048)
    ]
    size_bytes: Annotated[AttachmentSize, WholeNumber]  # the event's bounds, then the validator


class PostFollowUp(_Command):
    """Tindak lanjut: what the agency did. An internal one (public=false) is a note between officers."""

    text: Text
    public: StrictBool = True  # like every flag in a request: true or false, never 0/1 or "yes"
    attachments: Annotated[tuple[AttachmentIn, ...], MaxItems("attachments"), Once] = ()


class Resolve(_Command):
    """Selesaikan: the resolution the reporter is asked to accept or dispute."""

    resolution: Text


def decide_accept(state: ComplaintState, command: Accept, now: datetime) -> list[EventData]:
    ensure_allowed(state, "DispositionAccepted")
    return [DispositionAccepted(agency_id=state.owner, note=command.note)]


def decide_return(state: ComplaintState, command: Return, now: datetime, directory: Directory) -> list[EventData]:
    ensure_allowed(state, "DispositionReturned")
    agency_id = state.owner
    suggested = command.suggested_agency_id
    if suggested is not None:
        if within(suggested, agency_id):
            raise ValidationProblem(
                f"{suggested} is {agency_id} or one of its units: assign it inside the agency instead of returning it"
            )
        if not directory.is_active(suggested):
            raise ValidationProblem(f"{suggested} is not an agency of the directory")
    return [DispositionReturned(agency_id=agency_id, reason=command.reason, suggested_agency_id=suggested)]


def decide_assign(state: ComplaintState, command: Assign, now: datetime, directory: Directory) -> list[EventData]:
    ensure_allowed(state, "ComplaintAssigned")
    agency_id = state.owner
    if command.unit_id == agency_id or not within(command.unit_id, agency_id):
        raise ValidationProblem(f"{command.unit_id} is not a unit of {agency_id}")
    if not directory.is_active(command.unit_id):
        raise ValidationProblem(f"{command.unit_id} is not a unit of the directory")
    if state.unit_id == command.unit_id:
        return []  # already there: a repeated click changes nothing
    # A report an escalation took above its unit stays watched there: handing it to a (another) unit must not undo
    # the escalation (it went back to the unit's level, and the missed deadline, already handled, was never
    # escalated again; or a unit's missed deadline climbed to the agency again instead of on to the province).
    return [ComplaintAssigned(unit_id=command.unit_id, note=command.note, level=_kept_level(state, now))]


def _kept_level(state: ComplaintState, now: datetime) -> Level | None:
    """The level an assignment keeps: where an escalation of the present holding took the report (the agency's
    level only so; a report accepted by its agency is at that level without one), and the Ombudsman's. Also the
    agency's own level while its follow-up deadline has passed there and routing has not marked it yet (passed
    unanswered, or answered late): the agency missed it, and the mark goes from its level to the one above (session
    30: the assignment took the report to the unit's level, and the agency's missed deadline went from the unit to
    the agency itself, one level too low)."""
    if state.level in (Level.regional, Level.national, Level.ombudsman):
        return state.level
    if state.level is not Level.agency:
        return None
    escalated_here = present_escalations(state.escalations, state.disposed_at)
    passed_here = (state.follow_up_due is not None and now > state.follow_up_due) or missed_follow_up(state)
    if passed_here or any(record["to_level"] is Level.agency for record in escalated_here):
        return Level.agency
    return None


def decide_follow_up(
    state: ComplaintState,
    command: PostFollowUp,
    now: datetime,
    *,
    follow_up_id: str,
    drafted_by: str | None = None,
    approved_by: str | None = None,
) -> list[EventData]:
    """`drafted_by`/`approved_by` name the two officers of a two-step approval; a direct post names neither (the
    event's metadata names who posted it)."""
    ensure_allowed(state, "FollowUpPosted")
    return [
        FollowUpPosted(
            follow_up_id=follow_up_id,
            text=command.text,
            public=command.public,
            attachments=command.attachments,
            drafted_by=drafted_by,
            approved_by=approved_by,
        )
    ]


def decide_resolve(state: ComplaintState, command: Resolve, now: datetime, policy: Sp4nPolicy) -> list[EventData]:
    ensure_allowed(state, "ComplaintResolved")
    return [ComplaintResolved(resolution=command.resolution, feedback_due=policy.feedback_due(now))]


def decide_on_feedback(
    state: ComplaintState, *, satisfied: bool, comment: str | None, now: datetime, policy: Sp4nPolicy
) -> list[EventData]:
    """The reporter answered the resolution: satisfied closes the report, dissatisfied reopens it to the agency with
    the reporter's reason and a new follow-up deadline counted from `now`, when it is back with the agency (not from
    the answer: handled after an outage, that deadline had passed before the agency got the report back). Nothing
    when the report has moved on (already closed or reopened, e.g. when the reaction runs again after a restart),
    and nothing yet for a satisfied reporter while the agency's late answer waits for routing's red mark
    (`red_mark_pending`): closed, the report would never get it; the mark's own reaction closes it."""
    if state.status is not Status.resolved or state.feedback is None:
        return []
    if satisfied:
        if red_mark_pending(state) is not None:
            return []  # closed once routing has red-marked the late answer (`handlers.Reactions`)
        return [ComplaintClosed(reason=CloseReason.satisfied)]
    return [ComplaintReopened(reason=comment or NO_REASON_GIVEN, follow_up_due=policy.follow_up_due(now))]


def decide_close_in_silence(state: ComplaintState, now: datetime) -> list[EventData]:
    """The feedback window passed without an answer: the report closes (reason no_response). Nothing when the
    reporter answered, or the window is still open, or while a late answer waits for routing's red mark (the next
    round closes it)."""
    due = state.feedback_due
    if state.status is not Status.resolved or state.feedback is not None or due is None or now <= due:
        return []
    if red_mark_pending(state) is not None:
        return []
    return [ComplaintClosed(reason=CloseReason.no_response)]
