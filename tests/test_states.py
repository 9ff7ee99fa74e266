"""The complaint states shared by a process's projections (`lapor.states`), on a real SQLite store: each event is
folded once whoever asks, a state is only ever used for the history it came from, and whatever is not held is
folded from the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lapor.complaint import IllegalTransition, evolve, fold
from lapor.states import ComplaintStates
from lapor.store import NO_STREAM, EventStore, RecordedEvent, open_store
from schemas.events import (
    ComplaintDisposed,
    ComplaintResolved,
    ComplaintVerified,
    DispositionAccepted,
    DispositionReturned,
)
from tests.event_examples import due, submitted


def lifecycle(tracking_id: str) -> list:
    return [
        submitted(tracking_id=tracking_id),
        ComplaintVerified(classification="pengaduan", category="infrastruktur"),
        ComplaintDisposed(agency_id="pemda-53.71", follow_up_due=due(8), ombudsman_offer_due=due(90)),
        DispositionAccepted(agency_id="pemda-53.71"),
    ]


def record(store: EventStore, tracking_id: str, events: list | None = None) -> list[RecordedEvent]:
    stream = f"complaint-{tracking_id}"
    store.append(stream, [event.to_new_event() for event in events or lifecycle(tracking_id)], NO_STREAM)
    return store.read_stream(stream)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    with open_store(f"sqlite:///{tmp_path / 'events.db'}") as opened:
        yield opened


def test_each_step_is_the_fold_of_the_stream_up_to_the_event(store):
    recorded = record(store, "LAP-A")
    states = ComplaintStates(store)
    for n, event in enumerate(recorded):
        before, after = states.step(event)
        assert before == (fold(recorded[:n]) if n else before)
        assert after == fold(recorded[: n + 1])
    assert (states.folded, states.read_from_store) == (len(recorded), 0)


def test_a_second_projection_gets_the_same_states_without_folding_again(store):
    recorded = record(store, "LAP-B")
    states = ComplaintStates(store)
    first = [states.step(event) for event in recorded]
    second = [states.step(event) for event in recorded]
    assert all(a[1] is b[1] for a, b in zip(first, second, strict=True))
    assert all(a[0] is b[0] for a, b in zip(first[1:], second[1:], strict=True))
    assert (states.folded, states.read_from_store) == (len(recorded), 0)


def test_a_state_nobody_holds_is_folded_from_the_store(store):
    recorded = record(store, "LAP-C")
    states = ComplaintStates(store)
    before, after = states.step(recorded[2])  # a restarted projection, two events in
    assert states.read_from_store == 1
    assert before == fold(recorded[:2])
    assert after == fold(recorded[:3])


def test_the_same_stream_name_with_another_history_is_never_mixed_up(store, tmp_path):
    mine = record(store, "LAP-D")
    states = ComplaintStates(store)
    for event in mine:
        states.step(event)
    # Another store (a test's, a restored backup) with another history under the same stream name.
    other_events = [
        *lifecycle("LAP-D")[:3],
        DispositionReturned(agency_id="pemda-53.71", reason="Bukan wewenang pemkot."),
    ]
    with open_store(f"sqlite:///{tmp_path / 'other.db'}") as other_store:
        theirs = record(other_store, "LAP-D", other_events)
    assert theirs[3].hash != mine[3].hash
    before, after = states.step(theirs[3])
    assert after.status != fold(mine).status
    # Its earlier states are this store's, not the other's: folded from this store's log.
    assert before == fold(mine[:3])
    assert after == evolve(before, theirs[3])


def test_an_evicted_complaint_is_folded_from_the_store_again(store):
    first = record(store, "LAP-E")
    second = record(store, "LAP-F")
    states = ComplaintStates(store, capacity=1)
    states.step(first[0])
    states.step(second[0])  # evicts LAP-E
    assert len(states) == 1
    _, after = states.step(first[1])
    assert states.read_from_store == 1
    assert after == fold(first[:2])


def test_keep_latest_forgets_older_states_but_not_the_newest(store):
    recorded = record(store, "LAP-G")
    states = ComplaintStates(store, history=8)
    for event in recorded:
        states.step(event)
    states.keep_latest()
    states.step(recorded[1])  # its before-state was forgotten
    assert states.read_from_store == 1
    folded = states.folded
    more = store.append(
        "complaint-LAP-G", [ComplaintResolved(resolution="Selesai.", feedback_due=due(30)).to_new_event()], 3
    )
    resolved = store.read_stream("complaint-LAP-G", more.first_version)[0]
    _, after = states.step(resolved)
    assert after == fold(store.read_stream("complaint-LAP-G"))
    assert states.folded == folded + 1
    assert states.read_from_store == 1  # the newest state was still there to evolve from
    states.keep_latest()  # again: what was added since is trimmed too
    assert states.step(resolved)[1] == after
    assert states.read_from_store == 2


def test_an_event_the_lifecycle_refuses_raises_and_is_not_remembered(store):
    refused = [submitted(tracking_id="LAP-H"), DispositionAccepted(agency_id="pemda-53.71")]
    recorded = record(store, "LAP-H", refused)  # the store keeps what it is given; the fold judges it
    states = ComplaintStates(store)
    states.step(recorded[0])
    with pytest.raises(IllegalTransition):
        states.step(recorded[1])
    assert states.folded == 1


def test_remembered_after_gives_a_held_state_and_never_folds(store):
    recorded = record(store, "LAP-R")
    other = record(store, "LAP-S")  # the same versions, another history
    states = ComplaintStates(store)
    assert states.remembered_after(recorded[0]) is None
    for event in recorded[:2]:
        states.step(event)
    assert states.remembered_after(recorded[1]) == fold(recorded[:2])
    assert states.remembered_after(recorded[2]) is None  # not folded yet
    assert states.remembered_after(other[1]) is None
    assert (states.folded, states.read_from_store) == (2, 0)


def interleaved(*streams: list[RecordedEvent]) -> list[RecordedEvent]:
    """The events of several streams in the order a rebuild reads them: by position."""
    return sorted((event for stream in streams for event in stream), key=lambda event: event.position)


def test_prefold_serves_every_event_of_a_batch_without_folding_again(store):
    first, second = record(store, "LAP-P"), record(store, "LAP-Q")
    batch = interleaved(first, second)
    states = ComplaintStates(store)
    states.prefold(batch)
    assert states.folded == len(batch)
    for recorded in (first, second):
        for n, event in enumerate(recorded):
            before, after = states.step(event)
            assert after == fold(recorded[: n + 1])
            if n:
                assert before == fold(recorded[:n])
            assert states.remembered_after(event) is after
    assert (states.folded, states.read_from_store) == (len(batch), 0)
    states.keep_latest()  # the batch is through: its pairs are forgotten, each complaint's newest state is not
    assert states.remembered_after(first[1]) is None
    assert states.remembered_after(first[-1]) == fold(first)


def test_prefold_goes_on_from_the_previous_batch(store):
    recorded = record(store, "LAP-T")
    states = ComplaintStates(store)
    states.prefold(recorded[:2])
    states.keep_latest()
    states.prefold(recorded[2:])
    assert states.step(recorded[3])[1] == fold(recorded)
    assert (states.folded, states.read_from_store) == (len(recorded), 0)


def test_prefold_leaves_a_refused_event_to_raise_in_step(store):
    refused = [
        submitted(tracking_id="LAP-U"),
        DispositionAccepted(agency_id="pemda-53.71"),  # before any disposition: the lifecycle refuses it
        ComplaintVerified(classification="pengaduan", category="infrastruktur"),
    ]
    recorded = record(store, "LAP-U", refused)
    states = ComplaintStates(store)
    states.prefold(recorded)
    assert states.folded == 1  # the submission only
    assert states.step(recorded[0])[1] == fold(recorded[:1])
    with pytest.raises(IllegalTransition):
        states.step(recorded[1])  # the projection's handler fails here and the runner parks the event
    with pytest.raises(IllegalTransition):
        states.step(recorded[2])  # its history holds the refused event: folding it from the store refuses too


def test_prefold_skips_an_event_that_does_not_follow_the_state_held(store, tmp_path):
    mine = record(store, "LAP-V")
    states = ComplaintStates(store)
    states.prefold(mine[:3])
    other_events = [
        *lifecycle("LAP-V")[:3],
        DispositionReturned(agency_id="pemda-53.71", reason="Bukan wewenang pemkot."),
    ]
    with open_store(f"sqlite:///{tmp_path / 'other.db'}") as other_store:
        theirs = record(other_store, "LAP-V", other_events)
    states.prefold([theirs[3]])  # the same version, but its prev_hash is not the held state's hash
    assert states.folded == 3
    assert states.remembered_after(theirs[3]) is None
    assert theirs[2].position == mine[2].position
    assert theirs[2].hash != mine[2].hash
    assert states.remembered_after(theirs[2]) is None  # at a prefolded position, but another history
    states.prefold([mine[3]])
    assert states.step(mine[3])[1] == fold(mine)
