"""Audit replay: a complaint's whole history with who did what, when, and its hash chain; its state at any past
moment; and the integrity check over the whole log.

The state at a moment is the shared fold (`lapor.complaint.fold`) over the history up to the first event recorded
after that moment — the very fold the services decided with, so an auditor sees what they saw.

The integrity check walks every stream's hash chain (`lapor.audit.verify_chain`). On a large log that takes a
while, so `GET /api/audit/integrity` streams its answer as NDJSON: a `progress` line after every batch of events
checked, then one `result` line. A client that goes away stops the walk. (Chosen over a background job: nothing
to store or expire, each auditor's run is their own, and the answer cannot be stale.)
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import orjson
from anyio import to_thread
from pydantic import BaseModel, Field

from lapor.audit import IntegrityReport, check_link, verify_chain
from lapor.complaint import ComplaintState, IllegalTransition, VersionGap, fold
from lapor.principal import Principal
from lapor.privacy import (
    Audience,
    audience_of,
    can_see,
    masked_at_source,
    redact_complaint,
    redact_event_data,
    redact_metadata,
    reporter_identity,
)
from lapor.problems import NotFound
from lapor.store import EventStore, RecordedEvent
from lapor.store import UnreadableEvent as StoredUnreadable

log = logging.getLogger("lapor.reporting.audit")

STREAM_PREFIX = "complaint-"


class AuditEvent(BaseModel):
    position: int
    version: int
    type: str
    schema_version: int
    recorded_at: datetime
    actor: str | None = Field(description="who decided: an officer's subject, 'system' for timers, 'pelapor'")
    role: str | None
    data: dict[str, Any]
    metadata: dict[str, Any]
    prev_hash: str
    hash: str
    chain_ok: bool = Field(description="this link of the hash chain checks out")
    problem: str | None = Field(None, description="what is wrong with the link, if anything")
    refused: str | None = Field(
        None, description="why the lifecycle refuses this event (the state stops before it; projections park it)"
    )


class UnreadableEvent(BaseModel):
    version: int = Field(description="the version from which the stream's next event cannot be read")
    problem: str


class AuditHistory(BaseModel):
    tracking_id: str
    chain_ok: bool
    events: list[AuditEvent]
    unreadable: list[UnreadableEvent] = Field(
        default_factory=list,
        description="events that cannot be read at all (a stored field changed past decoding), not in `events`",
    )


class StateAt(BaseModel):
    tracking_id: str
    at: datetime
    existed: bool = Field(description="false when the report was submitted after `at`")
    version: int = Field(description="version of the last event at or before `at`; -1 before submission")
    position: int | None = Field(description="log position of that event")
    state: dict[str, Any] | None = Field(description="the folded state as the caller may see it")
    refused: str | None = Field(
        None,
        description="an event up to `at` the state cannot go past (the lifecycle refuses it, or it was altered past "
        "reading): the state is the one before it",
    )


Unreadable = dict[int, str]  # version -> why the stream's event from that version on cannot be read


def _events(store: EventStore, tracking_id: str) -> tuple[list[RecordedEvent], Unreadable]:
    """The report's events, and those that cannot be read at all: SQLite keeps whatever bytes it is given, so a
    change made to the file can leave data or a time that does not decode, and reading the stream failed (a 500
    where the integrity check names the event). Then it is read one event at a time."""
    stream = STREAM_PREFIX + tracking_id
    unreadable: Unreadable = {}
    try:
        events = store.read_stream(stream)
    except ValueError:
        events, unreadable = _one_by_one(store, stream)
    if not events and not unreadable:
        raise NotFound(f"complaint {tracking_id} not found")
    return events, unreadable


def _one_by_one(store: EventStore, stream: str) -> tuple[list[RecordedEvent], Unreadable]:
    events: list[RecordedEvent] = []
    unreadable: Unreadable = {}
    version, last = 0, store.stream_version(stream)
    while version <= last:
        try:
            page = store.read_stream(stream, version, 1)
        except StoredUnreadable as error:
            # Its kind and field only: the decode's words quote the stored content, which may hold a reporter's
            # personal data (session 31: they were shown); the server's log keeps them.
            log.warning("audit: %s", error)
            unreadable[version] = f"this event cannot be read ({error.problem}): the log was altered"
            version += 1
            continue
        if not page:
            break
        events.append(page[0])
        version = page[0].version + 1
    return events, unreadable


def _content(event: RecordedEvent) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The event's data and metadata, None when either does not decode or is not a JSON object: the store writes
    objects only, so that is a change made to the database (the history was a 500)."""
    try:
        data, metadata = event.data, event.metadata
    except ValueError:
        return None
    return (data, metadata) if isinstance(data, dict) and isinstance(metadata, dict) else None


def _until(
    events: list[RecordedEvent], unreadable: Unreadable, moment: datetime | None
) -> tuple[list[RecordedEvent], str | None]:
    """The history up to the first event recorded after `moment` (None: the whole history), not every event recorded
    by then: hosts writing one store stamp with their own clocks, so a later version may carry an earlier time, and a
    selection by time left a gap the fold refused. Also why it stops before that: an event that cannot be read, or
    whose time has no offset (changes made to the database), of which nobody can say whether it came before
    `moment`."""
    first_unreadable = min(unreadable, default=None)
    prefix: list[RecordedEvent] = []
    for event in events:
        if first_unreadable is not None and event.version > first_unreadable:
            break
        if event.recorded_at.tzinfo is None:
            return prefix, f"version {event.version}: its time has no UTC offset: the log was altered"
        if moment is not None and event.recorded_at > moment:
            return prefix, None
        prefix.append(event)
    if first_unreadable is None:
        return prefix, None
    return prefix, f"version {first_unreadable}: {unreadable[first_unreadable]}"


def _check_visible(state: Any, principal: Principal | None, tracking_id: str) -> None:
    """404 unless the principal may see the report. A history whose very first event does not fold has no state
    to judge: only those who see every report (`audit.read`'s roles all do) get it, never a 500."""
    if state is None:
        if audience_of(principal) in (Audience.national_admin, Audience.oversight):
            return
        raise NotFound(f"complaint {tracking_id} not found")
    if not can_see(state, principal):
        raise NotFound(f"complaint {tracking_id} not found")


def _fold_allowed(events: list[RecordedEvent]) -> tuple[ComplaintState | None, RecordedEvent | None, str | None]:
    """The state folded up to the first event the lifecycle refuses (all of them when none is), that event and why.
    A log holds such an event only by a bug or by hand; an auditor must still read the history around it, where
    folding it whole answered 409 (found in a bug hunt)."""
    state: ComplaintState | None = None
    for event in events:
        try:
            state = fold([event], state)
        except Exception as refusal:  # noqa: BLE001 - refused by the lifecycle, of a newer schema, ...: parked too
            lifecycle = isinstance(refusal, IllegalTransition | VersionGap)
            return state, event, str(refusal) if lifecycle else f"{type(refusal).__name__}: {refusal}"
    return state, None, None


def history(store: EventStore, tracking_id: str, principal: Principal | None) -> AuditHistory:
    events, unreadable = _events(store, tracking_id)
    state, refused, reason = _fold_allowed(events)
    _check_visible(state, principal, tracking_id)
    anonymous = state.anonymous if state is not None else True
    identity = reporter_identity(store.vault, state, principal)
    shown = []
    last: tuple[int, str] | None = None
    for event in events:
        problem = check_link(event, last)
        last = (event.version, event.hash)
        content = _content(event)
        if content is None:
            content = {}, {}
            problem = problem or "its data or metadata is not a JSON object: the event was altered"
        # What intake masked when it logged it is not put through the detector again (`MaskedText`).
        data, metadata = masked_at_source(*content), redact_metadata(content[1], principal)
        shown.append(
            AuditEvent(
                position=event.position,
                version=event.version,
                type=event.type,
                schema_version=event.schema_version,
                recorded_at=event.recorded_at,
                actor=metadata.get("actor"),
                role=metadata.get("role"),
                data=redact_event_data(event.type, data, principal, anonymous=anonymous, identity=identity),
                metadata=metadata,
                prev_hash=event.prev_hash,
                hash=event.hash,
                chain_ok=problem is None,
                problem=problem,
                refused=reason if event is refused else None,
            )
        )
    return AuditHistory(
        tracking_id=tracking_id,
        chain_ok=not unreadable and all(e.chain_ok for e in shown),
        events=shown,
        unreadable=[UnreadableEvent(version=version, problem=problem) for version, problem in unreadable.items()],
    )


def state_at(
    store: EventStore, tracking_id: str, at: datetime | None, principal: Principal | None, now: datetime
) -> StateAt:
    events, unreadable = _events(store, tracking_id)
    # Visibility is judged on the report as it stands now: a report that became confidential-to-you stays so.
    _check_visible(_fold_allowed(events)[0], principal, tracking_id)
    # Without a moment, the state now is that of every event recorded so far: one stamped by a host whose clock runs
    # ahead of this one's is not a moment to come (the state left it out, a version behind the history).
    prefix, stopped = _until(events, unreadable, at)
    state, refused, reason = _fold_allowed(prefix)
    identity = reporter_identity(store.vault, state, principal)
    folded = prefix if refused is None else prefix[: prefix.index(refused)]
    last = folded[-1] if folded else None
    return StateAt(
        tracking_id=tracking_id,
        at=at or now,
        existed=state is not None,
        version=last.version if last is not None else -1,
        position=last.position if last is not None else None,
        state=None if state is None else redact_complaint(state, principal, identity=identity),
        refused=stopped if refused is None else f"version {refused.version}: {reason}",
    )


# -- integrity ------------------------------------------------------------------------------------------------


class _Stopped(Exception):
    """The client went away: the walk ends early."""


def _line(value: dict[str, Any]) -> bytes:
    return orjson.dumps(value) + b"\n"


def _result(report: IntegrityReport) -> dict[str, Any]:
    return {
        "type": "result",
        "ok": report.ok,
        "events_found": report.events_found,
        "events_checked": report.events_checked,
        "events_unreadable": report.events_unreadable,
        "streams_checked": report.streams_checked,
        "head_position": report.head_position,
        "broken": [
            {"stream": link.stream, "version": link.version, "position": link.position, "problem": link.problem}
            for link in report.broken
        ],
    }


async def integrity_lines(store: EventStore, *, batch_size: int = 5000) -> AsyncIterator[bytes]:
    """NDJSON: {"type": "progress", "checked", "position", "head_position"} lines while the walk goes on (events
    checked, the last position checked, the head the walk stops at), then the result; or, when the store fails
    under the walk, {"type": "error", "ok": false, "position", "problem"}: nothing can be said past `position`."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[bytes | None] = asyncio.Queue()
    stop = threading.Event()
    walked = 0  # the last position checked

    def progress(checked: int, position: int, head: int) -> None:
        nonlocal walked
        if stop.is_set():
            raise _Stopped
        walked = position
        line = _line({"type": "progress", "checked": checked, "position": position, "head_position": head})
        loop.call_soon_threadsafe(lines.put_nowait, line)

    def walk() -> None:
        try:
            report = verify_chain(store, batch_size=batch_size, progress=progress)
            loop.call_soon_threadsafe(lines.put_nowait, _line(_result(report)))
        except _Stopped:
            pass
        except Exception as error:  # said to the auditor: the 200 and its lines are already sent
            # A damaged file ("database disk image is malformed"), the server gone: the answer's status is sent
            # with the first line, so the stream ends with what happened, not cut off as if the walk were done.
            log.warning("integrity walk failed after position %d", walked, exc_info=True)
            problem = f"the store could not be read after position {walked}: {' '.join(str(error).split())}"
            failed = {"type": "error", "ok": False, "position": walked, "problem": problem[:500]}
            loop.call_soon_threadsafe(lines.put_nowait, _line(failed))
        finally:
            loop.call_soon_threadsafe(lines.put_nowait, None)  # the end, also of a walk that failed

    worker = asyncio.ensure_future(to_thread.run_sync(walk))
    try:
        while (line := await lines.get()) is not None:
            yield line
        await worker
    finally:
        stop.set()
