"""`lapor parked list` and `lapor parked replay`: an operator sees the events a subscription parked and, once the
cause is fixed, runs them through the handler again, never beside a server running that subscription. In-process
CLI runs (`lapor.cli.main` with a service of its own) on a real SQLite store and read models."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import APIRouter

from lapor.cli import main as cli_main
from lapor.context import ServiceContext, ServiceDefinition
from lapor.db import Tx
from lapor.settings import load_settings
from lapor.store import NewEvent, RecordedEvent, open_store
from lapor.subscriptions import Subscription, SubscriptionRunner
from tests.test_subscriptions import make_unreadable

NOTES = "CREATE TABLE IF NOT EXISTS notes (position BIGINT PRIMARY KEY, times INTEGER NOT NULL)"


def note_unless_broken(broken: Path):
    """A handler whose cause of failure is outside the event (a file standing for a missing reference table): it
    refuses every event while `broken` exists, and records each event it handles, counting repeats."""

    def handle(event: RecordedEvent, tx: Tx) -> None:
        if broken.exists():
            raise ValueError("the reference table is missing")
        tx.execute("INSERT INTO notes (position, times) VALUES (?, 1) ON CONFLICT (position) DO UPDATE SET "
                   "times = notes.times + 1", (event.position,))

    return handle


@pytest.fixture
def parked(tmp_path: Path) -> tuple[Path, Path, ServiceDefinition]:
    """A data directory where subscription `notes` has parked the three events it was given, and the service
    that defines it."""
    data, broken = tmp_path / "var", tmp_path / "broken"
    broken.touch()
    subscription = Subscription("notes", note_unless_broken(broken), setup=lambda tx: tx.execute(NOTES))
    service = ServiceDefinition(name="notes", router=lambda ctx: APIRouter(), subscriptions=lambda ctx: [subscription])
    ctx = ServiceContext.open(load_settings(data=data))
    try:
        ctx.store.append("complaint-P1", [NewEvent("Noted", {"n": n}) for n in range(3)])
        runner = SubscriptionRunner(ctx.store, ctx.db, subscription, max_attempts=2, backoff=0.001)
        runner.run_until_caught_up()
        assert len(runner.parked()) == 3
    finally:
        ctx.close()
    return data, broken, service


def test_parked_list_where_no_server_has_run_is_refused_and_makes_no_read_models(tmp_path: Path, capsys):
    """Session 31: it made an empty readmodels.db and said "0 parked" of read models no server had written to."""
    data = tmp_path / "var"
    open_store(f"sqlite:///{data}/events.db").close()  # the log exists; no server has run
    assert cli_main(["parked", "list", "--data", str(data)]) == 2
    said = capsys.readouterr()
    assert said.out == ""
    assert said.err.startswith(f"lapor: no read models at sqlite:///{data}/readmodels.db: no server has run on them")
    assert not (data / "readmodels.db").exists()


def notes(data: Path) -> dict[int, int]:
    ctx = ServiceContext.open(load_settings(data=data))
    try:
        with ctx.db.read() as tx:
            return dict(tx.fetchall("SELECT position, times FROM notes"))
    finally:
        ctx.close()


def test_parked_events_are_listed_and_replayed_once_the_cause_is_fixed(parked, capsys):
    data, broken, service = parked
    assert cli_main(["parked", "list", "--data", str(data)]) == 0
    listed = capsys.readouterr().out
    assert listed.count("notes: position ") == 3
    assert "after 2 attempts: ValueError: the reference table is missing" in listed

    # Not fixed yet: replaying says so, and the events stay parked.
    assert cli_main(["parked", "replay", "--subscription", "notes", "--all", "--data", str(data)],
                    services=[service]) == 1
    assert "still fails (ValueError: the reference table is missing); it stays parked" in capsys.readouterr().out

    broken.unlink()
    assert cli_main(["parked", "replay", "--subscription", "notes", "--all", "--data", str(data)],
                    services=[service]) == 0
    assert capsys.readouterr().out.endswith("3 of 3 handled\n")
    assert sorted(notes(data).values()) == [1, 1, 1]  # each once
    assert cli_main(["parked", "list", "--data", str(data)]) == 0
    assert capsys.readouterr().out == "0 parked\n"


def test_a_replay_is_refused_while_a_server_runs_the_subscription(parked, capsys):
    data, broken, service = parked
    broken.unlink()
    ctx = ServiceContext.open(load_settings(data=data))
    lease = ctx.db.lease("notes")  # what the server's runner of `notes` holds while it runs
    try:
        assert lease.acquire()
        assert cli_main(["parked", "replay", "--subscription", "notes", "--all", "--data", str(data)],
                        services=[service]) == 2
        assert "runs in another process on this data" in capsys.readouterr().err
    finally:
        lease.release()
        ctx.close()
    assert notes(data) == {}  # nothing replayed beside it


def test_a_replay_names_what_it_cannot_find(parked, capsys):
    data, _, service = parked
    assert cli_main(["parked", "replay", "--subscription", "nope", "--all", "--data", str(data)],
                    services=[service]) == 2
    assert "no subscription 'nope'; there are: notes" in capsys.readouterr().err
    assert cli_main(["parked", "replay", "--subscription", "notes", "--position", "999", "--data", str(data)],
                    services=[service]) == 2
    assert "999" in capsys.readouterr().err
    assert cli_main(["parked", "replay", "--subscription", "notes", "--data", str(data)], services=[service]) == 2
    assert "give --position N or --all" in capsys.readouterr().err


def test_a_scrape_counts_the_parked_events_that_wait_for_a_replay(parked):
    """`/metrics` reads a subscription's checkpoint, handled count and parked count in one read
    (`SubscriptionRunner.scraped`): the parked count is of the events still waiting, not of those replayed."""
    data, broken, service = parked

    def scraped() -> tuple[tuple[int, int, int], tuple[int, int], int]:
        ctx = ServiceContext.open(load_settings(data=data))
        try:
            [subscription] = service.subscriptions(ctx)
            runner = SubscriptionRunner(ctx.store, ctx.db, subscription)
            return runner.scraped(), runner.saved(), len(runner.parked())
        finally:
            ctx.close()

    (checkpoint, handled, waiting), saved, listed = scraped()
    assert ((checkpoint, handled), waiting, listed) == (saved, 3, 3)
    broken.unlink()
    assert cli_main(["parked", "replay", "--subscription", "notes", "--all", "--data", str(data)],
                    services=[service]) == 0
    (checkpoint, handled, waiting), saved, listed = scraped()
    assert ((checkpoint, handled), waiting, listed) == (saved, 0, 0)


def test_an_event_that_cannot_be_read_is_listed_with_why_and_a_replay_says_it_still_fails(tmp_path: Path, capsys):
    """Changed in the store's file past reading (session 29: every subscription stopped there for good): parked at
    once, listed with the reason, and a replay reads the same bytes and says so, exit 1."""
    data = tmp_path / "var"
    subscription = Subscription("notes", note_unless_broken(tmp_path / "fixed"), setup=lambda tx: tx.execute(NOTES))
    service = ServiceDefinition(name="notes", router=lambda ctx: APIRouter(), subscriptions=lambda ctx: [subscription])
    ctx = ServiceContext.open(load_settings(data=data))
    try:
        first, second = (ctx.store.append("complaint-P1", [NewEvent("Noted", {"n": n})]).last_position
                         for n in range(2))
        make_unreadable(ctx.settings.store, "complaint-P1", 0, "data")
        SubscriptionRunner(ctx.store, ctx.db, subscription).run_until_caught_up()
    finally:
        ctx.close()
    assert cli_main(["parked", "list", "--data", str(data)]) == 0
    listed = capsys.readouterr().out
    assert f"notes: position {first}, complaint-P1 version 0 (Noted), parked " in listed
    assert " after 1 attempt: cannot be read: its data does not decode (JSONDecodeError)" in listed
    assert cli_main(["parked", "replay", "--subscription", "notes", "--all", "--data", str(data)],
                    services=[service]) == 1
    assert (f"still fails (UnreadableEvent: the event at complaint-P1 version 0 (position {first}) cannot be read: "
            in capsys.readouterr().out)
    assert notes(data) == {second: 1}  # the event after it, once


def test_parked_commands_name_the_field_of_an_unreadable_event_never_its_stored_content(tmp_path: Path, capsys):
    """Session 32: `lapor parked replay` printed the decode's words ("Invalid isoformat string: 'kemarin sore'"),
    which quote the stored content, and so did `lapor parked list` for a later event of the stream, whose handler
    read the history and failed on it. Both now say which event and field did not decode, and the error's class,
    as the auditors' views do since session 31; the server's log keeps the words."""
    data = tmp_path / "var"

    def history(ctx: ServiceContext) -> list[Subscription]:
        def handle(event: RecordedEvent, tx: Tx) -> None:
            for earlier in ctx.store.read_stream(event.stream):  # a fold of the report, as the views' are
                tx.execute("INSERT INTO notes (position, times) VALUES (?, 1) ON CONFLICT (position) DO UPDATE SET "
                           "times = notes.times + 1", (earlier.position,))

        return [Subscription("history", handle, setup=lambda tx: tx.execute(NOTES))]

    service = ServiceDefinition(name="history", router=lambda ctx: APIRouter(), subscriptions=history)
    ctx = ServiceContext.open(load_settings(data=data))
    try:
        first = ctx.store.append("complaint-P1", [NewEvent("Noted", {"n": n}) for n in range(2)]).first_position
        make_unreadable(ctx.settings.store, "complaint-P1", 0, "recorded_at")  # 'kemarin sore'
        [subscription] = history(ctx)
        SubscriptionRunner(ctx.store, ctx.db, subscription, max_attempts=2, backoff=0.001).run_until_caught_up()
    finally:
        ctx.close()
    unreadable = f"the event at complaint-P1 version 0 (position {first}) cannot be read: its recorded_at does not " \
        "decode (ValueError)"
    assert cli_main(["parked", "list", "--data", str(data)]) == 0
    listed = capsys.readouterr().out
    assert "after 1 attempt: cannot be read: its recorded_at does not decode (ValueError)\n" in listed
    assert "version 1 (Noted), parked " in listed
    assert f"after 2 attempts: UnreadableEvent: {unreadable}\n" in listed
    assert cli_main(["parked", "replay", "--subscription", "history", "--all", "--data", str(data)],
                    services=[service]) == 1
    replayed = capsys.readouterr()
    assert replayed.out.count(f"still fails (UnreadableEvent: {unreadable}); it stays parked\n") == 2
    assert "kemarin" not in listed + replayed.out + replayed.err
