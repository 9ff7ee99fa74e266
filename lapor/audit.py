"""Integrity of the log: every stream's hash chain, walked in position order.

Each recorded event carries `prev_hash` (the hash of the stream's previous event, or the genesis hash for
version 0) and `hash` = SHA-256(prev_hash || canonical JSON of the event). Changing what the hash covers — event
id, stream, version, type, schema version, data, metadata, time — breaks its own hash; deleting or reordering
events breaks the next link or the version sequence. The stored category is not hashed, so the walk reads each
batch by category too (`_misfiled`); the position is not hashed either. What a chain cannot show on its own is
the loss of a stream's *last* events (or of a whole stream), nor a stream re-chained by someone who can write
the store: docs/store.md, "What the hash chain proves", says exactly what is and is not shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from lapor.store import GENESIS_HASH, EventStore, RecordedEvent, UnreadableEvent, read_readable

Progress = Callable[[int, int, int], None]  # (events checked so far, last position checked, head position)


@dataclass(frozen=True)
class BrokenLink:
    # None for an event that cannot be read whose stream (version) is not stored as a text (an integer) either, and
    # for the head's own link
    stream: str | None
    version: int | None
    position: int
    problem: str

    def describe(self) -> str:
        if self.stream is None:
            return f"position {self.position}: {self.problem}"
        return f"{self.stream} version {self.version} (position {self.position}): {self.problem}"


@dataclass
class IntegrityReport:
    """`events_checked`: the events the walk read (each link checked, but for those after its stream's first break);
    `events_unreadable`: the events it found and could not read (each a broken link). Until session 30 the report
    said only the first, so an auditor comparing it with the events a log holds met a shortfall the report did not
    explain: `events_found` is every event up to the head (or up to the first break, when the walk stopped there)."""

    events_checked: int = 0
    events_unreadable: int = 0
    streams_checked: int = 0
    head_position: int = 0
    broken: list[BrokenLink] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.broken

    @property
    def events_found(self) -> int:
        return self.events_checked + self.events_unreadable

    @property
    def first_broken(self) -> BrokenLink | None:
        return self.broken[0] if self.broken else None


def check_link(event: RecordedEvent, last: tuple[int, str] | None) -> str | None:
    """What is wrong with `event` given its stream's previous (version, hash), or None."""
    expected_version = 0 if last is None else last[0] + 1
    expected_prev = GENESIS_HASH if last is None else last[1]
    if event.version != expected_version:
        return f"version {event.version} follows {expected_version - 1}: an event is missing or reordered"
    if event.prev_hash != expected_prev:
        return "prev_hash does not match the previous event's hash: the chain was cut or rewritten"
    try:
        altered = event.expected_hash() != event.hash
    except ValueError as error:  # its event id or metadata does not decode (SQLite keeps whatever it is given)
        return f"a field cannot be read ({error}): the event was altered"
    return "content does not match its hash: the event was altered" if altered else None


def verify_chain(
    store: EventStore,
    *,
    batch_size: int = 5000,
    stop_at_first: bool = False,
    progress: Progress | None = None,
) -> IntegrityReport:
    """Walk the log as it stood when the walk began: up to the head position read first, so the report and its
    progress speak of one fixed log (events appended meanwhile are the next walk's). Positions are not a count,
    so progress is the last position checked against that head. A stream stays broken after its first bad link
    (later links are not reported)."""
    head = store.head_position()
    report = IntegrityReport(head_position=head)
    heads: dict[str, tuple[int, str]] = {}
    broken_streams: set[str] = set()
    position = 1
    while position <= head:
        events, unreadable = read_readable(store, position, None, batch_size)
        events = [event for event in events if event.position <= head]
        if unreadable is not None and unreadable.position > head:
            unreadable = None
        if not events and unreadable is None:
            break
        misfiled = _misfiled(store, events) if events else {}
        for event in events:
            report.events_checked += 1
            if event.stream in broken_streams:
                continue
            problem = check_link(event, heads.get(event.stream))
            if problem is None and event.position in misfiled:
                # The link itself holds, so the stream's chain is walked on past it.
                report.broken.append(BrokenLink(event.stream, event.version, event.position, misfiled[event.position]))
                if stop_at_first:
                    report.streams_checked = len(heads) + len(broken_streams)
                    return report
            if problem is not None:
                report.broken.append(BrokenLink(event.stream, event.version, event.position, problem))
                broken_streams.add(event.stream)
                if stop_at_first:
                    report.streams_checked = len(heads) + len(broken_streams)
                    return report
                continue
            heads[event.stream] = (event.version, event.hash)
        if unreadable is not None:
            # Each such event is a link of its own, named as stored, even in a stream already broken: every one is a
            # row to restore (until session 30 a run of them was one link "from position A to B", its stream null,
            # which hid that two streams were hit and counted positions that hold no event). Its stream is broken
            # from here: its next link would only say that this one is missing.
            report.broken.append(_unreadable(unreadable))
            report.events_unreadable += 1
            if unreadable.stream is not None:
                broken_streams.add(unreadable.stream)
            if stop_at_first:
                report.streams_checked = len(heads.keys() | broken_streams)
                return report
        position = (events[-1].position if unreadable is None else unreadable.position) + 1
        if progress is not None:
            progress(report.events_checked, position - 1, head)
    report.streams_checked = len(heads.keys() | broken_streams)
    if position <= head:
        # The reads ended before the head. PostgreSQL keeps the last position it gave out in a row of its own
        # (`lapor_head`), so this is the log's newest events deleted without that row; SQLite's head is the last
        # event's position, so there nothing shows such a deletion (docs/store.md, "What the hash chain proves").
        problem = (f"the store's head is position {head}, but no event after position {position - 1} is there: "
                   "the newest events of the log were deleted")
        report.broken.append(BrokenLink(None, None, head, problem))
    return report


def _misfiled(store: EventStore, events: list[RecordedEvent]) -> dict[int, str]:
    """Among `events` (every event from the first's position to the last's), those a read by category does not find
    where their stream's category says, by position, with what is wrong. The stored category is not in the hash
    (the stream is), and subscriptions read by it: changed, it hid an event from them while every chain held.
    One read per category of the batch, of as many events as it holds in the batch: the same ones, and nothing is
    misfiled (an event filed under a category but not of it is then missing where its stream's category says)."""
    first, last = events[0].position, events[-1].position
    positions: dict[str, set[int]] = {}
    for event in events:
        positions.setdefault(event.category, set()).add(event.position)
    misfiled: dict[int, str] = {}
    for category, expected in positions.items():
        filed = _filed(store, category, first, last, len(expected))
        if filed != expected:  # read them all to name each (a wrong one may have pushed a right one past the limit)
            filed = _filed(store, category, first, last, len(events))
        for position in sorted(expected - filed):
            misfiled.setdefault(position, f"stored under another category than its stream's ({category!r}): "
                                          f"whoever reads {category!r} events does not see it; the log was altered")
        for position in sorted(filed - expected):
            misfiled.setdefault(position, f"stored under the category {category!r}, which is not its stream's: "
                                          f"whoever reads {category!r} events sees it; the log was altered")
    return misfiled


def _filed(store: EventStore, category: str, first: int, last: int, limit: int) -> set[int]:
    """The positions from `first` to `last` of at most `limit` events read under `category`. Every event up to
    `last` was read already; one past it that cannot be read (an altered one, the walk's next) ends the read there."""
    events, _ = read_readable(store, first, category, limit)
    return {event.position for event in events if event.position <= last}


def _unreadable(unreadable: UnreadableEvent) -> BrokenLink:
    # Its kind and field only: the decode's words quote the stored content (`UnreadableEvent.problem`).
    problem = f"this event cannot be read ({unreadable.problem}): the log was altered"
    return BrokenLink(unreadable.stream, unreadable.version, unreadable.position, problem)
