"""The live stream (`GET /api/stream`): complaint events as they are committed, as server-sent events.

Each event goes out with its store position as the SSE `id`, so a client that lost its connection reconnects
with `Last-Event-ID` and gets exactly what it missed, in order, nothing twice. What a caller sees is decided the
way every other view decides it: `lapor.privacy.can_see_report` on the complaint as it stood around the event
(before or after it: an agency sees the disposition that brings a report to it and the return that takes it
away), and `redact_event_data` / `redact_metadata` on what is shown. A feed ends when the caller's token would be
refused (`Principal.valid_until`), with a `token_expired` event whose id is where a fresh token resumes, or when
it is revoked (`lapor.revocation`), with a `token_revoked` event. Events a caller is not sent still move its
Last-Event-ID: after a page read with none of them shown last, an `id` without data names the page's last
position, so a narrow feed that reconnects does not read the whole busy log it passed over again.

Connections do not poll the store each on its own: one `StreamHub` per app (the service's background loop) waits
for commits (`store.wait_for_events`) while anyone listens and wakes every connection's asyncio event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from anyio import to_thread
from sse_starlette import ServerSentEvent

from lapor.auth import TokenService
from lapor.complaint import ComplaintState, evolve, fold
from lapor.context import BackgroundLoop, ServiceContext
from lapor.principal import Principal
from lapor.privacy import (
    can_see_report,
    involved_agencies,
    masked_at_source,
    redact_event_data,
    redact_metadata,
    reporter_identity,
)
from lapor.store import EventStore, RecordedEvent

log = logging.getLogger("lapor.reporting.stream")

PAGE = 200  # events read per step of a stream
HUB_WAIT = 0.5  # seconds the hub waits for commits before it looks whether anyone still listens
FOLDED_COMPLAINTS = 2000  # complaint states each connection keeps to judge visibility without re-reading
TOKEN_EXPIRED = "token_expired"  # SSE event type of the last thing a feed sends when its token runs out
TOKEN_REVOKED = "token_revoked"  # ... and when its token is revoked (`lapor.revocation`)
IDLE_RECHECK = 15.0  # seconds an idle feed waits before it looks again whether its token was revoked


class StreamHub:
    """Wakes every open stream when the store's head moves. Runs as the service's background loop, so it stops
    before the store is closed; it waits on the store only while someone listens."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._listeners: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def listen(self) -> asyncio.Event:
        """An event set whenever something is committed; call `leave` with it when done."""
        wake = asyncio.Event()
        with self._lock:
            self._listeners.add((asyncio.get_running_loop(), wake))
        return wake

    def leave(self, wake: asyncio.Event) -> None:
        with self._lock:
            self._listeners = {entry for entry in self._listeners if entry[1] is not wake}

    def run(self, stop: threading.Event) -> None:
        # `notified` only moves when the listeners are woken, so a commit after it always wakes them: a stream
        # clears its event before it looks at the head, so no commit falls between the two.
        notified = 0
        while not stop.is_set():
            with self._lock:
                idle = not self._listeners
            if idle:
                stop.wait(HUB_WAIT)
                continue
            self._store.wait_for_events(notified, HUB_WAIT)
            head = self._store.head_position()
            if head != notified:
                notified = head
                with self._lock:
                    listeners = list(self._listeners)  # taken now: also those that came during the wait
                for loop, wake in listeners:
                    if not loop.is_closed():
                        loop.call_soon_threadsafe(wake.set)


_HUBS: dict[int, StreamHub] = {}


def hub_of(ctx: ServiceContext) -> StreamHub:
    """The one hub of a service context, shared by the router (streams listen) and the background loop."""
    hub = _HUBS.get(id(ctx))
    if hub is None:
        hub = _HUBS[id(ctx)] = StreamHub(ctx.store)
        weakref.finalize(ctx, _HUBS.pop, id(ctx), None)
    return hub


def hub_loop(ctx: ServiceContext) -> BackgroundLoop:
    # Every process wakes its own connections: not exclusive.
    return BackgroundLoop("reporting.stream-hub", hub_of(ctx).run, exclusive=False)


@dataclass(frozen=True)
class StreamFilter:
    """What a client asked for; None means no restriction."""

    region: str | None = None  # a Kemendagri code, with every region inside it
    agency_id: str | None = None  # an agency, with its units
    types: Collection[str] | None = None  # event types


def _within(code: str | None, scope: str, separator: str) -> bool:
    return code is not None and (code == scope or code.startswith(scope + separator))


class _Viewer:
    """Decides, event by event, whether and how one caller sees the feed. Keeps the complaints it has seen
    folded up to their last event (a bounded number), reading a stream's earlier events only the first time."""

    def __init__(self, store: EventStore, principal: Principal | None, wanted: StreamFilter) -> None:
        self._store = store
        self._principal = principal
        self._wanted = wanted
        self._states: OrderedDict[str, ComplaintState] = OrderedDict()
        self._refused: OrderedDict[str, int] = OrderedDict()  # stream -> the version the fold could not take

    def _before(self, event: RecordedEvent) -> ComplaintState | None:
        state = self._states.pop(event.stream, None)
        if state is not None and state.version == event.version - 1:
            return state
        earlier = self._store.read_stream(event.stream, 0, limit=event.version) if event.version else []
        return fold(earlier)

    def _sees(self, state: ComplaintState | None) -> bool:
        if state is None:
            return False
        return can_see_report(
            self._principal,
            confidential=state.confidential,
            agency_id=state.agency_id,
            unit_id=state.unit_id,
            tracking_id=state.tracking_id,
            involved_agencies=involved_agencies(state),
            channel=state.channel,
        )

    def _wanted_by_client(self, event: RecordedEvent, before: ComplaintState | None, after: ComplaintState) -> bool:
        wanted = self._wanted
        if wanted.types is not None and event.type not in wanted.types:
            return False
        if wanted.region is not None and not _within(after.region_code, wanted.region, "."):
            return False
        if wanted.agency_id is not None:
            holders = {after.agency_id, after.unit_id}
            if before is not None:
                holders |= {before.agency_id, before.unit_id}
            return any(_within(holder, wanted.agency_id, "/") for holder in holders)
        return True

    def view(self, events: Sequence[RecordedEvent]) -> list[ServerSentEvent]:
        shown = []
        identities: dict[str, Mapping[str, Any] | None] = {}  # by stream: one vault read per report on the page
        for event in events:
            if event.stream in self._refused:
                continue  # its history stopped folding at an earlier event: so do its later ones, unread
            try:
                before = self._before(event)
                after = evolve(before, event) if before is not None else fold([event])
            except Exception as refused:  # noqa: BLE001 - whatever the fold cannot take, the projections park
                # An event the fold cannot take (refused by the lifecycle, of a schema newer than this code, ...):
                # the projections park it for an operator. Nobody can be told who may see it, so nobody is sent
                # it, nor its complaint's later events, and the feed goes on. It used to end every feed at that
                # page, for good, for everyone (found in a bug hunt).
                self._states.pop(event.stream, None)
                self._refused[event.stream] = event.version
                if len(self._refused) > FOLDED_COMPLAINTS:
                    self._refused.popitem(last=False)
                log.warning("live stream: %s from version %d left out: %s", event.stream, event.version, refused)
                continue
            assert after is not None
            self._states[event.stream] = after
            if len(self._states) > FOLDED_COMPLAINTS:
                self._states.popitem(last=False)
            if not self._wanted_by_client(event, before, after) or not (self._sees(before) or self._sees(after)):
                continue
            metadata = _readable_metadata(event)
            if metadata is None:
                # Changed in the database past reading (SQLite keeps whatever bytes it is given): who decided cannot
                # be told, so it is left out; the integrity check names it. It ended the feed (found in a bug hunt).
                log.warning("live stream: %s version %d left out: its metadata cannot be read", event.stream,
                            event.version)
                continue
            if event.stream not in identities:
                identities[event.stream] = reporter_identity(self._store.vault, after, self._principal)
            payload = self._payload(event, metadata, after, identities[event.stream])
            shown.append(ServerSentEvent(orjson.dumps(payload).decode(), event=event.type, id=str(event.position)))
        return shown

    def _payload(
        self,
        event: RecordedEvent,
        metadata: Mapping[str, Any],
        state: ComplaintState,
        identity: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        return {
            "position": event.position,
            "tracking_id": state.tracking_id,
            "version": event.version,
            "type": event.type,
            "recorded_at": event.recorded_at.isoformat(),
            "region_code": state.region_code,
            "agency_id": state.agency_id,
            # What intake masked when it logged it is not put through the detector again (`MaskedText`): on some
            # texts it takes seconds, and every open feed ran it on every report filed.
            "data": redact_event_data(
                event.type, masked_at_source(event.data, metadata), self._principal, anonymous=state.anonymous,
                identity=identity,
            ),
            "metadata": redact_metadata(metadata, self._principal),
        }


def _readable_metadata(event: RecordedEvent) -> Mapping[str, Any] | None:
    """The event's metadata; None when it does not decode or is not a JSON object (a change made to the database:
    the store writes objects only)."""
    try:
        metadata = event.metadata
    except ValueError:
        return None
    return metadata if isinstance(metadata, dict) else None


def _page(store: EventStore, after: int) -> tuple[list[RecordedEvent], int | None]:
    """Up to PAGE complaint events after the position `after`, and None; or, when the first of them cannot be read,
    no events and its position, which the feed passes. SQLite keeps whatever bytes it is given, so an event changed
    in the database (data that is not JSON, a time that is not one) failed the whole page's read, and ended every
    feed that came to it, again on each reconnection with its Last-Event-ID (found in a bug hunt): the events before
    it are read one at a time, and it is left out (the integrity check names it)."""
    try:
        return store.read_all(after + 1, "complaint", PAGE), None
    except ValueError as error:
        events: list[RecordedEvent] = []
        position = after + 1
        with contextlib.suppress(ValueError):
            while len(events) < PAGE and (one := store.read_all(position, "complaint", 1)):
                events.append(one[0])
                position = one[0].position + 1
        if events:
            return events, None
        # The first complaint event from `position` on cannot be read: it is at the last position from which a read
        # of one still fails (each read decodes only the first event it finds), at most the head.
        head = store.head_position()
        while position < head:
            position += 1
            try:
                store.read_all(position, "complaint", 1)
            except ValueError:
                continue
            position -= 1
            break
        log.warning("live stream: the event at position %d left out: it cannot be read (%s)", position,
                    " ".join(str(error).split()))
        return [], position


def _token_ended_event(position: int, *, revoked: bool) -> ServerSentEvent:
    """The last thing a feed sends when the caller's token runs out or is revoked. Its `id` is the position the
    feed reached (everything up to it was sent or filtered out), so a client that reconnects with a fresh token
    and this Last-Event-ID misses nothing."""
    if revoked:
        title, detail = "token revoked", "the bearer token was revoked: the feed ends; ask for a new token"
    else:
        title, detail = "token expired", "the bearer token expired: reconnect with a fresh token and Last-Event-ID"
    return ServerSentEvent(
        orjson.dumps({"title": title, "detail": detail, "position": position}).decode(),
        event=TOKEN_REVOKED if revoked else TOKEN_EXPIRED,
        id=str(position),
    )


def _passed(position: int) -> ServerSentEvent:
    """An `id` without data after events the caller is not sent (filtered out, not theirs to see, other
    categories): the client's Last-Event-ID moves past them, so a reconnection does not read them all again. At
    most one per page read."""
    return ServerSentEvent(comment=f"through position {position}", id=str(position))


async def live_events(
    store: EventStore,
    hub: StreamHub,
    principal: Principal | None,
    wanted: StreamFilter,
    after_position: int | None,
    tokens: TokenService,
) -> AsyncIterator[ServerSentEvent]:
    """The feed from just after `after_position` (a Last-Event-ID), or from now when None, until the caller's
    token runs out (`Principal.valid_until`, judged on the token service's clock) or is revoked: a feed is opened
    with the token's rights, so it must not carry them past the moment the token would be refused. A revocation
    is looked for before each page is read and again before it is sent."""
    position = after_position if after_position is not None else await to_thread.run_sync(store.head_position)
    valid_until = principal.valid_until if principal is not None else None
    clock = tokens.clock

    def seconds_left() -> float | None:
        return None if valid_until is None else (valid_until - clock.now()).total_seconds()

    def ended() -> ServerSentEvent | None:
        """The feed's last event if the token no longer holds (the position it names: the last one passed)."""
        left = seconds_left()
        if left is not None and left <= 0:
            return _token_ended_event(position, revoked=False)
        if principal is not None and tokens.revoked(principal):
            return _token_ended_event(position, revoked=True)
        return None

    viewer = _Viewer(store, principal, wanted)
    wake = hub.listen()
    try:
        # Tells the client where its feed starts, and gives it that as its id (an `id` without data is no event): an
        # EventSource cannot read the comment, and reconnecting before anything came it would start at the new head,
        # missing what was committed while it was away (found in a bug hunt).
        yield ServerSentEvent(comment=f"from position {position}", id=str(position))
        while True:
            last = ended()  # in memory (the revocations' copy): no hop to a worker thread
            if last is not None:
                yield last
                return
            events, unreadable = await to_thread.run_sync(_page, store, position)
            if unreadable is not None:
                position = unreadable
                yield _passed(position)
                continue
            if not events:
                wake.clear()
                # Cleared before looking again: a commit in between sets it anew, so no wake-up is lost.
                head = await to_thread.run_sync(store.head_position)
                if head > position and not await to_thread.run_sync(store.read_all, position + 1, "complaint", 1):
                    position = head  # the rest of the log is other categories
                    yield _passed(position)
                    continue
                if head <= position:
                    # The token's end also wakes an idle feed, and a revocation is looked for now and then.
                    left = seconds_left()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), IDLE_RECHECK if left is None else min(left, IDLE_RECHECK))
                continue
            shown = await to_thread.run_sync(viewer.view, events)
            if ended() is not None:
                continue  # this page is not sent: the feed's last event names the position before it
            for event in shown:
                yield event
            position = events[-1].position
            if not shown or shown[-1].id != str(position):
                yield _passed(position)
    finally:
        hub.leave(wake)
