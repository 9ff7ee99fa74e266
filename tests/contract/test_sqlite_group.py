"""The SQLite writer's group path: a whole group checked in memory and written by one INSERT, the fall-back to one
append at a time when an id is already recorded, and the stream heads it remembers between groups.

The leader's calls (`begin`, `apply_all`, `commit`) are made here directly on the store's own writer, so a group
holds exactly the appends a test chooses; what the group decided is then read back through the store.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lapor.audit import verify_chain
from lapor.store import (
    ANY,
    NO_STREAM,
    AppendResult,
    DuplicateEventId,
    NewEvent,
    StoreError,
    WrongExpectedVersion,
    group_commit,
    open_store,
)
from lapor.store.group_commit import PendingAppend
from lapor.store.sqlite import SqliteEventStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteEventStore]:
    opened = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    assert isinstance(opened, SqliteEventStore)
    with opened:
        yield opened


def noted(n: int) -> NewEvent:
    return NewEvent("Noted", {"n": n}, metadata={"actor": "tester"})


def commit_group(store: SqliteEventStore, requests: list[PendingAppend]) -> list[AppendResult | Exception]:
    """One group through the store's writer, as its leader would commit it."""
    group = store._writer._transaction
    group.begin()
    outcomes = group.apply_all(requests)
    group.commit([outcome for outcome in outcomes if isinstance(outcome, AppendResult)])
    return outcomes


def test_a_group_of_appends_to_several_streams_commits_them_all_in_position_order(store):
    streams = [f"complaint-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    before = store.head_position()
    outcomes = commit_group(store, [PendingAppend(stream, [noted(0), noted(1)], NO_STREAM) for stream in streams])
    assert all(isinstance(outcome, AppendResult) for outcome in outcomes)
    recorded = store.read_all(before + 1, limit=100)
    assert [(e.stream, e.version) for e in recorded] == [(s, v) for s in streams for v in (0, 1)]
    assert [e.position for e in recorded] == list(range(before + 1, before + 7))
    assert verify_chain(store).ok


def test_two_appends_to_one_stream_in_a_group_chain_onto_each_other(store):
    stream = "complaint-chained"
    outcomes = commit_group(store, [PendingAppend(stream, [noted(0)], NO_STREAM), PendingAppend(stream, [noted(1)], 0)])
    assert [outcome.last_version for outcome in outcomes] == [0, 1]
    first, second = store.read_stream(stream)
    assert second.prev_hash == first.hash
    assert verify_chain(store).ok


def test_a_stale_expected_version_in_a_group_is_rejected_alone(store):
    stream = "complaint-stale"
    store.append(stream, [noted(0)], NO_STREAM)
    other = "complaint-neighbour"
    outcomes = commit_group(
        store, [PendingAppend(stream, [noted(1)], NO_STREAM), PendingAppend(other, [noted(0)], ANY)]
    )
    assert isinstance(outcomes[0], WrongExpectedVersion)
    assert outcomes[0].actual_version == 0
    assert isinstance(outcomes[1], AppendResult)
    assert len(store.read_stream(stream)) == 1
    assert len(store.read_stream(other)) == 1


def test_the_same_append_twice_in_one_group_is_recorded_once_and_answered_alike(store):
    events = [noted(0), noted(1)]
    stream = "complaint-retried"
    outcomes = commit_group(store, [PendingAppend(stream, events, NO_STREAM), PendingAppend(stream, events, NO_STREAM)])
    assert outcomes[0] == outcomes[1]
    assert [e.event_id for e in store.read_stream(stream)] == [e.event_id for e in events]


def test_an_id_of_another_append_in_the_same_group_is_a_duplicate(store):
    shared = noted(0)
    outcomes = commit_group(
        store,
        [PendingAppend("complaint-one", [shared], NO_STREAM), PendingAppend("complaint-two", [shared], NO_STREAM)],
    )
    assert isinstance(outcomes[0], AppendResult)
    assert isinstance(outcomes[1], DuplicateEventId)
    assert store.read_stream("complaint-two") == []


def test_a_committed_id_sends_the_group_one_append_at_a_time_and_the_rest_still_commits(store):
    # Expected version ANY passes the in-memory check, so the recorded id shows only when the group's INSERT
    # fails: the group is then written again append by append.
    retried = [noted(0)]
    original = store.append("complaint-first", retried, NO_STREAM)
    clash = [retried[0], noted(9)]
    fresh = [noted(1)]
    outcomes = commit_group(
        store,
        [
            PendingAppend("complaint-first", retried, ANY),  # a retry: its original result
            PendingAppend("complaint-elsewhere", clash, ANY),  # a recorded id in another stream: refused
            PendingAppend("complaint-fresh", fresh, NO_STREAM),  # unrelated: committed
        ],
    )
    assert outcomes[0] == original
    assert isinstance(outcomes[1], DuplicateEventId)
    assert isinstance(outcomes[2], AppendResult)
    assert store.read_stream("complaint-elsewhere") == []
    assert [e.event_id for e in store.read_stream("complaint-fresh")] == [fresh[0].event_id]
    assert [e.event_id for e in store.read_stream("complaint-first")] == [retried[0].event_id]
    assert outcomes[2].first_position == original.last_position + 1  # no hole where the refused rows were
    assert verify_chain(store).ok


def test_a_rolled_back_group_leaves_nothing_remembered(store):
    stream = "complaint-rolled-back"
    group = store._writer._transaction
    group.begin()
    group.apply_all([PendingAppend(stream, [noted(0)], NO_STREAM)])
    group.rollback()
    assert store.read_stream(stream) == []
    # Had the writer kept the abandoned head, version 0 would be expected of the stream now.
    result = store.append(stream, [noted(0)], NO_STREAM)
    assert result.first_version == 0
    assert result.first_position == store.head_position()


def test_commits_through_another_connection_are_seen_by_the_next_group(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    stream = "complaint-shared"
    with open_store(url) as first, open_store(url) as second:
        first.append(stream, [noted(0)], NO_STREAM)
        second.append(stream, [noted(1)], 0)  # behind the first store's back
        with pytest.raises(WrongExpectedVersion) as stale:
            first.append(stream, [noted(2)], 0)
        assert stale.value.actual_version == 1
        result = first.append(stream, [noted(2)], 1)
        assert (result.last_version, result.last_position) == (2, 3)
        assert [e.version for e in second.read_stream(stream)] == [0, 1, 2]
        assert verify_chain(first).ok


def _lock_is_free(path: Path) -> bool:
    """Whether another process could take the writers' lock beside `path` right now."""
    fd = os.open(f"{path}-writer.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing also drops the lock if we took it
    return True


def test_an_append_holds_the_writers_lock_while_it_is_written_and_gives_it_up_before_its_caller_goes_on(
    store, monkeypatch
):
    group, writer = store._writer._transaction, store._writer
    seen: dict[str, bool] = {}
    real_commit, real_on_commit = group.commit, writer._on_commit

    def commit(results: list[AppendResult]) -> None:
        seen["free while written"] = _lock_is_free(store.path)
        real_commit(results)

    def on_commit(position: int) -> None:  # after the group's callers are answered
        seen["free once answered"] = _lock_is_free(store.path)
        real_on_commit(position)

    monkeypatch.setattr(group, "commit", commit)
    monkeypatch.setattr(writer, "_on_commit", on_commit)
    store.append("complaint-locked", [noted(0)], NO_STREAM)
    assert seen == {"free while written": False, "free once answered": True}


def test_a_group_that_fails_to_commit_gives_the_writers_lock_up(store, monkeypatch):
    group = store._writer._transaction

    def refuse(results: list[AppendResult]) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(group, "commit", refuse)
    with pytest.raises(StoreError, match="commit failed: disk I/O error"):
        store.append("complaint-refused", [noted(0)], NO_STREAM)
    assert _lock_is_free(store.path)
    monkeypatch.undo()
    assert store.read_stream("complaint-refused") == []
    assert store.append("complaint-refused", [noted(0)], NO_STREAM).last_version == 0


def test_an_append_that_cannot_take_the_writers_lock_fails_alone(store, monkeypatch):
    group = store._writer._transaction
    real_acquire = group.acquire
    attempts = []

    def acquire_once_failing() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("lock file unreachable")
        real_acquire()

    monkeypatch.setattr(group, "acquire", acquire_once_failing)
    with pytest.raises(OSError, match="lock file unreachable"):
        store.append("complaint-unlucky", [noted(0)], NO_STREAM)
    assert store.read_stream("complaint-unlucky") == []
    assert store.append("complaint-unlucky", [noted(0)], NO_STREAM).last_version == 0  # the writer is not stuck
    assert _lock_is_free(store.path)


def test_an_append_rejected_in_a_group_is_answered_only_once_the_group_committed(store, monkeypatch):
    """A caller told that its expected version is stale reads the stream again at once, and must find there the
    append of its own group that made it stale. Session 30: the rejection was answered before the group's COMMIT;
    a followup action that lost to a return in the same group read the report as it was before the return, and was
    answered as if the report were still the caller's agency's."""
    stream = f"complaint-{uuid.uuid4().hex[:8]}"
    store.append(stream, [noted(0)], NO_STREAM)
    winner, loser = PendingAppend(stream, [noted(1)], 0), PendingAppend(stream, [noted(2)], 0)
    group = store._writer._transaction
    answered_before_commit: list[bool] = []
    commit = group.commit

    def committing(results: list[AppendResult]) -> None:
        answered_before_commit.append(loser.decided)
        commit(results)

    monkeypatch.setattr(group, "commit", committing)
    group_commit.commit_group(group, [winner, loser])
    assert answered_before_commit == [False]
    with pytest.raises(WrongExpectedVersion):
        loser.outcome()
    assert [event.data for event in store.read_stream(stream)] == [{"n": 0}, {"n": 1}]
