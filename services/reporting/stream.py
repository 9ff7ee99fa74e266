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
for commits (`store.wait_for_events`) while anyone listens and wakes every connection's asyncio event. Nor do they
read and fold the log each on its own (session 29): the hub's `_Window` keeps the most recent complaint events read
and folded once for the process, and feeds at or near the head take their pages from it; only a feed behind it
(resumed from far back, or too slow) reads and folds for itself until it reaches it. What the detector makes of a
text is kept once for the process too (`_detections`). Per feed stay who may see each event, the client's filters,
and the redaction for the caller's role.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from anyio import to_thread
from cachetools import LRUCache, cached
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.types import Receive, Scope, Send

from lapor.auth import TokenService
from lapor.complaint import ComplaintState, evolve, fold
from lapor.context import BackgroundLoop, ServiceContext
from lapor.principal import Principal
from lapor.privacy import (
    can_see_report,
    involved_agencies,
    mask_text,
    masked_at_source,
    redact_event_data,
    redact_metadata,
    reporter_identity,
)
from lapor.store import EventStore, RecordedEvent, read_readable

log = logging.getLogger("lapor.reporting.stream")

PAGE = 200  # events read per step of a stream
HUB_WAIT = 0.5  # seconds the hub waits for commits before it looks whether anyone still listens
HUB_FRESH = 5.0  # seconds the head the hub saw last is taken for the head by the feeds it wakes (`known_head`)
FOLDED_COMPLAINTS = 2000  # complaint states a feed behind the window keeps to judge visibility without re-reading
WINDOW = 1000  # complaint events the hub keeps read and folded for the feeds at or near the head (`_Window`)
SHARED_FOLDED = 10_000  # complaint states the window keeps folded (one per report) to fold the next events
DETECTIONS = 4_000_000  # characters (texts and their masks) of the detector's results the hub keeps
TOKEN_EXPIRED = "token_expired"  # SSE event type of the last thing a feed sends when its token runs out
TOKEN_REVOKED = "token_revoked"  # ... and when its token is revoked (`lapor.revocation`)
IDLE_RECHECK = 15.0  # seconds an idle feed waits before it looks again whether its token was revoked
# Seconds one message of a feed may wait for its client to take it (`FeedResponse`): a client that reads nothing
# for this long is cut off, and reconnects with its Last-Event-ID.
SEND_TIMEOUT = 30.0


class StreamHub:
    """Wakes every open stream when the store's head moves. Runs as the service's background loop, so it stops
    before the store is closed; it waits on the store only while someone listens."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._listeners: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._seen: tuple[int, float] | None = None  # the head the loop saw last, and when (monotonic)
        self.window = _Window(store, self.known_head)  # the recent complaint events, read and folded once
        self.detections = _detections(DETECTIONS)  # the detector's results, for every feed

    def listen(self) -> asyncio.Event:
        """An event set whenever something is committed; call `leave` with it when done."""
        wake = asyncio.Event()
        with self._lock:
            self._listeners.add((asyncio.get_running_loop(), wake))
        return wake

    def leave(self, wake: asyncio.Event) -> None:
        with self._lock:
            self._listeners = {entry for entry in self._listeners if entry[1] is not wake}
            idle = not self._listeners
        if idle:
            # Nobody follows the head: the window would only go stale (and the next feed read the gap to reach it).
            self.window.reset()

    def known_head(self) -> int | None:
        """The head the loop saw last, while that is recent (HUB_FRESH; None otherwise, or when no loop runs in this
        process): a feed that cleared its wake-up before asking is woken by any commit past it, since the loop wakes
        every listener when it sees the head move past what it saw. Spares every open feed a read of the head at
        each commit and each idle look."""
        with self._lock:
            seen = self._seen
        return seen[0] if seen is not None and time.monotonic() - seen[1] < HUB_FRESH else None

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
            with self._lock:
                self._seen = (head, time.monotonic())  # before the wake-ups: a woken feed finds it
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


@dataclass(frozen=True, slots=True)
class _Folded:
    """A complaint event as read and folded: the report as it stood before and after it (`after` None when the
    fold cannot take it or an earlier event of its report: nobody is sent it), its metadata (None when it cannot be
    read) and its data as `masked_at_source` gives it. Shared by every feed the window serves: read only."""

    event: RecordedEvent
    before: ComplaintState | None
    after: ComplaintState | None
    metadata: Mapping[str, Any] | None
    data: Mapping[str, Any]


class _Folder:
    """Folds complaint events in log order, keeping the reports it has seen folded up to their last event (a
    bounded number), reading a stream's earlier events only the first time. Not thread-safe: one reader at a
    time (the window's, under its lock; a feed's own)."""

    def __init__(self, store: EventStore, size: int) -> None:
        self._store = store
        self._size = size
        self._states: OrderedDict[str, ComplaintState] = OrderedDict()
        self._refused: OrderedDict[str, int] = OrderedDict()  # stream -> the version the fold could not take

    def _history(self, event: RecordedEvent) -> ComplaintState | list[RecordedEvent]:
        """The report as it stood before `event`, when kept; else its events before it, read from the store. A
        failure of the store (out of reach, a lock not granted) is raised: it says nothing about the report, and
        taken for a refusal it left the report's later events out of the feed for good (of every feed, since they
        share the window); an event of the history that cannot be read is a ValueError, as in `_page`."""
        state = self._states.pop(event.stream, None)
        if state is not None and state.version == event.version - 1:
            return state
        return self._store.read_stream(event.stream, 0, limit=event.version) if event.version else []

    def _refuse(self, event: RecordedEvent, refused: Exception) -> _Folded:
        # An event the fold cannot take (refused by the lifecycle, of a schema newer than this code, one of its
        # history that cannot be read, ...): the projections park it for an operator. Nobody can be told who may
        # see it, so nobody is sent it, nor its complaint's later events, and the feed goes on. It used to end every
        # feed at that page, for good, for everyone (found in a bug hunt).
        self._refused[event.stream] = event.version
        if len(self._refused) > self._size:
            self._refused.popitem(last=False)
        log.warning("live stream: %s from version %d left out: %s", event.stream, event.version, refused)
        return _Folded(event, None, None, None, {})

    def fold(self, event: RecordedEvent) -> _Folded:
        refused_from = self._refused.get(event.stream)
        if refused_from is not None and event.version >= refused_from:
            # Its history stopped folding there: so do its later events. Not its earlier ones: the window's folder
            # outlives the window's placing (emptied when the last feed ends), and the next feed may place it before
            # them; every event of the report was then left out of that feed (session 31).
            return _Folded(event, None, None, None, {})
        try:
            history = self._history(event)
        except ValueError as unreadable:
            return self._refuse(event, unreadable)
        try:
            before = fold(history) if isinstance(history, list) else history
            after = evolve(before, event) if before is not None else fold([event])
        except Exception as refused:  # noqa: BLE001 - whatever the fold cannot take, the projections park
            return self._refuse(event, refused)
        assert after is not None
        self._states[event.stream] = after
        if len(self._states) > self._size:
            self._states.popitem(last=False)
        metadata = _readable_metadata(event)
        if metadata is None:
            # Changed in the database past reading (SQLite keeps whatever bytes it is given): who decided cannot be
            # told, so it is left out; the integrity check names it. It ended the feed (found in a bug hunt).
            log.warning("live stream: %s version %d left out: its metadata cannot be read", event.stream,
                        event.version)
            return _Folded(event, before, after, None, {})
        # What intake masked when it logged it is not put through the detector again (`MaskedText`): on some texts
        # it takes seconds, and every open feed ran it on every report filed.
        return _Folded(event, before, after, metadata, masked_at_source(event.data, metadata))


class _Viewer:
    """Decides, event by event, whether and how one caller sees the feed: on events as read and folded (by the
    window, or by the feed itself while behind it)."""

    def __init__(
        self, store: EventStore, principal: Principal | None, wanted: StreamFilter, detect: Callable[[str], str]
    ) -> None:
        self._store = store
        self._principal = principal
        self._wanted = wanted
        self._detect = detect

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

    def view(self, events: Sequence[_Folded]) -> list[ServerSentEvent]:
        shown = []
        identities: dict[str, Mapping[str, Any] | None] = {}  # by stream: one vault read per report on the page
        for folded in events:
            event, before, after, metadata = folded.event, folded.before, folded.after, folded.metadata
            if after is None or metadata is None:
                continue  # not folded, or who decided cannot be read: sent to nobody (`_Folder.fold`)
            if not self._wanted_by_client(event, before, after) or not (self._sees(before) or self._sees(after)):
                continue
            if event.stream not in identities:
                identities[event.stream] = reporter_identity(self._store.vault, after, self._principal)
            payload = self._payload(folded, metadata, after, identities[event.stream])
            shown.append(ServerSentEvent(orjson.dumps(payload).decode(), event=event.type, id=str(event.position)))
        return shown

    def _payload(
        self,
        folded: _Folded,
        metadata: Mapping[str, Any],
        state: ComplaintState,
        identity: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        event = folded.event
        return {
            "position": event.position,
            "tracking_id": state.tracking_id,
            "version": event.version,
            "type": event.type,
            "recorded_at": event.recorded_at.isoformat(),
            "region_code": state.region_code,
            "agency_id": state.agency_id,
            "data": redact_event_data(
                event.type, folded.data, self._principal, anonymous=state.anonymous, identity=identity,
                detect=self._detect,
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
    feed that came to it, again on each reconnection with its Last-Event-ID (found in a bug hunt): the store names it
    (`UnreadableEvent`, with the events before it), and it is left out (the integrity check names it)."""
    events, unreadable = read_readable(store, after + 1, "complaint", PAGE)
    if unreadable is None or events:
        return events, None
    log.warning("live stream: left out: %s", unreadable)
    return [], unreadable.position


# What a feed does next from a position: folded complaint events to view (their last position is where it is then);
# or none and the position it passes to (an event that cannot be read, or a stretch of other categories up to the
# head); or none and None: nothing committed after it yet.
_Step = tuple[list[_Folded], int | None]
_NOTHING_YET: _Step = ([], None)


def _read_on(store: EventStore, after: int, folder: _Folder) -> _Step:
    """What follows the position `after` in the store, read and folded (what a feed did on its own until the
    window): a page (`_page`), or where to pass to, or nothing yet."""
    while True:
        events, unreadable = _page(store, after)
        if unreadable is not None:
            return [], unreadable
        if events:
            return [folder.fold(event) for event in events], None
        head = store.head_position()
        if head <= after:
            return _NOTHING_YET
        if not store.read_all(after + 1, "complaint", 1):
            return [], head  # the rest of the log is other categories
        # A complaint event was committed between the two reads: read again.


@dataclass(frozen=True, slots=True)
class _Passed:
    """In the window: a position feeds pass to without an event (one that cannot be read, or the head after a
    stretch of other categories)."""

    position: int


class _Window:
    """The most recent complaint events, read from the store and folded once for every feed of the process: it
    holds every complaint event after `_start` up to `_through`, up to WINDOW of them (the oldest go first).

    A feed asks for what follows its position (`next`). Inside the window the answer is a slice of it, without
    the store; at its end one feed at a time reads the next page for everyone (`_reading`), the others waiting for
    it and then taking the page from the window; behind it the answer is None, and the feed reads for itself
    until it reaches it. Its entries are shared between threads and never changed."""

    def __init__(self, store: EventStore, known_head: Callable[[], int | None]) -> None:
        self._store = store
        self._known_head = known_head
        self._lock = threading.Lock()  # the fields below; held for work in memory only
        self._reading = threading.Lock()  # one reader of the store for the window; held before `_lock`
        self._folder = _Folder(store, SHARED_FOLDED)  # used under `_reading` only
        self._start: int | None = None  # None: empty, not placed yet
        self._through = 0
        self._generation = 0  # moves at each reset: a page read before it is not the window's
        self._reads = 0  # reads of the store begun for the window
        self._failed: tuple[int, Exception] | None = None  # the last read, when it failed: its number, the error
        self._positions: list[int] = []
        self._items: list[_Folded | _Passed] = []

    def reset(self) -> None:
        with self._lock:
            self._start, self._positions, self._items = None, [], []
            self._generation += 1

    def _taken(self, position: int) -> _Step | None:
        """From the window (under `_lock`), what follows `position`; None when it must be read first. The window is
        placed at the position of the first feed that asks."""
        if self._start is None:
            self._start = self._through = position
        if position >= self._through:
            return None
        index = bisect_right(self._positions, position)
        events: list[_Folded] = []
        for item in self._items[index : index + PAGE]:
            if isinstance(item, _Passed):
                if not events:
                    return [], item.position
                break
            events.append(item)
        return (events, None) if events else ([], self._through)

    def _behind(self, position: int) -> bool:
        return self._start is not None and position < self._start

    def next(self, position: int) -> _Step | None:
        """What follows `position` for a feed; None when it is behind the window (it reads for itself)."""
        with self._lock:
            if self._behind(position):
                return None
            taken = self._taken(position)
        if taken is not None:
            return taken
        head = self._known_head()
        if (self._store.head_position() if head is None else head) <= position:
            return _NOTHING_YET  # a commit after this wakes the feed (`StreamHub.run`)
        with self._lock:
            begun = self._reads
        with self._reading:
            failed = self._failed
            if failed is not None and failed[0] >= begun:
                # The reads begun while this feed waited failed (the store out of reach: each waits its pool's bound
                # before it fails): this one fails now with them, rather than every feed waiting its turn to fail.
                raise failed[1]
            pages = 0
            while True:
                with self._lock:
                    if self._behind(position):
                        return None
                    taken = self._taken(position)
                    through, generation = self._through, self._generation
                if taken is not None:
                    return taken
                pages += 1
                if pages > WINDOW // PAGE:
                    # A feed ahead of the window by more than it holds (it went stale): the window starts anew there,
                    # and whoever was at its old end reads for themselves.
                    with self._lock:
                        if generation == self._generation:
                            self._start, self._through, self._positions, self._items = position, position, [], []
                            self._generation += 1
                    pages = 0
                    continue
                with self._lock:
                    self._reads += 1
                try:
                    events, passed = _read_on(self._store, through, self._folder)
                except Exception as error:
                    self._failed = (self._reads - 1, error)
                    raise
                self._failed = None
                if not events and passed is None:
                    return _NOTHING_YET
                with self._lock:
                    if generation == self._generation:  # else reset while it was read: look again
                        self._add(events, passed)

    def _add(self, events: list[_Folded], passed: int | None) -> None:
        """The page read after `_through` (under `_lock`)."""
        items: list[_Folded | _Passed] = [*events] if events else [_Passed(passed)] if passed is not None else []
        self._items += items
        self._positions += [item.position if isinstance(item, _Passed) else item.event.position for item in items]
        self._through = self._positions[-1] if items else self._through
        if len(self._items) > WINDOW + PAGE:  # trimmed a page at a time, not at every event
            cut = len(self._items) - WINDOW
            self._start = self._positions[cut - 1]
            del self._items[:cut], self._positions[:cut]


def _detections(limit: int) -> Callable[[str], str]:
    """What lokal-id's detector makes of a text (`mask_text`), kept for every feed of the process: officials' texts
    are not masked when logged, and the detector can take seconds on one, which every feed of an audience that
    reads them masked (all but the national admin) ran again. Kept by the very text it ran on (after the identity
    scrub, which depends on the report and the audience), so what anyone sees is what `mask_text` gives; a text
    being detected is waited for, not detected again (cachetools' `condition`). At most about `limit` characters
    (each text and its mask, which keeps the text's length), the least recently used go first."""
    lock = threading.Lock()
    kept: LRUCache[Any, str] = LRUCache(limit, getsizeof=lambda masked: 2 * len(masked))
    return cached(kept, lock=lock, condition=threading.Condition(lock))(lambda text: mask_text(text)[0])


class _Source:
    """Where one feed's pages come from: the window, or, while the feed is behind it, its own reads and folds."""

    def __init__(self, store: EventStore, window: _Window) -> None:
        self._store = store
        self._window = window
        self._folder: _Folder | None = None

    def next(self, position: int) -> _Step:
        shared = self._window.next(position)
        if shared is not None:
            self._folder = None
            return shared
        if self._folder is None:
            self._folder = _Folder(self._store, FOLDED_COMPLAINTS)
        return _read_on(self._store, position, self._folder)


class FeedResponse(EventSourceResponse):
    """The feed as a response, ended when its client stops reading (session 32). A send waits while the connection's
    buffers are full, so a client that kept its connection open and read nothing (a frozen tab, a stuck proxy, a
    client that never reads) held its feed at a `yield` for ever: past its token's end and its revocation, which
    the feed only looks for between messages, with its connection, its task and the hub's window kept for it. Now a
    message not taken within SEND_TIMEOUT seconds ends the feed (said in the log, one line); the client reconnects
    with its Last-Event-ID, the id of the last message it took, and misses nothing."""

    def __init__(self, events: AsyncIterator[ServerSentEvent]) -> None:
        super().__init__(events, send_timeout=SEND_TIMEOUT)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            # The response cannot be ended cleanly (its closing message would wait like the others): the server
            # closes the connection.
            log.warning("live stream: its client took no message for %s s: the feed is ended", self.send_timeout)


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
    is looked for before each page is read, and the token's end and its revocation before each event is sent
    (session 32: the rest of a page begun was sent after them; a page of a busy feed is sent while its client
    reads it, for as long as SEND_TIMEOUT allows each event)."""
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

    source = _Source(store, hub.window)
    viewer = _Viewer(store, principal, wanted, hub.detections)
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
            wake.clear()  # before looking: a commit after the look sets it anew, so no wake-up is lost
            events, passed = await to_thread.run_sync(source.next, position)
            if passed is not None:
                position = passed  # an event that cannot be read, or the rest of the log is other categories
                yield _passed(position)
                continue
            if not events:
                # The token's end also wakes an idle feed, and a revocation is looked for now and then.
                left = seconds_left()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), IDLE_RECHECK if left is None else min(left, IDLE_RECHECK))
                continue
            shown = await to_thread.run_sync(viewer.view, events)
            for event in shown:
                last = ended()  # the feed's last event names the position of the last one sent
                if last is not None:
                    yield last
                    return
                yield event
                if event.id is not None:
                    position = int(event.id)
            position = events[-1].event.position
            if not shown or shown[-1].id != str(position):
                yield _passed(position)
    finally:
        hub.leave(wake)
