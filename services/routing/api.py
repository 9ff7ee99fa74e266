"""Routing's HTTP surface.

- `GET /api/verification-queue` (and `/{tracking_id}`): reports waiting for routing, oldest first, with the time
  left on the verification limit and the agencies the rules propose.
- `POST /api/complaints/{id}/verify|pend|archive|dispose|mark-duplicate`: the national admin's decisions, through
  the command runner (If-Match honoured, ETag returned; an illegal transition is 409).
- `GET /api/agencies`, `GET /api/agencies/{agency_id}` (public), `POST /api/agencies`,
  `PUT /api/agencies/{agency_id}` (national admin): the directory, every change an event.
- `GET /api/routing-rules` (public), `PUT /api/routing-rules/{rule_id}` (national admin; If-Match names the rule's
  `version`, ETag returned).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from lapor.auth import AGENCY_STAFF, OVERSIGHT, authorize_complaint, require, within
from lapor.commands import if_match_header, run_command
from lapor.complaint import ComplaintState, PendingEvent, Status, ensure_allowed, evolve, fold
from lapor.context import Context, ServiceContext
from lapor.directory import AgencyRecord as DirectoryRecord
from lapor.directory import agency_stream
from lapor.limits import Category, DecimalDigits, KemendagriRegion, Name, NonNegativeInt64, Once
from lapor.paths import AGENCY_ID, AGENCY_SETTINGS, AgencyPath, names_a_setting
from lapor.principal import Principal
from lapor.privacy import visible_complaints
from lapor.problems import Conflict, NotFound, PreconditionFailed, ValidationProblem
from lapor.store import RecordedEvent
from lapor.tracking import TrackingIdPath
from schemas.events import (
    AgencyId,
    AgencyKind,
    AgencyRegistered,
    AgencyUpdated,
    ComplaintKind,
    EventData,
    LiaisonContact,
    RegionCode,
    RoutingRuleChanged,
    RuleMatch,
    SmsKeyword,
)
from services.routing.decide import (
    ArchiveCommand,
    Basis,
    DisposeCommand,
    MarkDuplicateCommand,
    PendCommand,
    Proposal,
    RoutingFacts,
    VerifyCommand,
    decide_archive,
    decide_dispose,
    decide_mark_duplicate,
    decide_pend,
    decide_verify,
    facts_of,
    propose,
)
from services.routing.directory import (
    RESERVED_AGENCY_IDS,
    RULES_STREAM,
    Agency,
    active_agency,
    disposing_agency,
    fold_agency,
    is_top_level,
    read_agency,
)
from services.routing.keywords import claim_keywords
from services.routing.projections import (
    AgencyRow,
    QueuedReport,
    child_agencies,
    disposable_agencies,
    find_agencies,
    get_agency,
    keyword_owners,
    load_rules,
    queued_report,
    queued_reports,
)

QUEUE_STATUSES = (Status.submitted, Status.verified, Status.returned)

# -- response models ----------------------------------------------------------------------------------------


class DeadlineView(BaseModel):
    due: datetime
    working_days_left: int = Field(description="working days from today to the due day; 0: due today, <0: overdue")
    overdue: bool
    approaching: bool


class ProposalView(BaseModel):
    agency_id: str
    agency_name: str | None
    basis: Basis
    rule_id: str | None = None


class QueueItem(BaseModel):
    tracking_id: str
    version: int
    status: Status
    kind: ComplaintKind | None
    title: str | None
    category: str | None
    tags: list[str]
    region_code: str | None
    channel: str | None
    anonymous: bool
    confidential: bool
    submitted_at: datetime
    verification: DeadlineView | None = Field(description="the 3-working-day telaah limit, while submitted")
    information_requested: str | None = None
    archive_due: datetime | None = None
    returned_from: str | None = None
    return_reason: str | None = None
    suggested_agency_id: str | None = None
    bounce_count: int
    duplicate_suspect_of: list[str]
    proposals: list[ProposalView]


class QueuePage(BaseModel):
    total: int
    items: list[QueueItem]


class CommandOutcome(BaseModel):
    tracking_id: str
    version: int
    status: Status
    events: list[str] = Field(description="the event types appended")


class AgencySummary(BaseModel):
    agency_id: str
    name: str
    kind: AgencyKind
    active: bool


class AgencyView(BaseModel):
    agency_id: str
    name: str
    kind: AgencyKind
    parent_id: str | None
    region_code: str | None
    sms_keywords: list[str]
    liaisons: list[LiaisonContact] = Field(description="pejabat penghubung (the shipped ones are sample data)")
    active: bool
    version: int
    children: list[AgencySummary] = []


class AgencyPage(BaseModel):
    total: int
    items: list[AgencyView]


class RuleView(BaseModel):
    rule_id: str
    match: RuleMatch
    agency_id: str
    active: bool
    changed_at: datetime | None = None
    changed_by: str | None = Field(None, description="who changed it last; shown to staff only")
    version: int = Field(description="of the rule's latest change: send it as If-Match with the next one")


# -- request models -----------------------------------------------------------------------------------------


class LiaisonContactChange(LiaisonContact):
    """A liaison as an admin gives it: the name and position are published, so they are plain text
    (`lapor.limits.Name`), as an agency's own name is."""

    name: Name
    position: Name | None = None


class AgencyRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    kind: AgencyKind
    parent_id: AgencyId | None = None
    region_code: KemendagriRegion | None = None
    sms_keywords: Annotated[list[SmsKeyword], Field(max_length=20), Once] = []  # each once (lapor.limits.Once)
    liaisons: Annotated[list[LiaisonContactChange], Field(max_length=20), Once] = []


class NewAgency(AgencyRecord):
    agency_id: AgencyId


class AgencyChange(AgencyRecord):
    active: StrictBool = True  # like every flag in a request: true or false, never 0/1 or "yes"


class RuleMatchChange(RuleMatch):
    """A rule's match as a request gives it: its region must exist (`lapor.limits.KemendagriRegion`), and its category
    is a category as `verify` takes one (`lapor.limits.Category`: plain visible text, not a label of the figures).
    Session 32: the contract's type let a rule's category hold markup, control characters (NUL), invisible text or
    `(none)`, all published by `GET /api/routing-rules`, and none ever matched a report's category."""

    region_code: KemendagriRegion | None = None
    category: Category | None = None


class RuleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    match: RuleMatchChange
    agency_id: AgencyId
    active: StrictBool = True


# -- helpers ------------------------------------------------------------------------------------------------


def _deadline(ctx: ServiceContext, due: datetime, now: datetime) -> DeadlineView:
    return DeadlineView(
        due=due,
        working_days_left=ctx.policy.working_days_left(due, now),
        overdue=now > due,
        approaching=ctx.policy.deadline_approaching(due, now),
    )


class _Routing:
    """What proposals need of the directory, loaded once per request."""

    def __init__(self, ctx: ServiceContext) -> None:
        with ctx.db.read() as tx:
            self.rules = [row.rule for row in load_rules(tx)]
            self.keywords = keyword_owners(tx, [rule.keyword for rule in self.rules if rule.keyword])
            self.disposable = disposable_agencies(tx)
        self.ctx = ctx

    def propose(self, facts: RoutingFacts) -> list[Proposal]:
        return propose(facts, self.rules, self.keywords, self.disposable.__contains__)

    def names(self, agency_ids: Sequence[str]) -> dict[str, str]:
        with self.ctx.db.read() as tx:
            return {agency_id: row.name for agency_id in set(agency_ids) if (row := get_agency(tx, agency_id))}


def _queue_views(
    ctx: ServiceContext, reports: Sequence[QueuedReport], principal: Principal | None
) -> list[dict[str, Any]]:
    routing = _Routing(ctx)
    now = ctx.clock.now()
    proposals = {report.tracking_id: routing.propose(report.facts) for report in reports}
    names = routing.names([p.agency_id for found in proposals.values() for p in found])
    views = [
        {
            "tracking_id": report.tracking_id,
            "version": report.version,
            "status": report.status.value,
            "kind": report.kind,
            "title": report.title,
            "category": report.category,
            "tags": report.tags,
            "region_code": report.region_code,
            "channel": report.channel,
            "anonymous": report.anonymous,
            "confidential": report.confidential,
            "agency_id": report.agency_id,
            "unit_id": None,
            "submitted_at": report.submitted_at,
            "verification": (
                _deadline(ctx, report.verification_due, now).model_dump()
                if report.status is Status.submitted and report.verification_due
                else None
            ),
            "information_requested": report.information_requested,
            "archive_due": report.archive_due,
            "returned_from": report.returned_from,
            "return_reason": report.return_reason,
            "suggested_agency_id": report.suggested_agency_id,
            "bounce_count": report.bounce_count,
            "duplicate_suspect_of": report.duplicate_suspect_of,
            "proposals": [
                {"agency_id": p.agency_id, "agency_name": names.get(p.agency_id), "basis": p.basis.value,
                 "rule_id": p.rule_id}
                for p in proposals[report.tracking_id]
            ],
        }
        for report in reports
    ]
    # lapor.privacy decides what each audience sees (masked text for everyone but the national admin). The
    # reporter's identity is scrubbed from what officials wrote (a pend question naming the reporter: no detector
    # knows every name), as in the complaint view and the audit.
    refs = {report.tracking_id: report.reporter_ref for report in reports}
    return visible_complaints(
        views, principal, identity=lambda view: ctx.vault.identity(refs[view["tracking_id"]])
    )


def _agency_view(agency: Agency | AgencyRow, children: Sequence[AgencyRow] = ()) -> AgencyView:
    return AgencyView(
        agency_id=agency.agency_id,
        name=agency.name,
        kind=AgencyKind(agency.kind),
        parent_id=agency.parent_id,
        region_code=agency.region_code,
        sms_keywords=list(agency.sms_keywords),
        liaisons=[LiaisonContact(**dict(contact)) for contact in agency.liaisons],
        active=agency.active,
        version=agency.version,
        children=[
            AgencySummary(agency_id=c.agency_id, name=c.name, kind=AgencyKind(c.kind), active=c.active)
            for c in children
        ],
    )


def _with_facts(events: Sequence[RecordedEvent]) -> tuple[ComplaintState | None, RoutingFacts | None]:
    state = fold(events)
    return state, (facts_of(state, events) if state is not None else None)


Decision = Callable[[ComplaintState, RoutingFacts, datetime], list[EventData]]


def _complaint_command(
    ctx: ServiceContext,
    tracking_id: str,
    action: str,
    principal: Principal | None,
    if_match: int | None,
    response: Response,
    decision: Decision,
) -> CommandOutcome:
    outcome: dict[str, ComplaintState] = {}

    def decide(folded: tuple[ComplaintState, RoutingFacts], now: datetime) -> list[Any]:
        state, facts = folded
        authorize_complaint(principal, action, state)
        events = decision(state, facts, now)
        for event in events:
            state = evolve(state, PendingEvent.from_model(event, state.version + 1, now))
        outcome["after"] = state
        return [event.to_new_event() for event in events]

    result = run_command(
        ctx, f"complaint-{tracking_id}", decide, principal=_acting(principal), if_match=if_match, fold=_with_facts
    )
    status = outcome["after"].status
    assert status is not None
    response.headers["ETag"] = result.etag
    return CommandOutcome(
        tracking_id=tracking_id, version=result.version, status=status, events=[e.type for e in result.events]
    )


def _acting(principal: Principal | None) -> Principal:
    assert principal is not None, "routing commands require a signed-in principal"
    return principal


# -- the router ---------------------------------------------------------------------------------------------

# The event contract's patterns (schemas.events), checked on the path before anything is decided.
RulePath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]


def _rule_version(events: Sequence[RecordedEvent], rule_id: str) -> int | None:
    """The version of the rule's latest change in the rules stream (None: never changed, so not there yet). The
    stream holds every rule, so the stream's own version moves with every other rule's change: a rule's If-Match
    names this one."""
    return next(
        (event.version for event in reversed(events)
         if event.type == "RoutingRuleChanged" and event.data.get("rule_id") == rule_id),
        None,
    )


def build_router(ctx: ServiceContext) -> APIRouter:
    router = APIRouter(tags=["routing"])

    @router.get("/api/verification-queue", summary="Reports waiting for verification and disposition, oldest first")
    def verification_queue(
        ctx: Context,
        principal: Annotated[Principal | None, Depends(require("verification_queue.read"))],
        status: Annotated[list[Status] | None, Query(description="default: submitted, verified, returned")] = None,
        region_code: Annotated[RegionCode | None, Query(description="only reports within this region")] = None,
        limit: Annotated[int, Query(ge=1, le=500), DecimalDigits] = 50,
        offset: Annotated[NonNegativeInt64, Query()] = 0,
    ) -> QueuePage:
        with ctx.db.read() as tx:
            total, reports = queued_reports(tx, status or QUEUE_STATUSES, region_code=region_code, limit=limit,
                                            offset=offset)
        return QueuePage(total=total, items=[QueueItem(**view) for view in _queue_views(ctx, reports, principal)])

    @router.get("/api/verification-queue/{tracking_id}", summary="One report as the routing desk sees it")
    def queue_item(
        ctx: Context,
        tracking_id: TrackingIdPath,
        principal: Annotated[Principal | None, Depends(require("verification_queue.read"))],
    ) -> QueueItem:
        with ctx.db.read() as tx:
            report = queued_report(tx, tracking_id)
        if report is None:
            raise NotFound(f"complaint {tracking_id} not found")
        [view] = _queue_views(ctx, [report], principal)
        return QueueItem(**view)

    @router.post("/api/complaints/{tracking_id}/verify", summary="Verify (telaah): classify the report")
    def verify(
        ctx: Context,
        tracking_id: TrackingIdPath,
        command: VerifyCommand,
        response: Response,
        principal: Annotated[Principal | None, Depends(require("complaint.verify"))],
        if_match: Annotated[int | None, Depends(if_match_header)],
    ) -> CommandOutcome:
        return _complaint_command(ctx, tracking_id, "complaint.verify", principal, if_match, response,
                                  lambda state, facts, now: decide_verify(state, command, now))

    @router.post("/api/complaints/{tracking_id}/pend", summary="Pend (tunda): ask the reporter for more")
    def pend(
        ctx: Context,
        tracking_id: TrackingIdPath,
        command: PendCommand,
        response: Response,
        principal: Annotated[Principal | None, Depends(require("complaint.pend"))],
        if_match: Annotated[int | None, Depends(if_match_header)],
    ) -> CommandOutcome:
        return _complaint_command(ctx, tracking_id, "complaint.pend", principal, if_match, response,
                                  lambda state, facts, now: decide_pend(state, command, now, ctx.policy))

    @router.post("/api/complaints/{tracking_id}/archive", summary="Archive the report, with a reason")
    def archive(
        ctx: Context,
        tracking_id: TrackingIdPath,
        command: ArchiveCommand,
        response: Response,
        principal: Annotated[Principal | None, Depends(require("complaint.archive"))],
        if_match: Annotated[int | None, Depends(if_match_header)],
    ) -> CommandOutcome:
        return _complaint_command(ctx, tracking_id, "complaint.archive", principal, if_match, response,
                                  lambda state, facts, now: decide_archive(state, command, now))

    @router.post("/api/complaints/{tracking_id}/mark-duplicate", summary="Mark as a duplicate of another report")
    def mark_duplicate(
        ctx: Context,
        tracking_id: TrackingIdPath,
        command: MarkDuplicateCommand,
        response: Response,
        principal: Annotated[Principal | None, Depends(require("complaint.mark_duplicate"))],
        if_match: Annotated[int | None, Depends(if_match_header)],
    ) -> CommandOutcome:
        def decision(state: ComplaintState, facts: RoutingFacts, now: datetime) -> list[EventData]:
            ensure_allowed(state, "DuplicateMarked")
            original = fold(ctx.store.read_stream(f"complaint-{command.duplicate_of}"))
            return decide_mark_duplicate(state, command, original, now)

        return _complaint_command(ctx, tracking_id, "complaint.mark_duplicate", principal, if_match, response,
                                  decision)

    @router.post("/api/complaints/{tracking_id}/dispose", summary="Dispose (disposisi) to an agency")
    def dispose(
        ctx: Context,
        tracking_id: TrackingIdPath,
        command: DisposeCommand,
        response: Response,
        principal: Annotated[Principal | None, Depends(require("complaint.dispose"))],
        if_match: Annotated[int | None, Depends(if_match_header)],
    ) -> CommandOutcome:
        def decision(state: ComplaintState, facts: RoutingFacts, now: datetime) -> list[EventData]:
            ensure_allowed(state, "ComplaintDisposed")
            proposals = _Routing(ctx).propose(facts)
            if command.agency_id is None:
                if not proposals:
                    raise ValidationProblem("no rule or region proposes an agency for this report: name agency_id")
                agency_id = proposals[0].agency_id
            else:
                agency_id = command.agency_id
            agency = active_agency(ctx.store, agency_id)
            if agency is None:
                raise ValidationProblem(f"{agency_id} is not an active agency of the directory")
            if not is_top_level(agency_id):
                raise ValidationProblem(
                    f"{agency_id} is a unit of {disposing_agency(agency_id)}: dispose to the agency, which assigns it"
                )
            rule_id = next((p.rule_id for p in proposals if p.agency_id == agency_id and p.rule_id), None)
            return decide_dispose(state, agency_id, now, ctx.policy, note=command.note, rule_id=rule_id)

        return _complaint_command(ctx, tracking_id, "complaint.dispose", principal, if_match, response, decision)

    # -- directory --------------------------------------------------------------------------------------------

    @router.get("/api/agencies", summary="The agency directory", dependencies=[Depends(require("directory.read"))])
    def agencies(
        ctx: Context,
        kind: AgencyKind | None = None,
        parent_id: Annotated[str | None, Query(max_length=128)] = None,
        region_code: Annotated[RegionCode | None, Query(description="agencies within this region")] = None,
        q: Annotated[str | None, Query(max_length=100, description="part of the name")] = None,
        keyword: Annotated[str | None, Query(max_length=20, description="SMS keyword")] = None,
        include_inactive: bool = False,
        limit: Annotated[int, Query(ge=1, le=1000), DecimalDigits] = 100,
        offset: Annotated[NonNegativeInt64, Query()] = 0,
    ) -> AgencyPage:
        with ctx.db.read() as tx:
            total, rows = find_agencies(
                tx, kind=kind.value if kind else None, parent_id=parent_id, region_code=region_code, q=q,
                keyword=keyword, include_inactive=include_inactive, limit=limit, offset=offset,
            )
        return AgencyPage(total=total, items=[_agency_view(row) for row in rows])

    @router.get(f"/api/agencies/{AGENCY_ID}", summary="One agency with its OPD and units",
                dependencies=[Depends(require("directory.read"))])
    def agency(ctx: Context, agency_id: AgencyPath, response: Response) -> AgencyView:
        with ctx.db.read() as tx:
            row = get_agency(tx, agency_id)
            children = child_agencies(tx, agency_id) if row else []
        if row is None:
            raise NotFound(f"agency {agency_id} not found")
        response.headers["ETag"] = f'"{row.version}"'
        return _agency_view(row, children)

    def check_record(agency_id: str, record: AgencyRecord, *, active: bool = True) -> None:
        root = disposing_agency(agency_id)
        parent = record.parent_id
        unit = root != agency_id
        # Scopes go by the id: a unit listed under another agency (or its office) sat among that agency's children,
        # where its officers could not assign to it (session 29).
        if parent is not None and (parent == agency_id or not (within(parent, root) if unit else is_top_level(parent))):
            where = f"{root} or one of its units" if unit else "an agency, not a unit"
            raise ValidationProblem(f"the parent of {agency_id} must be {where}, not {parent}",
                                    location=("body", "parent_id"))
        if unit and parent is None:
            raise ValidationProblem(f"{agency_id} is a unit: give its parent_id")
        # A retired record works under no one, so its parent and agency need only be registered: it may sit under a
        # retired agency (session 32: once an agency was retired, its OPD and units could be neither retired nor
        # changed, and stayed listed as active, their liaisons published).
        wanted = "an active agency" if active else "an agency"

        def missing(required: str) -> bool:
            found = read_agency(ctx.store, required)
            return found is None or (active and not found.active)

        if parent is not None and missing(parent):
            raise ValidationProblem(f"parent {parent} is not {wanted} of the directory")
        if unit and missing(root):
            raise ValidationProblem(f"{agency_id} belongs to {root}, which is not {wanted}")

    @router.post("/api/agencies", status_code=201, summary="Register an agency (national admin)")
    def register_agency(
        ctx: Context,
        record: NewAgency,
        response: Response,
        principal: Annotated[Principal | None, Depends(require("directory.manage"))],
        if_match: Annotated[int | None, Depends(if_match_header)],
    ) -> AgencyView:
        """Registers an agency not there yet (409 if it is: change it with PUT). If-Match names a version of an agency
        there already, so with one it is 412 while the agency is not there (session 31: it was ignored, and a
        registration sent with a mistyped id and a version read from the real agency made a new agency)."""
        if record.agency_id in RESERVED_AGENCY_IDS:
            raise ValidationProblem(f"{record.agency_id} is reserved")
        if names_a_setting(record.agency_id):
            raise ValidationProblem(
                f"{record.agency_id}: a unit may not be named {', '.join(sorted(AGENCY_SETTINGS))} (the URLs of an "
                "agency's settings)"
            )
        check_record(record.agency_id, record)
        event = AgencyRegistered(**record.model_dump())

        def decide(existing: Agency | None, now: datetime) -> list[Any]:
            if existing is not None:
                raise Conflict(f"agency {record.agency_id} is already registered; change it with PUT")
            if if_match is not None:
                raise PreconditionFailed(f"agency {record.agency_id} does not exist yet: register it without If-Match",
                                         current_version=None)
            claim_keywords(ctx, record.agency_id, record.sms_keywords, 0, _acting(principal))
            return [event.to_new_event()]

        result = run_command(ctx, agency_stream(record.agency_id), decide, principal=_acting(principal),
                             fold=fold_agency, must_exist=False)
        response.headers["ETag"] = result.etag
        return _agency_view(Agency.from_record(DirectoryRecord(event.to_data(), result.version)))

    @router.put(f"/api/agencies/{AGENCY_ID}", summary="Change an agency's record (national admin)")
    def change_agency(
        ctx: Context,
        agency_id: AgencyPath,
        record: AgencyChange,
        response: Response,
        principal: Annotated[Principal | None, Depends(require("directory.manage"))],
        if_match: Annotated[int | None, Depends(if_match_header)],
    ) -> AgencyView:
        if agency_id in RESERVED_AGENCY_IDS:
            # Its stream is not an agency's (directory-routing-rules holds the rules): a 500 until session 24.
            raise NotFound(f"agency {agency_id} not found ({agency_id} is reserved)")
        check_record(agency_id, record, active=record.active)
        event = AgencyUpdated(agency_id=agency_id, **record.model_dump())

        def decide(existing: Agency | None, now: datetime) -> list[Any]:
            assert existing is not None  # must_exist
            if event.active:  # a retired agency's keywords are free
                claim_keywords(ctx, agency_id, record.sms_keywords, existing.version + 1, _acting(principal))
            return [event.to_new_event()]

        result = run_command(ctx, agency_stream(agency_id), decide, principal=_acting(principal), if_match=if_match,
                             fold=fold_agency)
        response.headers["ETag"] = result.etag
        return _agency_view(Agency.from_record(DirectoryRecord(event.to_data(), result.version)))

    @router.get("/api/routing-rules", summary="Routing rules")
    def routing_rules(
        ctx: Context,
        principal: Annotated[Principal | None, Depends(require("directory.read"))],
        include_inactive: bool = False,
    ) -> list[RuleView]:
        with ctx.db.read() as tx:
            rows = load_rules(tx, include_inactive=include_inactive)
        # Who changed a rule is an official's account (the token's subject): for staff, not for the public.
        staff = principal is not None and principal.role in OVERSIGHT | AGENCY_STAFF
        return [
            RuleView(
                rule_id=row.rule.rule_id,
                match=RuleMatch(keyword=row.rule.keyword, region_code=row.rule.region_code,
                                category=row.rule.category),
                agency_id=row.rule.agency_id,
                active=row.active,
                changed_at=datetime.fromisoformat(row.changed_at),
                changed_by=row.changed_by if staff else None,
                version=row.version,
            )
            for row in rows
        ]

    @router.put("/api/routing-rules/{rule_id}", summary="Create, change or switch off a routing rule")
    def change_rule(
        ctx: Context,
        rule_id: RulePath,
        change: RuleChange,
        response: Response,
        principal: Annotated[Principal | None, Depends(require("directory.manage"))],
        if_match: Annotated[int | None, Depends(if_match_header)],
    ) -> RuleView:
        """If-Match names the rule's `version` (GET /api/routing-rules, or this route's ETag): stale, 412 naming the
        current one, nothing written (session 31: it was ignored, so of two admins changing one rule from the same
        reading the later one silently undid the other's change)."""
        target = active_agency(ctx.store, change.agency_id)
        if change.active and (target is None or not is_top_level(change.agency_id)):
            raise ValidationProblem(f"{change.agency_id} is not an active agency that takes dispositions")
        match = RuleMatch.model_validate(change.match.model_dump())  # the contract's type, not the request's
        event = RoutingRuleChanged(rule_id=rule_id, match=match, agency_id=change.agency_id, active=change.active)

        def decide(events: Sequence[RecordedEvent], now: datetime) -> list[Any]:
            current = _rule_version(events, rule_id)
            if if_match is not None and if_match != current:
                if current is None:
                    raise PreconditionFailed(f"routing rule {rule_id} does not exist yet: create it without If-Match",
                                             current_version=None)
                raise PreconditionFailed(f"routing rule {rule_id} is at version {current}, not {if_match}: read it "
                                         "again", current_version=current)
            return [event.to_new_event()]

        # The rule's own version is checked in the decision, on the stream it appends to (the runner's If-Match
        # is the stream's, which every rule moves).
        result = run_command(ctx, RULES_STREAM, decide, principal=_acting(principal), fold=list, must_exist=False)
        response.headers["ETag"] = result.etag
        return RuleView(rule_id=rule_id, match=match, agency_id=change.agency_id, active=change.active,
                        changed_by=_acting(principal).subject, version=result.version)

    return router
