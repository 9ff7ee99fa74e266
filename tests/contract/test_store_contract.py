"""The event store contract: every adapter passes the same tests (backends: see tests/conftest.py).

Tests name their streams uniquely and read from the head they found, so they also hold on a store shared by
the whole session (KurrentDB); positions are compared by order, never by value, since they are opaque.
"""

from __future__ import annotations

import itertools
import os
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from lapor.clock import ManualClock
from lapor.store import (
    ANY,
    EXISTS,
    GENESIS_HASH,
    NO_STREAM,
    DuplicateEventId,
    EventStore,
    NewEvent,
    RecordedEvent,
    StoreError,
    StreamShare,
    WrongExpectedVersion,
    open_store,
)
from lapor.store.model import SHARE_BUCKETS, stream_bucket
from lapor.store.vault import VaultEntryErased

from ._workers import Acknowledged, append_in_process, append_with_retries, processes_starting_together

# Microseconds on purpose: recorded_at must survive the round trip exactly, or the hash chain breaks.
START = datetime(2024, 3, 11, 2, 30, 15, 123456, tzinfo=UTC)
# Generous guard against a hung subscriber; not a timing assertion.
SUBSCRIBER_GUARD_SECONDS = 120


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def store(store_url: str, clock: ManualClock) -> Iterator[EventStore]:
    with open_store(store_url, clock=clock) as opened:
        yield opened


def unique_stream(category: str = "complaint") -> str:
    return f"{category}-{uuid.uuid4().hex[:12]}"


def unique_category() -> str:
    return f"cat{uuid.uuid4().hex[:10]}"


def noted(n: int) -> NewEvent:
    return NewEvent("Noted", {"n": n}, metadata={"actor": "tester", "role": "operator"})


def read_everything_after(store: EventStore, head: int) -> list[RecordedEvent]:
    events: list[RecordedEvent] = []
    while batch := store.read_all(from_position=(events[-1].position if events else head) + 1, limit=500):
        events.extend(batch)
    return events


# -- expected versions ------------------------------------------------------------------------------------


def test_no_stream_starts_a_new_stream_at_version_zero(store):
    stream = unique_stream()
    result = store.append(stream, [noted(0), noted(1)], expected_version=NO_STREAM)
    assert (result.first_version, result.last_version) == (0, 1)
    assert [e.version for e in store.read_stream(stream)] == [0, 1]


def test_no_stream_on_an_existing_stream_conflicts_with_its_actual_version(store):
    stream = unique_stream()
    store.append(stream, [noted(0), noted(1)], expected_version=NO_STREAM)
    with pytest.raises(WrongExpectedVersion) as conflict:
        store.append(stream, [noted(2)], expected_version=NO_STREAM)
    assert conflict.value.actual_version == 1
    assert store.stream_version(stream) == 1


def test_exists_on_a_missing_stream_conflicts_with_no_stream(store):
    stream = unique_stream()
    with pytest.raises(WrongExpectedVersion) as conflict:
        store.append(stream, [noted(0)], expected_version=EXISTS)
    assert conflict.value.actual_version == -1
    assert store.read_stream(stream) == []


def test_exists_on_an_existing_stream_appends(store):
    stream = unique_stream()
    store.append(stream, [noted(0)], expected_version=NO_STREAM)
    assert store.append(stream, [noted(1)], expected_version=EXISTS).last_version == 1


def test_exact_version_appends_when_it_is_the_current_one(store):
    stream = unique_stream()
    first = store.append(stream, [noted(0)], expected_version=NO_STREAM)
    second = store.append(stream, [noted(1), noted(2)], expected_version=first.last_version)
    assert (second.first_version, second.last_version) == (1, 2)


def test_stale_exact_version_conflicts_with_the_actual_version_and_writes_nothing(store):
    stream = unique_stream()
    store.append(stream, [noted(0), noted(1), noted(2)], expected_version=NO_STREAM)
    with pytest.raises(WrongExpectedVersion) as conflict:
        store.append(stream, [noted(3)], expected_version=0)
    assert (conflict.value.stream, conflict.value.expected_version, conflict.value.actual_version) == (stream, 0, 2)
    assert len(store.read_stream(stream)) == 3


def test_exact_version_on_a_missing_stream_conflicts(store):
    with pytest.raises(WrongExpectedVersion) as conflict:
        store.append(unique_stream(), [noted(0)], expected_version=3)
    assert conflict.value.actual_version == -1


def test_any_appends_to_a_new_and_to_an_existing_stream(store):
    stream = unique_stream()
    assert store.append(stream, [noted(0)], expected_version=ANY).last_version == 0
    assert store.append(stream, [noted(1)], expected_version=ANY).last_version == 1


# -- idempotency and atomicity ----------------------------------------------------------------------------


def test_reappending_the_same_events_returns_the_original_result_and_adds_nothing(store):
    stream = unique_stream()
    events = [noted(0), noted(1)]
    original = store.append(stream, events, expected_version=NO_STREAM)
    store.append(stream, [noted(2)], expected_version=original.last_version)
    # A retry after a lost acknowledgement carries the same ids and the now stale expected version.
    assert store.append(stream, events, expected_version=NO_STREAM) == original
    assert [e.data["n"] for e in store.read_stream(stream)] == [0, 1, 2]


def test_partially_recorded_events_are_a_duplicate_and_add_nothing(store):
    stream = unique_stream()
    a, b, c = noted(0), noted(1), noted(2)
    store.append(stream, [a, b], expected_version=NO_STREAM)
    for overlapping in ([b, c], [a, c], [a, b, c]):
        with pytest.raises(DuplicateEventId):
            store.append(stream, overlapping)
    assert [e.event_id for e in store.read_stream(stream)] == [a.event_id, b.event_id]


def test_recorded_events_appended_to_another_stream_are_a_duplicate(store, store_url):
    if store_url.startswith("kurrentdb"):
        pytest.skip("KurrentDB keeps no index by event id: it detects a duplicate within its stream only")
    event = noted(0)
    store.append(unique_stream(), [event])
    other = unique_stream()
    with pytest.raises(DuplicateEventId):
        store.append(other, [event])
    assert store.stream_version(other) == -1


def test_the_same_event_id_twice_in_one_append_is_refused(store):
    event = noted(0)
    with pytest.raises(DuplicateEventId):
        store.append(unique_stream(), [event, event])


def test_an_append_that_fails_writes_none_of_its_events(store):
    stream = unique_stream()
    recorded = noted(0)
    store.append(stream, [recorded], expected_version=NO_STREAM)
    head = store.head_position()
    with pytest.raises(DuplicateEventId):  # its third event is already recorded
        store.append(stream, [noted(1), noted(2), recorded], expected_version=0)
    assert [e.event_id for e in store.read_stream(stream)] == [recorded.event_id]
    assert store.head_position() == head
    assert store.append(stream, [noted(3)], expected_version=0).first_version == 1


def test_an_event_that_is_not_json_is_refused_alone_and_its_neighbours_commit(store):
    stream, neighbour = unique_stream(), unique_stream()
    with ThreadPoolExecutor(8) as pool:
        neighbours = [pool.submit(store.append, f"{neighbour}{n}", [noted(n)], NO_STREAM) for n in range(7)]
        with pytest.raises(ValueError, match="not JSON"):
            store.append(stream, [noted(0), NewEvent("Noted", {"tags": {"a", "b"}})], NO_STREAM)
        assert all(done.result().last_version == 0 for done in neighbours)
    assert store.read_stream(stream) == []


@pytest.mark.parametrize(
    ("expected", "event"),
    [
        (None, NewEvent("Noted", {})),
        ("0", NewEvent("Noted", {})),
        (True, NewEvent("Noted", {})),
        (1.5, NewEvent("Noted", {})),
        (ANY, NewEvent("Noted", {}, schema_version=0)),
        (ANY, NewEvent("Noted", {}, schema_version=True)),
        (ANY, NewEvent("Noted", {}, schema_version=2**31)),
        (ANY, NewEvent("Noted", {}, schema_version=2**63)),
        (ANY, NewEvent("", {})),
        (ANY, NewEvent("No\x00ted", {})),
        (ANY, NewEvent("Noted\n", {})),
        (ANY, NewEvent("Noted", {}, event_id=str(uuid.uuid4()))),
    ],
    ids=["expected None", "expected text", "expected a flag", "expected a fraction", "schema version 0",
         "schema version a flag", "schema version past 32 bits", "schema version past 64 bits", "empty type",
         "NUL in the type", "newline in the type", "event id as text"],
)
def test_an_append_no_store_can_record_is_refused_alone_and_its_concurrent_neighbours_commit(store, expected, event):
    """Refused before it reaches a group commit: there it failed the whole group, other callers' appends included."""
    stream, neighbour = unique_stream(), unique_stream()
    together = threading.Barrier(16)

    def append_together(stream: str, new: NewEvent, expected: object):
        together.wait()
        return store.append(stream, [new], expected)

    with ThreadPoolExecutor(16) as pool:
        neighbours = [pool.submit(append_together, f"{neighbour}{n}", noted(n), NO_STREAM) for n in range(15)]
        refused = pool.submit(append_together, stream, event, expected)
        assert [done.result().last_version for done in neighbours] == [0] * 15
        with pytest.raises(ValueError, match=r"^expected_version .* is neither|^event 0: needs"):
            refused.result()
    assert store.read_stream(stream) == []


def test_a_stream_name_without_a_category_is_refused(store):
    with pytest.raises(ValueError, match="category"):
        store.append("nocategory", [noted(0)])


@pytest.mark.parametrize(
    "stream",
    ["complaint-A B", "complaint-A\n", "complaint-A\x00", "complaint-A\x85", "kategori baru-A", "-A",
     "complaint-", "complaint-" + "A" * 200],
    ids=["space", "newline", "NUL", "NEL", "space in the category", "no category", "no id", "too long"],
)
def test_a_stream_name_is_a_category_a_dash_and_an_id_without_spaces(store, stream):
    """What the exported envelope's schema publishes (`STREAM_PATTERN`): a log an auditor validates never holds
    a stream it calls invalid."""
    head = store.head_position()
    with pytest.raises(ValueError, match="must look like"):
        store.append(stream, [noted(0)])
    assert store.head_position() == head


def test_an_append_after_close_is_refused(store_url):
    store = open_store(store_url)
    store.close()
    with pytest.raises(StoreError):
        store.append(unique_stream(), [noted(0)])


# -- reading ----------------------------------------------------------------------------------------------


def test_read_stream_from_a_version_with_a_limit(store):
    stream = unique_stream()
    store.append(stream, [noted(n) for n in range(6)], expected_version=NO_STREAM)
    assert [e.version for e in store.read_stream(stream, from_version=2)] == [2, 3, 4, 5]
    assert [e.version for e in store.read_stream(stream, from_version=1, limit=3)] == [1, 2, 3]
    assert store.read_stream(stream, from_version=6) == []


def test_a_read_past_64_bits_finds_nothing_and_a_limit_past_them_reads_everything(store, store_url):
    stream = unique_stream()
    appended = store.append(stream, [noted(0), noted(1)], expected_version=NO_STREAM)
    assert store.read_stream(stream, from_version=2**63) == []
    assert [e.version for e in store.read_stream(stream, limit=2**63)] == [0, 1]
    assert [e.version for e in store.read_all(appended.first_position, limit=2**64)][-2:] == [0, 1]
    if not store_url.startswith("kurrentdb"):  # it reads $all from recorded positions only
        assert store.read_all(2**63) == []


def test_a_negative_limit_is_refused(store):
    stream = unique_stream()
    store.append(stream, [noted(0)], expected_version=NO_STREAM)
    with pytest.raises(ValueError, match="limit is 0 or more"):
        store.read_stream(stream, limit=-1)
    with pytest.raises(ValueError, match="limit is 0 or more"):
        store.read_all(limit=-1)


def test_a_missing_stream_reads_empty_at_version_minus_one(store):
    stream = unique_stream()
    assert store.read_stream(stream) == []
    assert store.stream_version(stream) == -1


def test_recorded_events_keep_what_was_appended(store, clock):
    stream = unique_stream()
    event = NewEvent(
        "ComplaintSubmitted",
        {
            "judul": "Jalan rusak di Oebobo 🚧",
            "isi": "SMS dengan karakter aneh: \u0000 dan \t",
            "lokasi": {"lat": -10.17, "lon": 123.6},
            "lampiran": [],
            "anonim": False,
            "rating": None,
        },
        metadata={"actor": "pelapor", "correlation_id": "c-1", "causation_id": None},
        schema_version=2,
    )
    result = store.append(stream, [event], expected_version=NO_STREAM)
    [recorded] = store.read_stream(stream)
    assert (recorded.event_id, recorded.stream, recorded.version, recorded.position) == (
        event.event_id,
        stream,
        0,
        result.first_position,
    )
    assert recorded.event_id_text == str(event.event_id)
    assert store.read_all(result.first_position, limit=1)[0].event_id_text == str(event.event_id)  # before decoding
    assert (recorded.type, recorded.schema_version, recorded.data) == (event.type, 2, event.data)
    assert recorded.metadata == event.metadata
    assert recorded.recorded_at == clock.now()
    assert recorded.category == "complaint"


def test_read_all_returns_events_in_commit_order_from_a_position(store):
    head = store.head_position()
    streams = [unique_stream() for _ in range(3)]
    appended = []
    for round_ in range(3):
        for stream in streams:
            result = store.append(stream, [noted(round_)])
            appended.append((stream, result.last_version))
    events = store.read_all(from_position=head + 1)
    assert [(e.stream, e.version) for e in events] == appended
    positions = [e.position for e in events]
    assert all(a < b for a, b in itertools.pairwise(positions))
    assert [e.position for e in store.read_all(from_position=positions[4])] == positions[4:]


def test_read_all_stops_at_its_limit(store):
    head = store.head_position()
    store.append(unique_stream(), [noted(n) for n in range(7)])
    first = store.read_all(from_position=head + 1, limit=3)
    rest = store.read_all(from_position=first[-1].position + 1, limit=100)
    assert [e.data["n"] for e in first] == [0, 1, 2]
    assert [e.data["n"] for e in rest] == [3, 4, 5, 6]


def test_read_all_filters_by_category(store):
    head = store.head_position()
    wanted, other = unique_category(), unique_category()
    a, b = unique_stream(wanted), unique_stream(wanted)
    store.append(a, [noted(0)])
    store.append(unique_stream(other), [noted(1)])
    store.append(b, [noted(2), noted(3)])
    events = store.read_all(from_position=head + 1, category=wanted)
    assert [(e.stream, e.version) for e in events] == [(a, 0), (b, 0), (b, 1)]
    assert {e.category for e in events} == {wanted}
    later = store.read_all(from_position=events[1].position + 1, category=wanted, limit=1)
    assert [(e.stream, e.version) for e in later] == [(b, 1)]


def test_read_all_in_shares_splits_a_categorys_streams_and_gives_every_share_the_other_events(store):
    head = store.head_position()
    shared, other = unique_category(), unique_category()
    shares = StreamShare.split([1, 1, 1], shared)
    # 40 streams at random, and one in the first and one in the last bucket of every share: a share that takes a
    # bucket too many or too few at its edges is caught.
    edges = {bucket for share in shares for bucket in (share.start, share.stop - 1)}
    streams = [unique_stream(shared) for _ in range(40)] + [
        next(name for n in itertools.count() if stream_bucket(name := f"{shared}-edge{n}") == bucket)
        for bucket in sorted(edges)
    ]
    directory = unique_stream(other)
    for n, stream in enumerate(streams):
        store.append(stream, [noted(n), noted(n)])
        if n % 8 == 0:
            store.append(directory, [noted(n)])
    everything = read_everything_after(store, head)
    in_category = [e.position for e in everything if e.category == shared]
    of_other = [e.position for e in everything if e.category == other]

    found: list[list[RecordedEvent]] = []
    for share in shares:
        events: list[RecordedEvent] = []
        while page := store.read_all((events[-1].position if events else head) + 1, limit=4, share=share):
            events += page
            if len(page) < 4:
                assert not store.read_all(events[-1].position + 1, limit=4, share=share)  # short only at the end
        assert [e.position for e in events if e.category == other] == of_other
        mine = [e for e in events if e.category == shared]
        assert mine, f"{share} holds none of the streams"
        # The store and Python pick the same streams, so a stream is never split between the shares.
        assert all(share.holds(e.stream) for e in mine)
        assert [e.position for e in mine] == sorted(e.position for e in mine)
        assert store.read_all(head + 1, category=shared, limit=1000, share=share) == mine
        found.append(mine)

    assert sorted(e.position for events in found for e in events) == in_category  # disjoint, and all of them


@pytest.mark.parametrize("weights", [[1], [1, 1], [0.75, 1], [3, 1, 1, 1, 1], [1] * 1024])
def test_shares_split_every_bucket_in_proportion_to_their_weights(weights):
    shares = StreamShare.split(weights)
    assert [share.start for share in shares] == [0, *(share.stop for share in shares[:-1])]  # no gap, no overlap
    assert shares[-1].stop == SHARE_BUCKETS
    expected = [SHARE_BUCKETS * weight / sum(weights) for weight in weights]
    sizes = [share.stop - share.start for share in shares]
    assert all(abs(size - due) <= 1 for size, due in zip(sizes, expected, strict=True))
    assert [share.first for share in shares] == [True] + [False] * (len(shares) - 1)


@pytest.mark.parametrize(("start", "stop"), [(-1, 10), (10, 10), (0, SHARE_BUCKETS + 1)])
def test_a_share_outside_the_buckets_is_refused(start, stop):
    with pytest.raises(ValueError, match="range of the buckets"):
        StreamShare(start, stop)


def test_head_position_is_the_last_committed_position(store):
    result = store.append(unique_stream(), [noted(0), noted(1)])
    assert store.head_position() == result.last_position
    later = store.append(unique_stream(), [noted(2)])
    assert store.head_position() == later.last_position > result.last_position


def test_an_empty_store_has_head_position_zero(store_url):
    if store_url.startswith("kurrentdb"):
        pytest.skip("the KurrentDB container is shared by the session, so it is not empty")
    with open_store(store_url) as store:
        assert store.head_position() == 0
        assert store.read_all() == []


def test_a_reopened_store_continues_streams_positions_and_chains(store_url, clock):
    stream = unique_stream()
    with open_store(store_url, clock=clock) as store:
        first = store.append(stream, [noted(0)], expected_version=NO_STREAM)
    clock.advance(timedelta(minutes=5))
    with open_store(store_url, clock=clock) as store:
        second = store.append(stream, [noted(1)], expected_version=0)
        events = store.read_stream(stream)
    assert second.first_position > first.last_position
    assert events[1].prev_hash == events[0].hash
    assert all(e.expected_hash() == e.hash for e in events)


# -- the hash chain ---------------------------------------------------------------------------------------


def test_each_stream_is_a_hash_chain_from_genesis(store, clock):
    stream, neighbour = unique_stream(), unique_stream()
    store.append(stream, [noted(0), noted(1)], expected_version=NO_STREAM)
    store.append(neighbour, [noted(9)])
    clock.advance(timedelta(hours=1, microseconds=7))
    store.append(stream, [noted(2)], expected_version=1)
    events = store.read_stream(stream)
    assert events[0].prev_hash == GENESIS_HASH
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
    assert all(e.expected_hash() == e.hash for e in events)
    assert store.read_stream(neighbour)[0].prev_hash == GENESIS_HASH


def test_changed_content_no_longer_matches_its_hash(store):
    stream = unique_stream()
    store.append(stream, [noted(0)])
    [event] = store.read_stream(stream)
    event.data = {"n": 1}
    assert event.expected_hash() != event.hash


# -- waking readers ---------------------------------------------------------------------------------------


def test_wait_for_events_times_out_when_nothing_is_appended(store):
    store.append(unique_stream(), [noted(0)])
    assert store.wait_for_events(store.head_position(), timeout=0.05) is False


def test_wait_for_events_returns_at_once_when_events_are_already_there(store):
    result = store.append(unique_stream(), [noted(0)])
    assert store.wait_for_events(result.last_position - 1, timeout=0) is True


def test_wait_for_events_wakes_on_an_append(store):
    head = store.head_position()
    writer = threading.Timer(0.05, store.append, args=(unique_stream(), [noted(0)]))
    writer.start()
    try:
        assert store.wait_for_events(head, timeout=60) is True
    finally:
        writer.join()
    assert store.head_position() > head


def test_wait_for_events_wakes_on_an_append_made_through_another_store(store, store_url):
    head = store.head_position()
    with open_store(store_url) as other:
        writer = threading.Timer(0.05, other.append, args=(unique_stream(), [noted(0)]))
        writer.start()
        try:
            assert store.wait_for_events(head, timeout=60) is True
        finally:
            writer.join()


# -- concurrency ------------------------------------------------------------------------------------------


def assert_log_consistent(store: EventStore, head: int, acknowledged: list[Acknowledged]) -> None:
    """Every acknowledged event is present exactly once, where it was acknowledged; positions strictly increase;
    every stream's versions are gapless."""
    events = read_everything_after(store, head)
    assert Counter(str(e.event_id) for e in events).most_common(1)[0][1] == 1
    assert sorted((str(e.event_id), e.stream, e.version, e.position) for e in events) == sorted(acknowledged)
    positions = [e.position for e in events]
    assert all(a < b for a, b in itertools.pairwise(positions))
    versions: dict[str, list[int]] = {}
    for event in events:
        versions.setdefault(event.stream, []).append(event.version)
    for stream, seen in versions.items():
        assert seen == list(range(len(seen))), stream


def test_concurrent_writer_threads_lose_duplicate_and_skip_nothing(store):
    head = store.head_position()
    category = unique_category()
    shared = [unique_stream(category) for _ in range(4)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        runs = [
            pool.submit(append_with_retries, store, f"t{n}", 50, shared, unique_stream(category)) for n in range(16)
        ]
        acknowledged = [ack for run in runs for ack in run.result()]
    assert len(acknowledged) == 16 * 50
    assert_log_consistent(store, head, acknowledged)


def test_concurrent_writer_processes_lose_duplicate_and_skip_nothing(store_url):
    """Each process opens the store itself, before anyone else has: this also covers concurrent first-time
    setup of a fresh database."""
    category = unique_category()
    shared = [unique_stream(category) for _ in range(3)]
    with open_store(store_url) as store:
        head = store.head_position()
    with processes_starting_together(4) as pool:
        runs = pool.starmap(
            append_in_process, [(store_url, f"p{n}", 40, shared, unique_stream(category)) for n in range(4)]
        )
    acknowledged = [ack for run in runs for ack in run]
    assert len(acknowledged) == 4 * 40
    with open_store(store_url) as store:
        assert_log_consistent(store, head, acknowledged)


def test_a_subscriber_sees_every_event_once_in_order_while_writers_commit(store, store_url):
    """Writers in other processes commit through their own connections, so commits race each other; a
    subscriber that checkpoints by position must still never skip one that commits late."""
    head = store.head_position()
    category = unique_category()
    shared = [unique_stream(category) for _ in range(2)]
    seen: list[RecordedEvent] = []
    writers_done = threading.Event()
    guard = threading.Event()

    def subscribe() -> None:
        last = head
        while not guard.is_set():
            batch = store.read_all(from_position=last + 1, limit=37)
            seen.extend(batch)
            if batch:
                last = batch[-1].position
            elif writers_done.is_set() and last >= store.head_position():
                return
            else:
                store.wait_for_events(last, timeout=0.5)

    subscriber = threading.Thread(target=subscribe)
    subscriber.start()
    try:
        with processes_starting_together(3) as processes, ThreadPoolExecutor(4) as threads:
            processes.apply(int)  # a task runs only once all three have started: then the threads start too
            in_processes = processes.starmap_async(
                append_in_process, [(store_url, f"p{n}", 30, shared, unique_stream(category)) for n in range(3)]
            )
            in_threads = [
                threads.submit(append_with_retries, store, f"t{n}", 30, shared, unique_stream(category))
                for n in range(4)
            ]
            acknowledged = [ack for run in in_threads for ack in run.result()]
            acknowledged += [ack for run in in_processes.get() for ack in run]
        writers_done.set()
        subscriber.join(SUBSCRIBER_GUARD_SECONDS)
    finally:
        guard.set()
        subscriber.join()
    assert len(acknowledged) == 7 * 30
    assert [e.position for e in seen] == [e.position for e in read_everything_after(store, head)]
    assert sorted(str(e.event_id) for e in seen) == sorted(ack[0] for ack in acknowledged)


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts this process's open files in /proc")
def test_threads_that_come_and_go_leave_no_connections_open(store):
    """A web server's worker threads end when idle and new ones start: what each opened must not pile up."""
    stream = unique_stream()

    def read_and_append() -> None:
        store.read_stream(stream)
        store.read_all(limit=1)
        store.append(stream, [noted(0)])

    def in_a_thread_of_its_own() -> None:
        thread = threading.Thread(target=read_and_append)
        thread.start()
        thread.join()

    in_a_thread_of_its_own()
    before = open_files()
    for _ in range(100):
        in_a_thread_of_its_own()
    assert open_files() - before < 20
    assert len(store.read_stream(stream)) == 101


# -- the PII vault ----------------------------------------------------------------------------------------


def test_the_vault_returns_what_was_put(store):
    identity = {"nama": "Maria Ndun", "telepon": "081234567890", "nik": "5371010101900001"}
    ref = store.vault.put(identity)
    assert store.vault.get(ref) == identity
    assert store.vault.get("pii_never_issued") is None


def test_putting_under_a_known_reference_keeps_the_first_value(store):
    ref = store.vault.put({"nama": "Maria"}, ref="pii_retried-command")
    assert ref == "pii_retried-command"
    store.vault.put({"nama": "someone else"}, ref=ref)
    assert store.vault.get(ref) == {"nama": "Maria"}


def test_an_erased_identity_is_gone_but_the_history_stays(store):
    ref = store.vault.put({"nama": "Maria Ndun", "email": "maria@example.id"})
    stream = unique_stream()
    store.append(stream, [NewEvent("ComplaintSubmitted", {"reporter_ref": ref})], expected_version=NO_STREAM)
    assert store.vault.erase(ref) is True
    with pytest.raises(VaultEntryErased):
        store.vault.get(ref)
    assert store.vault.erase(ref) is False
    [event] = store.read_stream(stream)
    assert event.data == {"reporter_ref": ref}
    assert event.expected_hash() == event.hash


def test_erasing_an_unknown_reference_erases_nothing(store):
    assert store.vault.erase("pii_never_issued") is False
    assert store.vault.get("pii_never_issued") is None
