"""The command runner: optimistic concurrency, If-Match, retries, and who-did-it metadata on every event."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest

from lapor.commands import parse_if_match, run_command
from lapor.complaint import ComplaintState, Status
from lapor.context import ServiceContext
from lapor.correlation import correlation_scope
from lapor.principal import NATIONAL_ADMIN_AGENCY, Principal, Role
from lapor.problems import BadRequest, Conflict, NotFound, PreconditionFailed
from lapor.settings import Settings
from lapor.store import ANY, NewEvent, StoreError
from tests.platform.probe import submitted_event

ADMIN = Principal("rina", Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
STREAM = "complaint-LAP-0001"


@pytest.fixture
def ctx(settings: Settings) -> Iterator[ServiceContext]:
    context = ServiceContext.open(settings)
    yield context
    context.close()


def note(text: str) -> NewEvent:
    return NewEvent(type="NoteTaken", data={"text": text})


def count_notes(events) -> int:
    """A fold for a stream of notes: how many there are."""
    return len(events)


def test_a_command_appends_what_the_decision_returns_and_reports_the_new_version(ctx):
    result = run_command(ctx, STREAM, lambda n, now: [note("a"), note("b")], principal=ADMIN,
                         fold=count_notes, must_exist=False)
    assert (result.version, result.etag) == (1, '"1"')
    assert [e.data["text"] for e in ctx.store.read_stream(STREAM)] == ["a", "b"]


def test_the_decision_sees_the_folded_state_and_the_clock(ctx):
    seen: list[tuple[int, datetime]] = []

    def decide(count: int, now: datetime) -> list[NewEvent]:
        seen.append((count, now))
        return [note("x")]

    run_command(ctx, STREAM, decide, principal=ADMIN, fold=count_notes, must_exist=False)
    run_command(ctx, STREAM, decide, principal=ADMIN, fold=count_notes)
    assert [count for count, _ in seen] == [0, 1]
    assert all(now.tzinfo is not None for _, now in seen)


def test_every_event_records_actor_role_agency_and_correlation(ctx):
    officer = Principal("budi", Role.unit_officer, agency_id="pemda-53.71", unit_id="pemda-53.71/dinkes")
    with correlation_scope("req-42"):
        run_command(ctx, STREAM, lambda n, now: [note("a")], principal=officer, fold=count_notes,
                    must_exist=False)
    run_command(ctx, STREAM, lambda n, now: [note("b")], principal=officer, fold=count_notes,
                causation_id="evt-7")
    first, second = ctx.store.read_stream(STREAM)
    assert first.metadata == {
        "actor": "budi", "role": "unit_officer", "agency": "pemda-53.71", "unit": "pemda-53.71/dinkes",
        "correlation_id": "req-42", "causation_id": "req-42",
    }
    assert second.metadata["causation_id"] == "evt-7"
    assert second.metadata["correlation_id"] != "req-42"  # outside a request: a fresh one


def test_a_decision_cannot_forge_the_actor(ctx):
    forged = NewEvent(type="NoteTaken", data={}, metadata={"actor": "someone-else", "source": "kept"})
    run_command(ctx, STREAM, lambda n, now: [forged], principal=ADMIN, fold=count_notes, must_exist=False)
    [event] = ctx.store.read_stream(STREAM)
    assert event.metadata["actor"] == "rina"
    assert event.metadata["source"] == "kept"


def test_a_stale_if_match_writes_nothing_and_names_the_current_version(ctx):
    run_command(ctx, STREAM, lambda n, now: [note("a")], principal=ADMIN, fold=count_notes, must_exist=False)
    with pytest.raises(PreconditionFailed) as refused:
        run_command(ctx, STREAM, lambda n, now: [note("late")], principal=ADMIN, fold=count_notes, if_match=3)
    assert refused.value.extra["current_version"] == 0
    assert len(ctx.store.read_stream(STREAM)) == 1


def test_without_if_match_a_concurrent_write_is_decided_again_on_the_new_state(ctx):
    run_command(ctx, STREAM, lambda n, now: [note("first")], principal=ADMIN, fold=count_notes,
                must_exist=False)
    seen: list[int] = []

    def decide(count: int, now: datetime) -> list[NewEvent]:
        seen.append(count)
        if len(seen) == 1:  # another officer writes between our read and our append
            ctx.store.append(STREAM, [note("theirs")], expected_version=0)
        return [note(f"ours after {count}")]

    result = run_command(ctx, STREAM, decide, principal=ADMIN, fold=count_notes)
    assert seen == [1, 2]
    assert result.version == 2
    assert [e.data["text"] for e in ctx.store.read_stream(STREAM)] == ["first", "theirs", "ours after 2"]


def test_with_if_match_a_concurrent_write_is_a_precondition_failure(ctx):
    run_command(ctx, STREAM, lambda n, now: [note("first")], principal=ADMIN, fold=count_notes,
                must_exist=False)

    def decide(count: int, now: datetime) -> list[NewEvent]:
        ctx.store.append(STREAM, [note("theirs")], expected_version=0)
        return [note("ours")]

    with pytest.raises(PreconditionFailed) as refused:
        run_command(ctx, STREAM, decide, principal=ADMIN, fold=count_notes, if_match=0)
    assert refused.value.extra["current_version"] == 1
    assert [e.data["text"] for e in ctx.store.read_stream(STREAM)] == ["first", "theirs"]


def test_a_stream_that_never_settles_ends_in_a_conflict(ctx):
    run_command(ctx, STREAM, lambda n, now: [note("first")], principal=ADMIN, fold=count_notes,
                must_exist=False)

    def decide(count: int, now: datetime) -> list[NewEvent]:
        ctx.store.append(STREAM, [note("theirs")], expected_version=count - 1)
        return [note("ours")]

    with pytest.raises(Conflict):
        run_command(ctx, STREAM, decide, principal=ADMIN, fold=count_notes, max_attempts=3)
    assert all(e.data["text"] != "ours" for e in ctx.store.read_stream(STREAM))


class UnknownOutcomeOnce:
    """The store, but its first append raises the error a store gives when it cannot tell whether the append was
    recorded (PostgreSQL's connection lost during COMMIT, the writer process gone before it answered), after
    recording it or not."""

    def __init__(self, store, *, recorded: bool) -> None:
        self._store = store
        self._recorded = recorded
        self.failed = False

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    def append(self, stream, events, expected_version=ANY):
        if self.failed:
            return self._store.append(stream, events, expected_version)
        self.failed = True
        if self._recorded:
            self._store.append(stream, events, expected_version)
        raise StoreError("the store went away before answering; the append may or may not be recorded")


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "not-recorded"])
@pytest.mark.parametrize("if_match", [None, 0], ids=["without-if-match", "with-if-match"])
def test_an_append_of_unknown_outcome_is_recorded_exactly_once(ctx, recorded, if_match):
    run_command(ctx, STREAM, lambda n, now: [note("first")], principal=ADMIN, fold=count_notes, must_exist=False)
    ctx.store = UnknownOutcomeOnce(ctx.store, recorded=recorded)
    result = run_command(ctx, STREAM, lambda n, now: [note("follow-up")], principal=ADMIN, fold=count_notes,
                         if_match=if_match)
    assert ctx.store.failed
    events = ctx.store.read_stream(STREAM)
    assert [e.data["text"] for e in events] == ["first", "follow-up"]
    assert (result.version, result.events[0].event_id) == (1, events[1].event_id)


def test_nothing_decided_means_nothing_written(ctx):
    run_command(ctx, STREAM, lambda n, now: [note("a")], principal=ADMIN, fold=count_notes, must_exist=False)
    result = run_command(ctx, STREAM, lambda n, now: [], principal=ADMIN, fold=count_notes)
    assert (result.version, result.appended) == (0, None)
    assert len(ctx.store.read_stream(STREAM)) == 1


def test_acting_on_a_complaint_that_does_not_exist_is_not_found(ctx):
    with pytest.raises(NotFound, match="complaint LAP-0001 not found"):
        run_command(ctx, STREAM, lambda n, now: [note("a")], principal=ADMIN, fold=count_notes)
    assert ctx.store.read_stream(STREAM) == []


def test_the_complaint_fold_is_the_default(ctx):
    token = "t" * 43
    run_command(
        ctx, STREAM,
        lambda state, now: [submitted_event("LAP-0001", "Air PDAM mati", "Tiga hari tanpa air.", "53.71",
                                            token, now)],
        principal=ADMIN, must_exist=False,
    )
    states: list[ComplaintState] = []
    run_command(ctx, STREAM, lambda state, now: states.append(state) or [], principal=ADMIN)
    assert states[0].status is Status.submitted
    assert states[0].tracking_id == "LAP-0001"


def test_appends_are_counted_by_event_type(ctx):
    run_command(ctx, STREAM, lambda n, now: [note("a"), note("b")], principal=ADMIN, fold=count_notes,
                must_exist=False)
    assert ctx.metrics.registry.get_sample_value("lapor_events_appended_total", {"type": "NoteTaken"}) == 2


@pytest.mark.parametrize(("header", "version"), [(None, None), ("*", None), ("3", 3), ('"12"', 12)])
def test_if_match_accepts_a_bare_or_quoted_version(header, version):
    assert parse_if_match(header) == version


@pytest.mark.parametrize(
    "header", ['W/"3"', "abc", '"-1"', "", '"\u00b2"', "\u0661\u0662", "\u00b9", "9" * 20, '"' + "9" * 4301 + '"']
)
def test_if_match_refuses_anything_else(header):
    with pytest.raises(BadRequest):
        parse_if_match(header)
