"""Folded complaint states, shared by the projections of one process.

Several projections fold the same complaint events (routing's queue, followup's agency queues): each asks for
the state before and after an event, and whichever asks first folds it; the others get the same state objects.
A projection that asks for a state nobody holds (after a restart, or one evicted) has the stream's prefix folded
from the store, as each projection used to do on its own.

A remembered state is used only where the hash chain says it belongs: the state after version v is the one
before an event whose `prev_hash` is v's hash, and is the state after an event only if that event's `hash` is
v's. So a state can never be applied to another history of the same stream (a different store, a test's
invented events): such a request is a miss and is folded from the store.

`lapor rebuild` gives its projections their own, larger instance and folds each batch into it once, in log
order, before handing the batch to every projection in turn (`prefold`): they find each event's pair of states
by its position, and `keep_latest` drops the pairs and all but each complaint's newest state once the batch is
through.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from lapor.complaint import STREAM_PREFIX, ComplaintState, evolve, fold, initial_state
from lapor.store import EventStore, RecordedEvent

DEFAULT_CAPACITY = 20_000  # complaints remembered by a serving process
DEFAULT_HISTORY = 4  # states remembered per complaint: projections a few events apart all find theirs

# (version, hash of the event that produced it, the state after it)
_Entry = tuple[int, str, ComplaintState]


class ComplaintStates:
    """The recent states of the most recently touched `capacity` complaints, `history` versions each.
    Thread-safe: the subscriptions of a process run in their own threads."""

    def __init__(self, store: EventStore, *, capacity: int = DEFAULT_CAPACITY, history: int = DEFAULT_HISTORY) -> None:
        if capacity < 1 or history < 2:
            raise ValueError("ComplaintStates needs capacity >= 1 and history >= 2 (a state and the one before)")
        self._store = store
        self._capacity = capacity
        self._history = history
        self._recent: OrderedDict[str, list[_Entry]] = OrderedDict()
        self._lock = threading.Lock()
        # Once `keep_latest` was called (a rebuild): the complaints holding more than their newest state since.
        self._crowded: set[str] | None = None
        # Set by `prefold` (a rebuild): (hash, state before, state after) of each event of the batch, by position.
        self._prefolded: dict[int, tuple[str, tuple[ComplaintState, ComplaintState]]] = {}
        self.folded = 0  # events evolved here (a state built once serves every projection)
        self.read_from_store = 0  # prefixes folded from the store because no state was remembered

    def step(self, event: RecordedEvent) -> tuple[ComplaintState, ComplaintState]:
        """(the complaint's state before `event`, its state after). Raises what `evolve` raises for an event the
        lifecycle refuses, and then remembers nothing."""
        prefolded = self._prefolded_pair(event)
        if prefolded is not None:
            return prefolded
        tracking_id = event.stream.removeprefix(STREAM_PREFIX)
        version = event.version
        before = None
        with self._lock:
            entries = self._recent.get(tracking_id)
            if entries is not None:
                self._recent.move_to_end(tracking_id)
                before, after = _held(entries, event)
                if version == 0 and after is not None:
                    return initial_state(tracking_id), after
                if before is not None:
                    if after is not None:
                        return before, after  # folded before, by another projection
                    if entries[-1][2] is before:  # the usual case: the next version of the newest we hold
                        after = evolve(before, event)
                        self.folded += 1
                        entries.append((version, event.hash, after))
                        self._trim(tracking_id, entries)
                        return before, after
        if before is None:
            before = initial_state(tracking_id) if version == 0 else self._fold_before(event, tracking_id)
        after = evolve(before, event)
        self._remember(tracking_id, version, event.hash, after, before, event.prev_hash)
        return before, after

    def after(self, event: RecordedEvent) -> ComplaintState:
        return self.step(event)[1]

    def remembered_after(self, event: RecordedEvent) -> ComplaintState | None:
        """The state after `event` if it is held here, else None: never folds, never reads the store (for a
        projection that can evolve the state itself and only wants to save doing it twice)."""
        prefolded = self._prefolded_pair(event)
        if prefolded is not None:
            return prefolded[1]
        with self._lock:
            entries = self._recent.get(event.stream.removeprefix(STREAM_PREFIX))
            return None if entries is None else _held(entries, event)[1]

    def prefold(self, events: Sequence[RecordedEvent]) -> None:
        """Fold a batch of complaint events in position order once, up front, for the projections that ask for them
        next (a rebuild, which reads the log in order: each event's state before is the newest one held). Each
        complaint keeps only its newest state. An event that does not follow the newest state held (by version and
        hash chain) is left to `step` as before: so is one the lifecycle refuses, and with it the rest of its
        stream. `keep_latest` forgets the batch's pairs."""
        recent, prefolded = self._recent, self._prefolded
        before: ComplaintState | None
        with self._lock:
            for event in events:
                tracking_id = event.stream.removeprefix(STREAM_PREFIX)
                entries = recent.get(tracking_id)
                if entries is None:
                    if event.version != 0:
                        continue
                    before = initial_state(tracking_id)
                else:
                    before = _held(entries, event)[0]
                    if before is None:
                        continue
                try:
                    after = evolve(before, event)
                except Exception:  # noqa: BLE001 - whatever it is, `step` raises it again in the projection, which parks it
                    continue
                self.folded += 1
                self._entries(tracking_id)[:] = [(event.version, event.hash, after)]
                prefolded[event.position] = (event.hash, (before, after))

    def _prefolded_pair(self, event: RecordedEvent) -> tuple[ComplaintState, ComplaintState] | None:
        """(state before, state after) of `event` if `prefold` folded this very event (by position and hash)."""
        prefolded = self._prefolded.get(event.position)
        return prefolded[1] if prefolded is not None and prefolded[0] == event.hash else None

    def _entries(self, tracking_id: str) -> list[_Entry]:
        """The complaint's remembered states, now the most recently used (with the lock held): a new complaint's
        list is added, and the least recently used complaint beyond `capacity` forgotten."""
        entries = self._recent.get(tracking_id)
        if entries is None:
            entries = self._recent[tracking_id] = []
            if len(self._recent) > self._capacity:
                self._recent.popitem(last=False)
        else:
            self._recent.move_to_end(tracking_id)
        return entries

    def _fold_before(self, event: RecordedEvent, tracking_id: str) -> ComplaintState:
        """The state before `event` (version > 0) from the store's log."""
        self.read_from_store += 1
        earlier = self._store.read_stream(event.stream, 0, event.version)
        state = fold(earlier, initial_state(tracking_id))
        assert state is not None
        return state

    def _remember(
        self, tracking_id: str, version: int, hash_: str, after: ComplaintState, before: ComplaintState, prev: str
    ) -> None:
        with self._lock:
            self.folded += 1
            entries = self._entries(tracking_id)
            if entries and entries[-1][0] == version - 1 and entries[-1][1] == prev:
                entries.append((version, hash_, after))  # the usual case: the next version of what we hold
            else:
                kept = [entry for entry in entries if entry[0] not in (version, version - 1)]
                if version > 0:
                    kept.append((version - 1, prev, before))
                kept.append((version, hash_, after))
                kept.sort(key=_version)
                entries[:] = kept
            self._trim(tracking_id, entries)

    def _trim(self, tracking_id: str, entries: list[_Entry]) -> None:
        """Keep `history` states (with the lock held)."""
        if len(entries) > self._history:
            del entries[: len(entries) - self._history]
        if self._crowded is not None and len(entries) > 1:
            self._crowded.add(tracking_id)

    def keep_latest(self) -> None:
        """Forget every state but each complaint's newest (a rebuild, once every projection has had a batch)."""
        with self._lock:
            self._prefolded = {}
            if self._crowded is None:
                for entries in self._recent.values():
                    del entries[:-1]
            else:
                for tracking_id in self._crowded:
                    crowded = self._recent.get(tracking_id)
                    if crowded is not None:
                        del crowded[:-1]
            self._crowded = set()

    def __len__(self) -> int:
        return len(self._recent)


def _held(entries: list[_Entry], event: RecordedEvent) -> tuple[ComplaintState | None, ComplaintState | None]:
    """(the state before `event`, the state after it) among a complaint's `entries`, each None when not held
    for this history (by the hash chain). Newest first: the ones asked for are nearly always the last two."""
    version = event.version
    before = after = None
    for entry_version, entry_hash, state in reversed(entries):
        if entry_version == version:
            if entry_hash == event.hash:
                after = state
        elif entry_version == version - 1:
            if entry_hash == event.prev_hash:
                before = state
            break
        elif entry_version < version:
            break
    return before, after


def _version(entry: _Entry) -> int:
    return entry[0]
