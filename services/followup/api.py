"""HTTP surface of the followup service: agency queues, the actions on a report, two-step approval, and the
webhooks agencies subscribe.

Every action on a report folds it and authorizes the caller against it (`acting_on`) before the request body is
even read, so a caller outside the report's agency is refused (403) whatever they send, and never learns its
version. The action then runs through the command runner: If-Match (stale: 412, nothing written), the decision
on the freshly folded state, append with the expected version. Views go through `lapor.privacy`.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from ipaddress import ip_address
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, StrictBool, field_validator

from lapor.auth import authorize_complaint, require, within
from lapor.commands import caused_event_id, etag, if_match_header, run_command
from lapor.complaint import STREAM_PREFIX, ComplaintState, Level, Status, ensure_allowed, evolve, fold, initial_state
from lapor.context import Context, ServiceContext
from lapor.egress import destination_refusal
from lapor.limits import DecimalDigits, Reason
from lapor.paths import AGENCY_ID, AgencyPath
from lapor.principal import AGENCY_SCOPED, NATIONAL_ADMIN_AGENCY, Principal, Role
from lapor.privacy import can_see, redact_event_data, reporter_identity, visible_complaints
from lapor.problems import Conflict, Forbidden, NotFound, PreconditionFailed, Problem, ValidationProblem, quoted
from lapor.store import RecordedEvent
from lapor.tracking import TrackingIdPath
from schemas.events import AgencyId, Attachment, Category, EscalationKind, EventData
from services.followup import approval, storage
from services.followup.approval import DraftStatus
from services.followup.decide import (
    Accept,
    Assign,
    PostFollowUp,
    Resolve,
    Return,
    decide_accept,
    decide_assign,
    decide_follow_up,
    decide_resolve,
    decide_return,
)
from services.followup.directory import Directory
from services.followup.handlers import stream_of
from services.followup.notifications import (
    MAX_WEBHOOKS,
    WEBHOOK,
    NotificationKind,
    TargetStats,
    TooManyTargets,
    create_target,
    deactivate_target,
    list_targets,
    webhook_policy,
)
from services.followup.projections import (
    AGENCY_DEADLINE,
    QueueCursor,
    QueueFilter,
    read_escalated,
    read_queue,
)
from services.followup.storage import moment

Decision = Callable[[ComplaintState, datetime], list[EventData]]
QueueStatus = Literal["disposed", "in_progress", "resolved"]
# The roles whose public follow-ups wait for the liaison officer when the agency asks for two-step approval.
DRAFTING_ROLES = frozenset({Role.admin_agency, Role.unit_officer})


# -- response models ----------------------------------------------------------------------------------------


class ComplaintSummary(BaseModel):
    """The report after an action; `version` is what the next action's If-Match names (also in `ETag`)."""

    tracking_id: str
    version: int
    status: Status
    level: Level
    agency_id: str | None
    unit_id: str | None
    follow_up_due: datetime | None
    feedback_due: datetime | None
    follow_up_count: int
    reopen_count: int


class QueueItem(BaseModel):
    tracking_id: str
    version: int = Field(description="send it as If-Match with the next action")
    title: str | None = Field(description="personal data in it masked (lapor.privacy)")
    kind: str | None
    category: str | None
    status: QueueStatus
    level: Level
    agency_id: str
    unit_id: str | None
    region_code: str | None
    anonymous: bool
    confidential: bool
    disposed_at: datetime | None
    deadline_kind: Literal["follow_up", "resolution", "feedback"] | None = Field(
        description="follow_up: tindak lanjut due; resolution: unresolved by then, the reporter is offered the "
        "Ombudsman (only until that offer is made); feedback: resolved, the reporter's answer is due (silence closes "
        "it)"
    )
    deadline: datetime | None
    working_days_left: int | None = Field(description="negative when overdue; 0: due today")
    overdue: bool
    deadline_approaching: bool
    follow_up_count: int
    reopen_count: int
    bounce_count: int
    drafts_awaiting_approval: int


class QueuePage(BaseModel):
    agency_id: str
    as_of: datetime
    items: list[QueueItem]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class EscalationView(BaseModel):
    kind: EscalationKind
    reason: str = Field(description="personal data in it masked (lapor.privacy)")
    from_level: Level
    to_level: Level
    escalated_at: datetime
    automatic: bool = Field(description="true when a deadline timer decided it")


class EscalatedItem(QueueItem):
    """A report escalated to the agency reading the worklist, and held by another: the holder's deadline now
    running (`deadline`, `overdue`) and the escalation that made the agency its watcher."""

    escalation: EscalationView


class EscalatedPage(BaseModel):
    agency_id: str
    as_of: datetime
    items: list[EscalatedItem]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class DraftView(BaseModel):
    draft_id: str
    text: str
    attachments: list[Attachment]
    drafted_by: str
    drafted_at: datetime
    status: DraftStatus
    reviewed_by: str | None
    reviewed_at: datetime | None
    note: str | None = Field(description="the liaison officer's note when sent back")
    follow_up_id: str


class FollowUpOutcome(BaseModel):
    status: Literal["posted", "pending_approval"]
    follow_up_id: str | None = Field(description="posted: the follow-up's id")
    draft: DraftView | None = Field(description="pending_approval: the draft the liaison officer must approve")
    complaint: ComplaintSummary


class ApprovalSettingView(BaseModel):
    agency_id: str
    required: bool
    set_for: str | None = Field(description="the agency whose setting applies (this one or one above it)")
    updated_by: str | None
    updated_at: datetime | None
    version: int = Field(
        description="of this agency's own setting (0: never set): send it as If-Match when setting it (the ETag)"
    )


class WebhookView(BaseModel):
    webhook_id: str
    agency_id: str
    url: str
    kinds: list[NotificationKind] = Field(description="the kinds it receives")
    every_kind: bool = Field(
        description="registered without `kinds`: it receives every kind, those added later included"
    )
    active: bool
    created_by: str
    created_at: datetime
    delivered: int
    pending: int
    failed: int
    last_error: str | None


class WebhookCreated(WebhookView):
    secret: str = Field(description="HMAC-SHA256 key of X-Lapor-Signature; shown only now")


# -- request models -----------------------------------------------------------------------------------------


class SendBack(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Reason


class ApprovalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    required: StrictBool  # like every flag in a request: true or false, never 0/1 or "yes"


_LOOPBACK_NAMES = frozenset({"localhost"})


class WebhookRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: HttpUrl = Field(
        description="https; plain http only to this machine (development). Its host must be, or resolve only to, "
        "public internet addresses or networks the operator allows"
    )
    kinds: list[NotificationKind] | None = Field(
        None,
        min_length=1,
        description="the kinds to receive, each once (a kind named again is dropped); without it (or null) every "
        "kind, those added later included",
    )

    @field_validator("url")
    @classmethod
    def _secure(cls, url: HttpUrl) -> HttpUrl:
        if url.port == 0:  # no connection reaches it: every delivery would fail, retried for hours
            raise ValueError("port 0 names no service: give the receiver's port, or none for the scheme's own")
        if url.scheme == "https" or _is_loopback(url.host or ""):
            return url
        raise ValueError("a webhook must use https (plain http only to localhost)")


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# -- acting on a report -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Acting:
    principal: Principal
    state: ComplaintState


def current_state(ctx: ServiceContext, tracking_id: str) -> ComplaintState:
    state = fold(ctx.store.read_stream(stream_of(tracking_id)))
    if state is None:
        raise NotFound(f"complaint {tracking_id} not found")
    return state


def may_act(principal: Principal, action: str, state: ComplaintState) -> bool:
    try:
        authorize_complaint(principal, action, state)
    except Forbidden:
        return False
    return True


def held_before(principal: Principal, action: str, events: Sequence[RecordedEvent]) -> bool:
    """Whether `principal` could have taken `action` on the report at an earlier version: its agency (a unit
    officer: its unit) held the report then and holds it no longer."""
    if not events:
        return False
    state = initial_state(events[0].stream.removeprefix(STREAM_PREFIX))
    for event in events[:-1]:
        state = evolve(state, event)
        if may_act(principal, action, state):
            return True
    return False


def no_longer_held(principal: Principal, state: ComplaintState, if_match: int | None) -> Problem:
    """The answer to a caller whose agency or unit held the report a moment ago and no longer does (returned as
    bukan wewenang, disposed elsewhere, assigned to another unit, taken over by the Ombudsman): its view was
    stale, not forbidden (session 30: it was 403). A stale If-Match is 412, otherwise 409. Neither says where the
    report went nor, to a caller who may no longer act on it, its current version: only what the caller's own
    queue shows, that the report has left it."""
    scope = principal.unit_id if principal.role is Role.unit_officer else principal.agency_id
    gone = f"complaint {state.tracking_id} is no longer with {scope}"
    if if_match is not None and if_match != state.version:
        return PreconditionFailed(f"{gone}: it changed since version {if_match}; read your queue again",
                                  current_version=None)
    return Conflict(f"{gone}: it was returned or moved since it was read; read your queue again")


def acting_on(action: str) -> Callable[..., Acting]:
    """A dependency: the caller, authorized for `action` on the report in the path as it is now, and allowed to see
    it (`lapor.privacy`), judged here, before anything is written: an action that commits is never answered 404."""

    def dependency(
        tracking_id: TrackingIdPath,
        ctx: Context,
        request: Request,
        principal: Principal | None = Depends(require(action)),
    ) -> Acting:
        events = ctx.store.read_stream(stream_of(tracking_id))
        state = fold(events)
        if state is None:
            raise NotFound(f"complaint {tracking_id} not found")
        try:
            authorize_complaint(principal, action, state)
        except Forbidden:
            # An action, not a read (the drafts' list stays 403: there is no stale write to report).
            if request.method != "GET" and principal is not None and held_before(principal, action, events):
                # If-Match is read only here (the route's own dependency parses it later): a malformed one keeps
                # its 400 (two differing ones their 422), and an outsider's refusal is 403 whatever it sends.
                if_match = if_match_header(request, request.headers.get("if-match"))
                raise no_longer_held(principal, state, if_match) from None
            raise
        assert principal is not None  # no followup action is public: authorize refused a missing token
        if not can_see(state, principal):
            raise NotFound(f"complaint {tracking_id} not found")
        return Acting(principal, state)

    dependency.__name__ = f"acting_on_{action.replace('.', '_')}"
    return dependency


def summary(state: ComplaintState) -> ComplaintSummary:
    """The summary of `state` after an action. Whether the caller may see the report was judged by `acting_on` on
    the state they acted on: their own action may take the report out of their sight (a return as bukan wewenang),
    and they still learn what it did. The summary's fields are ids, statuses, deadlines and counts: nothing
    personal."""
    return ComplaintSummary.model_validate({name: getattr(state, name) for name in ComplaintSummary.model_fields})


def check_if_match(if_match: int | None, state: ComplaintState) -> None:
    """For actions that do not append (a draft, a draft sent back), and an approval before it claims the draft: the
    same precondition as the runner's, on the state the caller was authorized on."""
    if if_match is not None and if_match != state.version:
        raise PreconditionFailed(
            f"{stream_of(state.tracking_id)} is at version {state.version}, not {if_match}: read it again",
            current_version=state.version,
        )


def act(
    ctx: ServiceContext,
    response: Response,
    acting: Acting,
    action: str,
    if_match: int | None,
    decision: Decision,
    *,
    event_id: uuid.UUID | None = None,
) -> ComplaintSummary:
    """Run `decision` on the report through the command runner (authorizing again on the state it decides on)."""
    principal = acting.principal
    tracking_id = acting.state.tracking_id

    def decide(state: ComplaintState, now: datetime) -> list[Any]:
        if not may_act(principal, action, state):  # `acting_on` let it act a moment ago: moved away since
            raise no_longer_held(principal, state, None)
        return [event.to_new_event(event_id=event_id) for event in decision(state, now)]

    try:
        result = run_command(ctx, stream_of(tracking_id), decide, principal=principal, if_match=if_match)
    except PreconditionFailed:
        # Stale, and perhaps moved away since `acting_on` read it: then the current version is not the caller's.
        now_state = current_state(ctx, tracking_id)
        if not may_act(principal, action, now_state):
            raise no_longer_held(principal, now_state, if_match) from None
        raise
    response.headers["ETag"] = result.etag
    return summary(current_state(ctx, tracking_id))


def draft_views(
    ctx: ServiceContext, drafts: Iterable[approval.Draft], state: ComplaintState, principal: Principal
) -> list[DraftView]:
    """The drafts as `principal` may read them: like a posted follow-up, the text masked and the reporter's vault
    record scrubbed from it (an officer may name the reporter, whom no detector knows; session 27: drafts were not),
    read from the vault once for them all."""
    identity = reporter_identity(ctx.vault, state, principal)
    return [
        DraftView.model_validate(
            redact_event_data("FollowUpPosted", draft.as_data(), principal, anonymous=state.anonymous,
                              identity=identity)
        )
        for draft in drafts
    ]


def needs_approval(ctx: ServiceContext, principal: Principal, state: ComplaintState, command: PostFollowUp) -> bool:
    """The setting of whoever holds the report: the unit it is assigned to (its own, else inherited), else its
    agency. Whoever writes it, a follow-up on a unit's report is judged by the unit's setting."""
    if not command.public or principal.role not in DRAFTING_ROLES:
        return False
    with ctx.db.read() as tx:
        return approval.approval_setting(tx, state.unit_id or state.owner).required


def posted_follow_up(ctx: ServiceContext, tracking_id: str, follow_up_id: str) -> tuple[int, str | None] | None:
    """(version, approved_by) of the follow-up posted under `follow_up_id`, if it is in the log."""
    for event in ctx.store.read_stream(stream_of(tracking_id)):
        if event.type == "FollowUpPosted" and event.data["follow_up_id"] == follow_up_id:
            return event.version, event.data.get("approved_by")
    return None


# -- the router ---------------------------------------------------------------------------------------------


def build_router(ctx: ServiceContext) -> APIRouter:
    router = APIRouter(tags=["followup"])
    storage.install_service_tables(ctx.db)
    directory = Directory(ctx.store)

    def known_agency(agency_id: str) -> None:
        if not directory.knows(agency_id):
            raise NotFound(f"agency {agency_id} not found")

    @router.get(f"/api/queues/{AGENCY_ID}", response_model=QueuePage, summary="An agency's queue")
    def queue(
        agency_id: AgencyPath,
        ctx: Context,
        principal: Principal | None = Depends(require("queue.read")),
        status: Annotated[list[QueueStatus] | None, Query(description="any of these (default: all open)")] = None,
        unit: Annotated[AgencyId | None, Query(description="only what this unit (or one inside it) holds")] = None,
        category: Category | None = None,
        overdue: bool | None = None,
        awaiting_approval: Annotated[bool | None, Query(description="with a draft waiting for approval")] = None,
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=200), DecimalDigits] = 50,
    ) -> QueuePage:
        """The agency's open reports (and its units'): overdue first, then by the deadline that runs out first. A
        unit officer reads only the unit's queue."""
        known_agency(agency_id)
        if unit is not None and not within(unit, agency_id):
            raise ValidationProblem(f"unit {unit} is not inside {agency_id}")
        filters = QueueFilter(
            statuses=[Status(value) for value in status] if status else QueueFilter.statuses,
            unit_id=unit,
            category=category,
            overdue=overdue,
            awaiting_approval=awaiting_approval,
        )
        now = ctx.clock.now()
        after = QueueCursor.decode(cursor) if cursor else None
        with ctx.db.read() as tx:
            rows, next_cursor = read_queue(tx, agency_id, filters, now, after=after, limit=limit)
        items = [queue_item(view, now, ctx) for view in shown(ctx, rows, principal)]
        return QueuePage(
            agency_id=agency_id,
            as_of=now,
            items=items,
            next_cursor=next_cursor.encode() if next_cursor else None,
        )

    @router.get(
        f"/api/queues/{AGENCY_ID}/escalated", response_model=EscalatedPage, summary="Reports escalated to an agency"
    )
    def escalated(
        agency_id: AgencyPath,
        ctx: Context,
        principal: Principal | None = Depends(require("queue.read_escalated")),
        overdue: bool | None = None,
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=200), DecimalDigits] = 50,
    ) -> EscalatedPage:
        """The open reports other agencies hold that were escalated to this one in their present holding and
        that it watches now: the holder missed its follow-up deadline and has not answered since. In queue order
        (overdue first). The agency's admin and liaison officer read it, and oversight; the national level's
        (`kemenpanrb`) is the national admin's, not the ministry's own staff's."""
        known_agency(agency_id)
        assert principal is not None  # not a public action: require refused a missing token
        if agency_id == NATIONAL_ADMIN_AGENCY and principal.role in AGENCY_SCOPED:
            raise Forbidden("the reports escalated to the national level are watched by the national admin")
        now = ctx.clock.now()
        after = QueueCursor.decode(cursor) if cursor else None
        with ctx.db.read() as tx:
            rows, next_cursor = read_escalated(tx, agency_id, now, overdue=overdue, after=after, limit=limit)
        items = [queue_item(view, now, ctx, EscalatedItem) for view in shown(ctx, rows, principal)]
        return EscalatedPage(
            agency_id=agency_id,
            as_of=now,
            items=items,
            next_cursor=next_cursor.encode() if next_cursor else None,
        )

    @router.post("/api/complaints/{tracking_id}/accept", response_model=ComplaintSummary, summary="Terima disposisi")
    def accept(
        ctx: Context,
        response: Response,
        command: Accept | None = None,
        acting: Acting = Depends(acting_on("complaint.accept")),
        if_match: int | None = Depends(if_match_header),
    ) -> ComplaintSummary:
        accepted = command or Accept()
        return act(ctx, response, acting, "complaint.accept", if_match, lambda s, now: decide_accept(s, accepted, now))

    @router.post(
        "/api/complaints/{tracking_id}/return", response_model=ComplaintSummary, summary="Bukan wewenang: return"
    )
    def return_(
        ctx: Context,
        response: Response,
        command: Return,
        acting: Acting = Depends(acting_on("complaint.return")),
        if_match: int | None = Depends(if_match_header),
    ) -> ComplaintSummary:
        """Not this agency's authority: back to national routing, to be disposed again (with the agency it
        belongs to, if known)."""
        return act(
            ctx, response, acting, "complaint.return", if_match,
            lambda s, now: decide_return(s, command, now, directory),
        )

    @router.post("/api/complaints/{tracking_id}/assign", response_model=ComplaintSummary, summary="Assign to a unit")
    def assign(
        ctx: Context,
        response: Response,
        command: Assign,
        acting: Acting = Depends(acting_on("complaint.assign")),
        if_match: int | None = Depends(if_match_header),
    ) -> ComplaintSummary:
        return act(
            ctx, response, acting, "complaint.assign", if_match,
            lambda s, now: decide_assign(s, command, now, directory),
        )

    @router.post(
        "/api/complaints/{tracking_id}/follow-ups",
        status_code=201,
        response_model=FollowUpOutcome,
        summary="Post a follow-up (tindak lanjut)",
        responses={202: {"model": FollowUpOutcome, "description": "drafted: waiting for the liaison officer"}},
    )
    def post_follow_up(
        ctx: Context,
        response: Response,
        command: PostFollowUp,
        acting: Acting = Depends(acting_on("complaint.post_follow_up")),
        if_match: int | None = Depends(if_match_header),
    ) -> FollowUpOutcome:
        """Posted at once (201), or, when the agency requires two-step approval and the author is its admin or a
        unit officer, kept as a draft for the liaison officer (202)."""
        principal, state = acting.principal, acting.state
        if needs_approval(ctx, principal, state, command):
            check_if_match(if_match, state)
            ensure_allowed(state, "FollowUpPosted")
            with ctx.db.transaction() as tx:
                draft = approval.create_draft(
                    tx,
                    state=state,
                    text=command.text,
                    attachments=command.attachments,
                    drafted_by=principal.subject,
                    now=ctx.clock.now(),
                )
            response.status_code = 202
            response.headers["ETag"] = etag(state.version)
            return FollowUpOutcome(
                status="pending_approval",
                follow_up_id=None,
                draft=draft_views(ctx, [draft], state, principal)[0],
                complaint=summary(state),
            )
        follow_up_id = "fu-" + secrets.token_hex(8)
        posted = act(
            ctx, response, acting, "complaint.post_follow_up", if_match,
            lambda s, now: decide_follow_up(s, command, now, follow_up_id=follow_up_id),
        )
        return FollowUpOutcome(status="posted", follow_up_id=follow_up_id, draft=None, complaint=posted)

    @router.get(
        "/api/complaints/{tracking_id}/follow-ups/drafts",
        response_model=list[DraftView],
        summary="Drafted follow-ups",
    )
    def drafts(
        ctx: Context,
        status: DraftStatus | None = None,
        acting: Acting = Depends(acting_on("complaint.read_follow_up_drafts")),
    ) -> list[DraftView]:
        """The drafts of the agency holding the report, made since it last reached it; those of an earlier
        holding (another agency, before a return) are left behind."""
        with ctx.db.read() as tx:
            found = approval.drafts_of(tx, acting.state.tracking_id, status)
        present = [draft for draft in found if approval.of_present_holding(draft, acting.state)]
        return draft_views(ctx, present, acting.state, acting.principal)

    @router.post(
        "/api/complaints/{tracking_id}/follow-ups/drafts/{draft_id}/approve",
        response_model=FollowUpOutcome,
        summary="Approve a drafted follow-up (liaison officer)",
    )
    def approve(
        draft_id: str,
        ctx: Context,
        response: Response,
        acting: Acting = Depends(acting_on("complaint.review_follow_up")),
        if_match: int | None = Depends(if_match_header),
    ) -> FollowUpOutcome:
        """Posts the draft as a public follow-up naming its author and its approver.

        If-Match is checked before the draft is claimed (session 31): a stale one claimed it first and put it back
        after the 412, so another liaison officer approving it meanwhile was refused (409), and an approval of it
        already under way was put back to `pending`. The claim stays the guard against two approvers; the runner
        checks If-Match again on the append, for a change in between (then the draft is put back, as before)."""
        principal, tracking_id = acting.principal, acting.state.tracking_id
        check_if_match(if_match, acting.state)
        draft = waiting_draft(ctx, acting.state, draft_id, principal)
        with ctx.db.transaction() as tx:
            if not approval.claim_for_approval(tx, draft_id, by=principal.subject, now=ctx.clock.now()):
                raise Conflict(f"draft {draft_id} is no longer waiting for approval")
        command = PostFollowUp(text=draft.text, public=True, attachments=draft.attachments)

        def decision(state: ComplaintState, now: datetime) -> list[EventData]:
            if not approval.of_present_holding(draft, state):  # the report changed hands since it was read
                raise Conflict(f"draft {draft_id} is of an earlier holding of the report")
            return decide_follow_up(
                state, command, now,
                follow_up_id=draft.follow_up_id, drafted_by=draft.drafted_by, approved_by=principal.subject,
            )

        try:
            posted = act(
                ctx, response, acting, "complaint.review_follow_up", if_match, decision,
                event_id=caused_event_id(f"follow-up-draft:{draft_id}"),
            )
        finally:
            # Whatever happened, the log says whether the follow-up is out; the draft follows it.
            found = posted_follow_up(ctx, tracking_id, draft.follow_up_id)
            with ctx.db.transaction() as tx:
                approval.settle_approval(
                    tx,
                    draft_id,
                    posted_version=found[0] if found else None,
                    approved_by=found[1] if found else None,
                )
        return FollowUpOutcome(status="posted", follow_up_id=draft.follow_up_id, draft=None, complaint=posted)

    @router.post(
        "/api/complaints/{tracking_id}/follow-ups/drafts/{draft_id}/send-back",
        response_model=DraftView,
        summary="Send a drafted follow-up back (liaison officer)",
    )
    def send_back(
        draft_id: str,
        body: SendBack,
        ctx: Context,
        acting: Acting = Depends(acting_on("complaint.review_follow_up")),
        if_match: int | None = Depends(if_match_header),
    ) -> DraftView:
        principal, state = acting.principal, acting.state
        check_if_match(if_match, state)
        waiting_draft(ctx, state, draft_id, principal)
        with ctx.db.transaction() as tx:
            if not approval.send_back(tx, draft_id, by=principal.subject, note=body.note, now=ctx.clock.now()):
                raise Conflict(f"draft {draft_id} is no longer waiting for approval")
            sent = approval.get_draft(tx, state.tracking_id, draft_id)
        assert sent is not None
        return draft_views(ctx, [sent], state, principal)[0]

    @router.post("/api/complaints/{tracking_id}/resolve", response_model=ComplaintSummary, summary="Resolve")
    def resolve(
        ctx: Context,
        response: Response,
        command: Resolve,
        acting: Acting = Depends(acting_on("complaint.resolve")),
        if_match: int | None = Depends(if_match_header),
    ) -> ComplaintSummary:
        """The reporter then has the feedback window (10 working days) to answer; silence closes the report."""
        return act(
            ctx, response, acting, "complaint.resolve", if_match,
            lambda s, now: decide_resolve(s, command, now, ctx.policy),
        )

    # -- agency settings: two-step approval and webhooks ------------------------------------------------------

    @router.get(
        f"/api/agencies/{AGENCY_ID}/follow-up-approval",
        response_model=ApprovalSettingView,
        summary="Whether the agency's follow-ups need the liaison officer's approval",
    )
    def read_approval(
        agency_id: AgencyPath,
        ctx: Context,
        response: Response,
        principal: Principal | None = Depends(require("queue.read")),
    ) -> ApprovalSettingView:
        known_agency(agency_id)
        with ctx.db.read() as tx:
            setting = approval.approval_setting(tx, agency_id)
        response.headers["ETag"] = etag(setting.version)
        return ApprovalSettingView.model_validate(setting, from_attributes=True)

    @router.put(
        f"/api/agencies/{AGENCY_ID}/follow-up-approval",
        response_model=ApprovalSettingView,
        summary="Turn two-step approval of follow-ups on or off (agency admin)",
    )
    def set_approval(
        agency_id: AgencyPath,
        body: ApprovalRequest,
        ctx: Context,
        response: Response,
        principal: Principal | None = Depends(require("agency.configure_follow_up")),
        if_match: int | None = Depends(if_match_header),
    ) -> ApprovalSettingView:
        """If-Match names the `version` of the agency's own setting (GET, or this route's ETag; 0: never set): stale,
        412 naming the current one, nothing written (session 31: there was none, so of two admins setting it from
        one reading the later silently undid the other's change)."""
        known_agency(agency_id)
        assert principal is not None
        with ctx.db.transaction() as tx:
            written = approval.set_approval(
                tx, agency_id, required=body.required, by=principal.subject, now=ctx.clock.now(), if_match=if_match
            )
            setting = approval.approval_setting(tx, agency_id)
        if not written:
            raise PreconditionFailed(
                f"the follow-up approval setting of {agency_id} is at version {setting.version}, not {if_match}: "
                "read it again",
                current_version=setting.version,
            )
        response.headers["ETag"] = etag(setting.version)
        return ApprovalSettingView.model_validate(setting, from_attributes=True)

    @router.post(
        f"/api/agencies/{AGENCY_ID}/webhooks",
        status_code=201,
        response_model=WebhookCreated,
        summary="Subscribe a webhook to the agency's notifications (agency admin)",
    )
    def create_webhook(
        agency_id: AgencyPath,
        body: WebhookRequest,
        ctx: Context,
        principal: Principal | None = Depends(require("agency.configure_follow_up")),
    ) -> WebhookCreated:
        """The agency (and the units inside it) notify the URL of new queue items, reports escalated to the agency
        that it watches, and approaching deadlines: every kind, those added later included, unless `kinds` names
        some. Each POST is signed: `X-Lapor-Signature: sha256=HMAC(secret, "<X-Lapor-Timestamp>.<body>")`. A URL
        whose host is, or resolves to, an address off the public internet (and outside the operator's allowed
        networks), or does not resolve, is refused (422)."""
        known_agency(agency_id)
        assert principal is not None
        host = (body.url.host or "").strip("[]")  # an IPv6 literal comes bracketed
        refusal = destination_refusal(webhook_policy(ctx.settings), host, body.url.port or 443)
        if refusal is not None:
            raise ValidationProblem(refusal, location=("body", "url"))
        try:
            with ctx.db.transaction() as tx:
                target = create_target(
                    tx,
                    agency_id=agency_id,
                    channel=WEBHOOK,
                    address=str(body.url),
                    kinds=body.kinds,
                    created_by=principal.subject,
                    now=ctx.clock.now(),
                )
        except TooManyTargets:
            raise Conflict(
                f"agency {agency_id} has {MAX_WEBHOOKS} webhooks, the most it may have: remove one it no longer needs "
                f"(DELETE /api/agencies/{agency_id}/webhooks/<webhook_id>) first"
            ) from None
        view = webhook_view(TargetStats(target, 0, 0, 0, None))
        return WebhookCreated(**view.model_dump(), secret=target.secret)

    @router.get(
        f"/api/agencies/{AGENCY_ID}/webhooks",
        response_model=list[WebhookView],
        summary="The agency's webhooks and how their deliveries went (agency admin)",
    )
    def read_webhooks(
        agency_id: AgencyPath,
        ctx: Context,
        principal: Principal | None = Depends(require("agency.configure_follow_up")),
    ) -> list[WebhookView]:
        known_agency(agency_id)
        with ctx.db.read() as tx:
            return [webhook_view(stats) for stats in list_targets(tx, agency_id) if stats.target.channel == WEBHOOK]

    @router.delete(
        f"/api/agencies/{AGENCY_ID}/webhooks/{{webhook_id}}",
        status_code=204,
        summary="Unsubscribe a webhook (agency admin)",
    )
    def delete_webhook(
        agency_id: AgencyPath,
        webhook_id: str,
        ctx: Context,
        principal: Principal | None = Depends(require("agency.configure_follow_up")),
    ) -> Response:
        with ctx.db.transaction() as tx:
            if not deactivate_target(tx, agency_id, webhook_id):
                raise NotFound(f"agency {agency_id} has no active webhook {quoted(webhook_id)}")
        return Response(status_code=204)

    return router


def waiting_draft(ctx: ServiceContext, state: ComplaintState, draft_id: str, reviewer: Principal) -> approval.Draft:
    """The draft, if it may be reviewed by `reviewer` now. A draft of an earlier holding of the report is not
    found: the agency holding it now never sees what another agency (or itself, before a return) drafted."""
    tracking_id = state.tracking_id
    with ctx.db.read() as tx:
        draft = approval.get_draft(tx, tracking_id, draft_id)
    if draft is None or not approval.of_present_holding(draft, state):
        raise NotFound(f"complaint {tracking_id} has no draft {quoted(draft_id)}")
    if draft.drafted_by == reviewer.subject:
        raise Forbidden("a draft is approved or sent back by someone other than its author")
    if draft.status in (DraftStatus.approved, DraftStatus.sent_back):
        raise Conflict(f"draft {draft_id} was already {draft.status.value.replace('_', ' ')}")
    return draft


def shown(ctx: ServiceContext, rows: list[dict[str, Any]], principal: Principal | None) -> list[dict[str, Any]]:
    """The queue rows `principal` may see, redacted. The reporter's identity is scrubbed from the title (the
    national admin may have corrected it naming the reporter, whom no detector knows), as in the complaint view."""
    return visible_complaints(rows, principal, identity=lambda view: ctx.vault.identity(view["reporter_ref"]))


def queue_item(
    view: dict[str, Any], now: datetime, ctx: ServiceContext, model: type[QueueItem] = QueueItem
) -> QueueItem:
    deadline = moment(view["deadline"])
    agency_deadline = deadline if view["urgency"] == AGENCY_DEADLINE else None
    return model.model_validate(
        {
            **{name: view.get(name) for name in model.model_fields},
            "deadline": deadline,
            "disposed_at": moment(view["disposed_at"]),
            "working_days_left": ctx.policy.working_days_left(deadline, now) if deadline else None,
            "overdue": agency_deadline is not None and now > agency_deadline,
            "deadline_approaching": agency_deadline is not None
            and ctx.policy.deadline_approaching(agency_deadline, now),
        }
    )


def webhook_view(stats: TargetStats) -> WebhookView:
    target = stats.target
    return WebhookView(
        webhook_id=target.target_id,
        agency_id=target.agency_id,
        url=target.address,
        kinds=list(target.kinds),
        every_kind=target.every_kind,
        active=target.active,
        created_by=target.created_by,
        created_at=target.created_at,
        delivered=stats.delivered,
        pending=stats.pending,
        failed=stats.failed,
        last_error=stats.last_error,
    )
