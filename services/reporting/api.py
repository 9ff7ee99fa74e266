"""Reporting's HTTP surface: national, agency and public figures, the live stream, audit replay."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from cachetools import TTLCache, cached
from cachetools.keys import hashkey
from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BeforeValidator
from sse_starlette import EventSourceResponse

from lapor.auth import authorize, require
from lapor.context import Context, ServiceContext
from lapor.limits import IsoDate, IsoDateTime, NonNegativeInt64, rate_limit, single_header
from lapor.paths import AGENCY_ID, AgencyPath
from lapor.principal import Principal
from lapor.problems import NotFound, ValidationProblem
from lapor.tracking import TrackingIdPath
from schemas.events import AGENCY_ID_MAX_LENGTH, AGENCY_ID_PATTERN, COMPLAINT_EVENTS, REGION_CODE_PATTERN
from services.reporting import audit, reports
from services.reporting.stream import FeedResponse, StreamFilter, hub_of, live_events

# What the feed carries: a complaint event's type, named as the catalogue names it, so a misspelt filter is refused
# (and the document lists the choices) rather than opening a feed that never sends anything.
if TYPE_CHECKING:
    ComplaintEventType = str
else:
    ComplaintEventType = Literal[tuple(model.__name__ for model in COMPLAINT_EVENTS)]

Start = Annotated[IsoDate | None, Query(alias="from", description="first day of the period (Jakarta), inclusive")]
End = Annotated[IsoDate | None, Query(alias="to", description="last day of the period (Jakarta), inclusive")]
Region = Annotated[
    str | None,
    Query(
        pattern=REGION_CODE_PATTERN, description="Kemendagri code: a province (35), a city (35.73), ... with all inside"
    ),
]

# A moment's offset as a URL's query decodes it when the `+` was typed as is (`?at=2026-12-31T09:30:00+07:00`, the
# form the API's own examples give): a space, which ISO-8601 never puts there.
_PLUS_READ_AS_SPACE = re.compile(r"([0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?) ([0-9]{2}:?[0-9]{2})\Z")


def _offset_sign(value: object) -> object:
    """`2026-12-31T09:30:00 07:00` is `...+07:00` whose `+` the query's decoding made a space (it was a 422 saying
    "unexpected extra characters at the end of the input", on the form the description asks for)."""
    if isinstance(value, str) and (match := _PLUS_READ_AS_SPACE.search(value)):
        return f"{value[: match.start()]}{match.group(1)}+{match.group(2)}"
    return value


Moment = Annotated[IsoDateTime, BeforeValidator(_offset_sign)]


def _selection(start: Start = None, end: End = None, region: Region = None) -> reports.Filters:
    """The period and region a view is asked for (`from`, `to`, `region`), a period that ends before it starts
    refused."""
    if start is not None and end is not None and start > end:
        raise ValidationProblem(f"the period starts ({start}) after it ends ({end})")
    return reports.Filters(start=start, end=end, region=region)


# The views' selection as a route takes it (after its caller's authorization, where the route asks for one).
Selection = Annotated[reports.Filters, Depends(_selection)]


class PublicFigures:
    """The public statistics of each selection, kept for `seconds` (`LAPOR_PUBLIC_STATISTICS_CACHE`; 0: none).

    The route is open to anyone, the citizen pages call it on every view, and each answer scans the complaints of
    its period several times (~0.45 s nationally at 10^5 reports, more as the log grows): unkept, a few clients
    asking in a loop held the read models' database for everyone. So an answer is kept per selection (the grid's
    widened one, so `?from=2026-03-05` and `?from=2026-03-01` share it), and at most one is computed at a time in a
    process: a burst of requests for a selection waits for the one scan and takes its answer (session 29). The
    figures are then up to `seconds` old, as their `as_of` says. The time is the process's monotonic clock, not the
    injected one: how long an answer is kept is the server's business, not the process rules'."""

    MAX_SELECTIONS = 256

    def __init__(self, seconds: float, timer: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        lock = threading.Lock()
        computing = threading.Lock()  # one scan at a time, whatever the selection

        def scan(filters: reports.Filters, compute: Callable[[], reports.PublicStatistics]) -> reports.PublicStatistics:
            with computing:
                return compute()

        # A selection being computed is waited for (cachetools' `condition`), not computed again.
        kept: TTLCache[Any, reports.PublicStatistics] = TTLCache(self.MAX_SELECTIONS, seconds or 1, timer=timer)
        self._kept = cached(
            kept, key=lambda filters, compute: hashkey(filters), lock=lock, condition=threading.Condition(lock)
        )(scan)

    def get(
        self, filters: reports.Filters, compute: Callable[[], reports.PublicStatistics]
    ) -> reports.PublicStatistics:
        return self._kept(filters, compute) if self.seconds else compute()


def build_router(ctx: ServiceContext) -> APIRouter:
    router = APIRouter(tags=["reporting"])
    hub = hub_of(ctx)
    public_figures = PublicFigures(ctx.settings.public_statistics_cache)

    @router.get(
        "/api/reports/national",
        summary="National view: reports by status, kind, channel, category, province and agency; SLA; backlog",
    )
    def national(
        ctx: Context,
        principal: Annotated[Principal | None, Depends(require("report.national"))],
        filters: Selection,
    ) -> reports.NationalReport:
        with ctx.db.read() as tx:
            return reports.national(tx, filters, ctx.clock.now(), ctx.policy, principal)

    @router.get(
        "/api/reports/national/agencies",
        summary="Scoreboard of agencies: follow-up rate, overdue reports, red marks (nilai merah), bounces",
        dependencies=[Depends(require("report.national"))],
    )
    def scoreboard(ctx: Context, filters: Selection) -> reports.Scoreboard:
        with ctx.db.read() as tx:
            return reports.scoreboard(tx, filters, ctx.clock.now())

    @router.get(
        f"/api/reports/agencies/{AGENCY_ID}",
        summary="Local view: the national figures for one agency, with its units",
    )
    def agency(
        ctx: Context,
        agency_id: AgencyPath,
        principal: Annotated[Principal | None, Depends(require("report.agency"))],
        filters: Selection,
    ) -> reports.AgencyReport:
        with ctx.db.read() as tx:
            if not reports.agency_known(tx, agency_id):
                raise NotFound(f"agency {agency_id} not found")
            return reports.agency(tx, agency_id, filters, ctx.clock.now(), ctx.policy, principal)

    @router.get(
        "/api/public/statistics",
        summary="Public statistics: aggregates only (confidential reports are counted, nothing of them is shown)",
        description="Built from cells of a month by a city: the period is widened to whole months and the region to "
        "its city (`filters` says what was applied), and a cell of fewer than five reports is left out. An answer is "
        "kept for `LAPOR_PUBLIC_STATISTICS_CACHE` seconds (30) per selection (`as_of` says how old it is), and a "
        "client may ask `LAPOR_LIMITS__STATISTICS_RATE` times (60 a minute).",
        dependencies=[Depends(require("statistics.public")), Depends(rate_limit("statistics"))],
    )
    def statistics(ctx: Context, response: Response, selection: Selection) -> reports.PublicStatistics:
        filters = reports.public_grid(selection)

        def compute() -> reports.PublicStatistics:
            with ctx.db.read() as tx:
                return reports.public(tx, filters, ctx.clock.now(), ctx.policy)

        if public_figures.seconds:
            response.headers["Cache-Control"] = f"public, max-age={int(public_figures.seconds)}"
        return public_figures.get(filters, compute)

    @router.get(
        "/api/stream",
        summary="Live feed of complaint events (server-sent events), resumable with Last-Event-ID",
        response_class=EventSourceResponse,
        dependencies=[Depends(single_header("Last-Event-ID"))],
        responses={
            200: {
                "content": {"text/event-stream": {}},
                "description": "`id` is the event's log position. When the bearer token runs out the feed ends with "
                "a `token_expired` event whose `id` is where a fresh token resumes (as Last-Event-ID); when it is "
                "revoked, with a `token_revoked` event.",
            }
        },
    )
    def stream(
        ctx: Context,
        principal: Principal | None = Depends(require("stream.read")),
        region: Region = None,
        agency: Annotated[
            str | None,
            Query(pattern=AGENCY_ID_PATTERN, max_length=AGENCY_ID_MAX_LENGTH, description="an agency, with its units"),
        ] = None,
        event_type: Annotated[
            list[ComplaintEventType] | None,
            Query(alias="type", description="event types to receive (repeat for more)"),
        ] = None,
        last_event_id: Annotated[NonNegativeInt64 | None, Header(description="resume after this position")] = None,
        since: Annotated[
            NonNegativeInt64 | None,
            Query(description="resume after this position (for clients that cannot set headers)"),
        ] = None,
    ) -> EventSourceResponse:
        if agency is not None:
            authorize(principal, "stream.read", agency_id=agency)  # an agency role may narrow to its own only
            with ctx.db.read() as tx:
                known = reports.agency_known(tx, agency)
            if not known:
                # Like a misspelt type: a feed that never sends anything, with nothing to say why.
                raise ValidationProblem(f"no agency {agency} in the directory, and no report held by it",
                                        location=("query", "agency"))
        wanted = StreamFilter(region=region, agency_id=agency, types=frozenset(event_type) if event_type else None)
        after = last_event_id if last_event_id is not None else since
        if after is not None and after > (head := ctx.store.head_position()):
            # No event was ever sent with that id (a commit is in the head before anyone can be sent it): waiting
            # for the log to reach it would silently skip everything up to there.
            raise ValidationProblem(
                f"position {after} is past the end of the log (its head is {head}): no event was sent with that "
                "id; reconnect without it to start at the head",
                location=("header", "last-event-id") if last_event_id is not None else ("query", "since"),
            )
        return FeedResponse(live_events(ctx.store, hub, principal, wanted, after, ctx.tokens))

    @router.get(
        "/api/audit/complaints/{tracking_id}/events",
        summary="A complaint's full history: every event with actor, time and hash-chain link",
    )
    def history(
        ctx: Context, tracking_id: TrackingIdPath, principal: Principal | None = Depends(require("audit.read"))
    ) -> audit.AuditHistory:
        return audit.history(ctx.store, tracking_id, principal)

    @router.get(
        "/api/audit/complaints/{tracking_id}/state",
        summary="A complaint's state at a past moment, folded from the events recorded until then",
    )
    def state(
        ctx: Context,
        tracking_id: TrackingIdPath,
        principal: Principal | None = Depends(require("audit.read")),
        at: Annotated[
            Moment | None,
            Query(description="ISO-8601 with offset, not later than now; now when absent (a `+` left unencoded in "
                  "the URL, read as a space, is taken as the `+` it was)"),
        ] = None,
    ) -> audit.StateAt:
        now = ctx.clock.now()
        if at is not None and at > now:
            # The fold of every event so far, labelled with a moment to come, would claim to know that moment.
            raise ValidationProblem(f"{at.isoformat()} is in the future (it is {now.isoformat()} now): a state is "
                                    "known only up to now", location=("query", "at"))
        return audit.state_at(ctx.store, tracking_id, at, principal, now)

    @router.get(
        "/api/audit/integrity",
        summary="Hash-chain check over the whole log, streamed as NDJSON: progress lines, then the result",
        response_class=StreamingResponse,
        responses={200: {"content": {"application/x-ndjson": {}}, "description": "progress lines, then a result"}},
        dependencies=[Depends(require("audit.read"))],
    )
    def integrity(ctx: Context) -> StreamingResponse:
        return StreamingResponse(audit.integrity_lines(ctx.store), media_type="application/x-ndjson")

    return router
