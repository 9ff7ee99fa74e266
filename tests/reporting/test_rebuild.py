"""Projections are idempotent by (stream, version), do not depend on how the log was cut into batches, and
`lapor rebuild` rebuilds them from position 0 beside the live tables and names every difference."""

from __future__ import annotations

import dataclasses
import random
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest

from lapor import rebuild as rebuilding
from lapor.app import load_services
from lapor.cli import main
from lapor.clock import ManualClock
from lapor.complaint import ComplaintState, evolve
from lapor.context import ServiceContext, ServiceDefinition
from lapor.db import SqliteDatabase, Tx
from lapor.policy import Sp4nPolicy
from lapor.rebuild import ReadOnlyStore, RebuildFailed, RebuildReport, rebuild, rebuild_in_shares, rebuild_shared_out
from lapor.settings import load_settings
from lapor.states import ComplaintStates
from lapor.store import NewEvent, RecordedEvent, StreamShare
from lapor.subscriptions import ParkedEvent, Subscription, SubscriptionRunner, holding_batches
from services.reporting import projections as reporting_projections
from services.reporting.projections import ComplaintReports, project_complaints
from services.reporting.service import SERVICE
from tests.reporting import lifecycles
from tests.test_subscriptions import make_unreadable

START = datetime(2090, 1, 2, 1, 0, tzinfo=UTC)


def table(tx: Tx, name: str) -> list[tuple]:
    return sorted(map(tuple, tx.fetchall(f"SELECT * FROM {name}")), key=repr)


def open_context(data: Path, store: str | None) -> ServiceContext:
    """A store holding the directory and 120 random histories over two months, recorded at their moments."""
    ctx = ServiceContext.open(load_settings(data=data, training=True, store=store))
    assert isinstance(ctx.clock, ManualClock)
    ctx.clock.set(START - timedelta(days=1))
    lifecycles.register_directory(ctx.store)
    steps = lifecycles.histories(seed=7, count=120, start=START, days=40, ends=START + timedelta(days=60),
                                 policy=Sp4nPolicy())
    lifecycles.append_in_time_order(ctx.store, ctx.clock, steps, tick=timedelta(hours=1))
    return ctx


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def context(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceContext]:
    """On the embedded SQLite store, or a fresh PostgreSQL schema holding store and read models."""
    store = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    ctx = open_context(tmp_path / "var", store)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def sqlite_context(tmp_path: Path) -> Iterator[ServiceContext]:
    """The `lapor` command finds the store of its data directory: the embedded SQLite one."""
    ctx = open_context(tmp_path / "var", None)
    try:
        yield ctx
    finally:
        ctx.close()


def run_live(ctx: ServiceContext, services: list[ServiceDefinition], batch_size: int) -> None:
    for service in services:
        for subscription in service.subscriptions(ctx):
            SubscriptionRunner(ctx.store, ctx.db, subscription, batch_size=batch_size).run_until_caught_up()


def complaint_events(ctx: ServiceContext) -> list[RecordedEvent]:
    return ctx.store.read_all(0, "complaint", 100_000)


def test_an_event_delivered_twice_changes_nothing(context: ServiceContext):
    run_live(context, [SERVICE], batch_size=50)
    with context.db.read() as tx:
        before = (table(tx, "rpt_complaints"), table(tx, "rpt_daily"))
    events = complaint_events(context)
    with context.db.transaction() as tx:
        project_complaints(events[len(events) // 3 : len(events) // 2], tx)  # a stretch, redelivered
        project_complaints(events[-5:], tx)
    with context.db.read() as tx:
        assert (table(tx, "rpt_complaints"), table(tx, "rpt_daily")) == before


def test_rows_do_not_depend_on_how_the_log_is_cut_into_batches(context: ServiceContext):
    events = complaint_events(context)
    results = []
    for cuts in ([len(events)], [1] * 200 + [len(events)], [random.Random(3).randint(1, 90) for _ in range(200)]):
        with context.db.transaction() as tx:
            tx.execute("DROP TABLE IF EXISTS rpt_complaints")
            tx.execute("DROP TABLE IF EXISTS rpt_daily")
            SERVICE.subscriptions(context)[0].setup(tx)
        start = 0
        for size in [*cuts, len(events)]:
            with context.db.transaction() as tx:
                project_complaints(events[start : start + size], tx)
            start += size
        with context.db.read() as tx:
            results.append((table(tx, "rpt_complaints"), table(tx, "rpt_daily")))
    assert results[0] == results[1] == results[2]
    assert len(results[0][0]) == 120


def test_rebuild_equals_live_after_a_randomised_run(context: ServiceContext):
    run_live(context, [SERVICE], batch_size=37)
    report = rebuild(context, [SERVICE])
    assert report.identical, report.differences
    assert report.events_read == context.store.head_position()
    assert {result.name for result in report.subscriptions} == {"reporting.complaints", "reporting.directory"}
    assert {"rpt_complaints", "rpt_daily", "rpt_agencies"} <= set(report.tables)
    assert all(not result.lagging for result in report.subscriptions)


def test_rebuild_names_a_row_that_differs_from_what_the_log_says(context: ServiceContext):
    run_live(context, [SERVICE], batch_size=500)
    with context.db.transaction() as tx:
        key = tx.fetchone("SELECT day, region_code, agency_id, metric FROM rpt_daily WHERE metric = 'received' "
                          "ORDER BY day, region_code LIMIT 1")
        tx.execute("UPDATE rpt_daily SET count = count + 1 WHERE day = ? AND region_code = ? AND agency_id = ? "
                   "AND metric = ?", key)
    report = rebuild(context, [SERVICE])
    [difference] = report.differences
    assert (difference.table, difference.only_live, difference.only_rebuilt) == ("rpt_daily", 1, 1)
    assert difference.examples_live[0][-1] == difference.examples_rebuilt[0][-1] + 1


def test_live_tables_built_by_an_older_version_of_the_projection_are_built_again_on_start(context: ServiceContext):
    """A deployment whose reporting rows an older version of the projection built (other figures for the same
    log): its next start reads the log again into fresh tables, and they equal a rebuild."""
    run_live(context, [SERVICE], batch_size=500)
    with context.db.transaction() as tx:
        tx.execute("UPDATE rpt_complaints SET followed_up = 1 - followed_up")  # what the older logic counted
        tx.execute("UPDATE subscription_checkpoints SET projection_version = NULL WHERE name = ?",
                   (reporting_projections.COMPLAINTS_SUBSCRIPTION,))
    assert not rebuild(context, [SERVICE]).identical

    run_live(context, [SERVICE], batch_size=500)
    report = rebuild(context, [SERVICE])
    assert report.identical, report.differences
    with context.db.read() as tx:
        assert tx.scalar("SELECT projection_version FROM subscription_checkpoints WHERE name = ?",
                         (reporting_projections.COMPLAINTS_SUBSCRIPTION,)) == reporting_projections.COMPLAINTS_VERSION


def test_a_projection_that_names_its_tables_names_every_table_its_setup_creates(context: ServiceContext):
    for service in load_services():
        for subscription in service.subscriptions(context):
            if not subscription.tables:
                continue
            assert subscription.setup is not None
            scratch = SqliteDatabase(context.settings.data / f"scratch-{subscription.name}.db")
            with scratch.transaction() as tx:
                subscription.setup(tx)
                created = {name for (name,) in tx.fetchall(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
            scratch.close()
            assert created == set(subscription.tables), subscription.name


def test_rebuild_of_a_live_projection_that_fell_behind_says_it_lags(context: ServiceContext):
    for subscription in SERVICE.subscriptions(context):
        runner = SubscriptionRunner(context.store, context.db, subscription, batch_size=100)
        runner.poll()  # one batch only
    report = rebuild(context, [SERVICE])
    complaints = next(r for r in report.subscriptions if r.name == "reporting.complaints")
    assert complaints.lagging
    assert not report.identical


def test_rebuild_covers_other_services_projections_and_leaves_their_reactions_out(context: ServiceContext):
    appended: list[str] = []

    def count_types(event: RecordedEvent, tx: Tx) -> None:
        tx.execute("INSERT INTO other_counts (type, n) VALUES (?, 1) ON CONFLICT (type) DO UPDATE SET "
                   "n = other_counts.n + 1", (event.type,))

    def react(event: RecordedEvent, tx: Tx) -> None:
        appended.append(event.stream)

    other = ServiceDefinition(
        name="other",
        router=SERVICE.router,
        subscriptions=lambda ctx: [
            Subscription("other.counts", count_types,
                         setup=lambda tx: tx.execute("CREATE TABLE IF NOT EXISTS other_counts "
                                                     "(type TEXT PRIMARY KEY, n BIGINT NOT NULL)")),
            Subscription("other.reactions", react, projection=False),
        ],
    )
    run_live(context, [SERVICE, other], batch_size=200)
    seen_live = len(appended)
    report = rebuild(context, [SERVICE, other])
    assert report.identical
    assert "other_counts" in report.tables
    assert report.skipped == ["other.reactions"]
    assert len(appended) == seen_live  # the reaction did not run again


def test_a_projection_that_appends_during_a_rebuild_writes_nothing_to_the_log(context: ServiceContext):
    def notes(ctx: ServiceContext) -> list[Subscription]:
        def note(event: RecordedEvent, tx: Tx) -> None:
            if event.version == 0:
                ctx.store.append(f"notes-{event.stream}", [NewEvent("Noted", {})])

        return [Subscription("liar.notes", note, category="complaint")]

    head = context.store.head_position()
    report = rebuild(context, [ServiceDefinition(name="liar", router=SERVICE.router, subscriptions=notes)])
    [result] = report.subscriptions
    assert result.parked == 120  # every first event failed there, and was parked in the rebuilt tables
    assert context.store.head_position() == head


def test_lapor_rebuild_prints_a_progress_bar_and_exits_0_when_identical(sqlite_context: ServiceContext, capsys):
    run_live(sqlite_context, [SERVICE], batch_size=64)
    data = sqlite_context.settings.data
    code = main(["rebuild", "--data", str(data), "--keep", "--processes", "1"], services=[SERVICE])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "rebuilding projections" in out
    assert "identical" in out
    assert len(list((data / "rebuild").glob("readmodels-*.db"))) == 1


def test_lapor_rebuild_exits_1_when_a_live_table_differs(sqlite_context: ServiceContext, capsys):
    run_live(sqlite_context, [SERVICE], batch_size=64)
    with sqlite_context.db.transaction() as tx:
        tx.execute("DELETE FROM rpt_agencies WHERE agency_id = 'pemda-53.71'")
    code = main(["rebuild", "--data", str(sqlite_context.settings.data)], services=[SERVICE])
    out = capsys.readouterr().out
    assert code == 1
    assert "rpt_agencies" in out
    assert not list((sqlite_context.settings.data / "rebuild").glob("*.db"))  # dropped without --keep


def test_lapor_rebuild_names_every_subscription_and_table_whole_in_a_log(
    sqlite_context: ServiceContext, capsys, monkeypatch: pytest.MonkeyPatch
):
    """Printed to a log or a pipe (80 columns), the report cut the names to fit: `reporting.c…` and `reporting.d…`
    for the subscriptions, and a table missing from the live database (no example rows to name it) as `rpt_compl…`."""
    monkeypatch.setenv("COLUMNS", "80")
    run_live(sqlite_context, [SERVICE], batch_size=64)
    with sqlite_context.db.transaction() as tx:
        tx.execute("DROP TABLE rpt_complaints")
        tx.execute("UPDATE rpt_agencies SET name = 'Pemerintah Kota Kupang (nama lama, sebelum penggabungan dinas)'"
                   " WHERE agency_id = 'pemda-53.71'")
    code = main(["rebuild", "--data", str(sqlite_context.settings.data), "--processes", "1"], services=[SERVICE])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "reporting.complaints" in out
    assert "reporting.directory" in out
    [missing] = [line for line in out.splitlines() if "rpt_complaints" in line]
    assert "no such live table" in missing
    # A differing row is one line, as its repr reads (it was broken every 80 characters, mid-word).
    [live_row] = [line for line in out.splitlines() if line.startswith("  rpt_agencies only live: ")]
    assert live_row.endswith(")")
    assert "(nama lama, sebelum penggabungan dinas)" in live_row


def test_lapor_rebuild_of_a_data_directory_without_a_store_is_an_error_and_creates_nothing(tmp_path: Path, capsys):
    code = main(["rebuild", "--data", str(tmp_path / "typo")], services=[SERVICE])
    assert code == 2
    assert "no event store at" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("batch_size", ["0", "-5"])
def test_lapor_rebuild_refuses_a_batch_size_below_one(sqlite_context: ServiceContext, batch_size: str, capsys):
    run_live(sqlite_context, [SERVICE], batch_size=64)
    data = sqlite_context.settings.data
    code = main(["rebuild", "--data", str(data), "--batch-size", batch_size, "--keep"], services=[SERVICE])
    assert code == 2
    assert "--batch-size must be at least 1" in capsys.readouterr().err
    assert not (data / "rebuild").exists() or not list((data / "rebuild").glob("*.db"))


# -- in several processes, each a share of the complaints --------------------------------------------------


def run_projections_live(ctx: ServiceContext, services: list[ServiceDefinition]) -> None:
    for service in services:
        for subscription in service.subscriptions(ctx):
            if subscription.projection:  # a reaction would append to the log
                SubscriptionRunner(ctx.store, ctx.db, subscription, batch_size=256).run_until_caught_up()


def rows_per_share(ctx: ServiceContext, report: RebuildReport, table_name: str) -> list[int]:
    """How many rows each share kept (`keep=True`) in `table_name`; PostgreSQL's kept schemas are dropped."""
    counts = []
    for location in report.location.split("; "):
        if location.startswith("schema "):
            schema = location.removeprefix("schema ")
            with psycopg.connect(ctx.settings.store, autocommit=True) as conn:
                counts.append(conn.execute(f'SELECT count(*) FROM "{schema}"."{table_name}"').fetchone()[0])
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        else:
            with sqlite3.connect(location) as conn:
                counts.append(conn.execute(f"SELECT count(*) FROM {table_name}").fetchone()[0])
    return counts


@pytest.mark.parametrize("shares", [2, 3])
def test_a_rebuild_in_shares_of_the_complaints_equals_live_and_reports_every_projection_once(
    context: ServiceContext, monkeypatch: pytest.MonkeyPatch, shares: int
):
    monkeypatch.setenv("LAPOR_STORE", context.settings.store)  # what the spawned processes open
    services = load_services()
    run_projections_live(context, services)
    complaint_count = len(complaint_events(context))
    report = rebuild_in_shares(context, services, shares, batch_size=300, keep=True)
    in_each = rows_per_share(context, report, "rpt_complaints")
    assert report.identical, report.differences
    assert report.shares == shares
    assert report.target_position == context.store.head_position()
    assert report.events_read == len(context.store.read_all(0, None, 100_000))  # each event counted once
    expected = {s.name for service in services for s in service.subscriptions(context) if s.projection}
    assert sorted(result.name for result in report.subscriptions) == sorted(expected)  # once each, merged
    handled = {result.name: result.handled for result in report.subscriptions}
    # Each share handled its own complaints; intake's recent reports (not per stream) saw them all in one share;
    # every share handled the whole directory, which counts once.
    assert handled["reporting.complaints"] == handled["intake.recent_reports"] == complaint_count
    assert handled["reporting.directory"] == len(context.store.read_all(0, "directory", 100_000))
    assert {"rpt_complaints", "rpt_daily", "routing_complaints", "followup_queue"} <= set(report.tables)
    assert len(in_each) == shares
    assert all(in_each)  # the complaints really were shared out
    assert sum(in_each) == 120  # none twice


@pytest.mark.parametrize("processes", [1, 2])
def test_a_rebuild_follows_a_live_projection_that_moved_on_while_it_ran(
    sqlite_context: ServiceContext, monkeypatch: pytest.MonkeyPatch, processes: int
):
    services = load_services()
    run_projections_live(sqlite_context, services)
    head = sqlite_context.store.head_position()
    # The head found at the start is 40 events short of where the live projections are by the comparison.
    monkeypatch.setattr(sqlite_context.store, "head_position", lambda: head - 40)
    report = rebuild_shared_out(sqlite_context, services, processes, batch_size=500)
    assert report.identical, report.differences
    assert report.target_position == head - 40
    assert {result.rebuilt_checkpoint for result in report.subscriptions} == {head}


def test_a_rebuild_in_shares_names_a_complaint_row_that_differs(sqlite_context: ServiceContext):
    services = load_services(["reporting"])
    run_projections_live(sqlite_context, services)
    with sqlite_context.db.transaction() as tx:
        tx.execute("UPDATE rpt_complaints SET category = 'altered' WHERE tracking_id = "
                   "(SELECT min(tracking_id) FROM rpt_complaints)")
    report = rebuild_in_shares(sqlite_context, services, 2)
    [difference] = report.differences
    assert (difference.table, difference.only_live, difference.only_rebuilt) == ("rpt_complaints", 1, 1)
    assert "altered" in difference.examples_live[0]
    assert "altered" not in difference.examples_rebuilt[0]


def test_lapor_rebuild_in_two_processes_exits_1_when_a_live_table_differs(sqlite_context: ServiceContext, capsys):
    run_projections_live(sqlite_context, load_services(["reporting", "followup"]))
    data = sqlite_context.settings.data
    arguments = ["rebuild", "--data", str(data), "--service", "reporting", "--service", "followup", "--processes", "2"]
    assert main(arguments) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "identical" in out
    assert "by 2 processes" in out
    with sqlite_context.db.transaction() as tx:
        tx.execute("UPDATE rpt_daily SET count = count + 1 WHERE rowid = (SELECT min(rowid) FROM rpt_daily)")
    assert main(arguments) == 1
    assert "rpt_daily" in capsys.readouterr().out
    assert not list((data / "rebuild").glob("*.db"))  # every share dropped without --keep


@pytest.mark.parametrize("processes", ["1", "2"])
def test_lapor_rebuild_takes_a_service_named_twice_once(sqlite_context: ServiceContext, processes: str, capsys):
    """`--service reporting --service reporting` rebuilt each of its projections twice over in the same fresh tables
    and failed: 'the checkpoint of reporting.directory is no longer at 0: another runner moved it'."""
    run_projections_live(sqlite_context, load_services(["reporting"]))
    data = sqlite_context.settings.data
    code = main(["rebuild", "--data", str(data), "--service", "reporting", "--service", "reporting",
                 "--processes", processes])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    # Reporting's three read models (rpt_complaints, rpt_daily, rpt_agencies), each built once.
    assert "identical: 3 tables equal their live counterparts" in captured.out


def test_a_rebuild_process_that_fails_is_named_with_its_error(sqlite_context: ServiceContext):
    unknown = dataclasses.replace(SERVICE, name="no-such-service")
    with pytest.raises(RebuildFailed, match="no-such-service"):
        rebuild_in_shares(sqlite_context, [unknown], 2)
    assert not list((sqlite_context.settings.data / "rebuild").glob("*.db"))


@pytest.fixture
def in_the_way(context: ServiceContext, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Callable[[], bool]]]:
    """Something of another's where a rebuild in shares would make its second share's fresh tables: a folder where
    the SQLite file would go, or a PostgreSQL schema of that name holding a table. The rebuild's label is made known
    by its random part (`uuid4`) alone. Yields its name and whether it is still there, whole."""
    monkeypatch.setattr(rebuilding, "uuid", SimpleNamespace(uuid4=lambda: uuid.UUID("c1320000" + "0" * 24)))
    label = f"{context.clock.now():%Y%m%d%H%M%S}_c13200_1"
    if context.db.dialect == "sqlite":
        folder = context.settings.data / "rebuild" / f"readmodels-{label}.db"
        (folder / "theirs").mkdir(parents=True)
        yield str(folder), (folder / "theirs").is_dir
        return
    schema = f"lapor_rebuild_{label}"
    with psycopg.connect(context.settings.store, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.theirs (n INTEGER)")

    def there() -> bool:
        with psycopg.connect(context.settings.store, autocommit=True) as conn:
            return conn.execute("SELECT to_regclass(%s)", (f"{schema}.theirs",)).fetchone() != (None,)

    try:
        yield schema, there
    finally:
        with psycopg.connect(context.settings.store, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def test_a_rebuild_in_shares_whose_later_fresh_tables_cannot_be_made_leaves_none_and_says_why(
    context: ServiceContext, in_the_way: tuple[str, Callable[[], bool]]
):
    """Session 32: the second share's fresh tables refused (a folder where its SQLite file would go, a schema of
    its name already there) left the first share's file or schema behind, beside the live read models. Now the
    rebuild fails in one line naming what was in the way and leaves nothing of its own; what was in the way is
    another's, and stays."""
    name, still_there = in_the_way
    before = fresh_tables_left(context)
    with pytest.raises(RebuildFailed) as failed:
        rebuild_in_shares(context, [SERVICE], 2)
    said = str(failed.value)  # what `lapor rebuild` prints after "lapor: rebuild failed: "
    assert fresh_tables_left(context) == before  # the first share's dropped
    assert still_there()
    assert "\n" not in said
    assert said.startswith("the database failed (")
    assert name in said, said


def rebuild_in_shares_here(ctx: ServiceContext, services: list[ServiceDefinition], count: int) -> RebuildReport:
    """`rebuild_in_shares`, but each share built in turn in this process: services of a test's own cannot be
    loaded by name in another."""
    target = ctx.store.head_position()
    label = f"here_{uuid.uuid4().hex[:6]}"  # the test server is shared: made anew, never another run's
    fresh = [rebuilding.fresh_tables(ctx.db, f"{label}_{index}") for index in range(count)]
    try:
        built = [rebuilding._build(ctx, services, tables, share, target, 500, None)
                 for tables, share in zip(fresh, StreamShare.split([1.0] * count), strict=True)]
        return rebuilding._finish(ctx, services, fresh, built, target, 500)
    finally:
        for tables in fresh:
            tables.drop()


def counting_service(counters: dict[str, str]) -> ServiceDefinition:
    """Counts every event by type (a projection of every category) and dispositions by agency (of complaints,
    counting across them: a counter)."""

    def by_type(event: RecordedEvent, tx: Tx) -> None:
        tx.execute("INSERT INTO other_types (type, n) VALUES (?, 1) ON CONFLICT (type) DO UPDATE SET "
                   "n = other_types.n + 1", (event.type,))

    def by_agency(event: RecordedEvent, tx: Tx) -> None:
        if event.type == "ComplaintDisposed":
            tx.execute("INSERT INTO other_disposals (agency_id, n) VALUES (?, 1) ON CONFLICT (agency_id) DO UPDATE "
                       "SET n = other_disposals.n + 1", (event.data["agency_id"],))

    def create(table_name: str, key: str) -> Callable[[Tx], None]:
        return lambda tx: tx.execute(f"CREATE TABLE IF NOT EXISTS {table_name} ({key} TEXT PRIMARY KEY, n BIGINT)")

    return ServiceDefinition(
        name="other",
        router=SERVICE.router,
        subscriptions=lambda ctx: [
            Subscription("other.types", by_type, category=None, setup=create("other_types", "type")),
            Subscription("other.disposals", by_agency, setup=create("other_disposals", "agency_id"),
                         counters=counters),
        ],
    )


def test_shares_put_together_projections_of_every_category_and_counters(context: ServiceContext):
    declared = counting_service({"other_disposals": "n"})
    run_live(context, [SERVICE, declared], batch_size=200)
    report = rebuild_in_shares_here(context, [SERVICE, declared], 3)
    assert report.identical, report.differences
    handled = {result.name: result.handled for result in report.subscriptions}
    assert handled["other.types"] == len(context.store.read_all(0, None, 100_000))  # all, in the first share

    # Without its counters declared, the agencies' counts of the shares are listed side by side: a difference.
    report = rebuild_in_shares_here(context, [SERVICE, counting_service({})], 3)
    assert [difference.table for difference in report.differences] == ["other_disposals"]


def test_a_read_only_store_of_a_share_reads_only_that_shares_complaints(sqlite_context: ServiceContext):
    everything = sqlite_context.store.read_all(0, None, 100_000)
    split = StreamShare.split([1, 1])
    shares = [ReadOnlyStore(sqlite_context.store, share) for share in split]
    seen = [store.read_all(0, "complaint", 100_000) for store in shares]
    assert sorted(e.position for events in seen for e in events) == [
        e.position for e in everything if e.category == "complaint"
    ]
    assert all(split[index].holds(e.stream) for index, events in enumerate(seen) for e in events)
    assert [e.position for e in shares[1].read_all(0, "directory", 100_000)] == [
        e.position for e in everything if e.category == "directory"
    ]


@pytest.mark.parametrize("hold", [1, 7, 1000])
def test_a_rebuild_holding_few_or_all_rows_between_writes_equals_live(
    context: ServiceContext, monkeypatch: pytest.MonkeyPatch, hold: int
):
    """Every service's projections that hold rows (routing's, followup's and reporting's complaints) write them
    when `hold` are held and load them again later: rebuilt equals live whether that happens after each report,
    every few, or only at the end."""
    services = load_services()
    run_live(context, services, batch_size=50)
    monkeypatch.setattr("lapor.rebuild.REBUILD_HOLD", hold)
    report = rebuild(context, services, batch_size=40)
    assert report.identical, report.differences
    held = {"routing.complaints", "followup.queue", "reporting.complaints"}
    assert held <= {result.name for result in report.subscriptions}
    assert all(result.handled > 0 and result.parked == 0 for result in report.subscriptions if result.name in held)


def test_the_complaint_projection_takes_the_states_another_projection_folded(
    context: ServiceContext, monkeypatch: pytest.MonkeyPatch
):
    """With the process's shared states, reporting evolves nothing another projection folded, and writes the
    same rows as when it folds every event itself."""
    events = complaint_events(context)
    shared = ComplaintStates(context.store, capacity=1000, history=100)
    for event in events[: len(events) // 2]:
        shared.step(event)  # as routing's projection would, ahead of reporting
    evolved: list[RecordedEvent] = []

    def counting_evolve(state: ComplaintState, event: RecordedEvent) -> ComplaintState:
        evolved.append(event)
        return evolve(state, event)

    monkeypatch.setattr(reporting_projections, "evolve", counting_evolve)
    results = []
    for states in (shared, None):
        with context.db.transaction() as tx:
            tx.execute("DROP TABLE IF EXISTS rpt_complaints")
            tx.execute("DROP TABLE IF EXISTS rpt_daily")
            SERVICE.subscriptions(context)[0].setup(tx)
            holding_batches(partial(ComplaintReports, states))(events, tx)
            results.append((table(tx, "rpt_complaints"), table(tx, "rpt_daily")))
        if states is shared:
            # The first half came from the shared states (the projection goes stream by stream).
            assert sorted(e.position for e in evolved) == [e.position for e in events[len(events) // 2 :]]
    assert results[0] == results[1]


# -- a database that fails under a rebuild ------------------------------------------------------------------


def failing_database(ctx: ServiceContext) -> list[Subscription]:
    """A projection that meets its database failing at its first row, as an operator's rebuild can: on SQLite the
    disk is full (SQLITE_FULL), on PostgreSQL the server ends the connection (as on a restart)."""

    def setup(tx: Tx) -> None:
        tx.execute("CREATE TABLE IF NOT EXISTS filler (body TEXT NOT NULL)")

    def handle(event: RecordedEvent, tx: Tx) -> None:
        if tx.dialect == "sqlite":
            tx.execute(f"PRAGMA max_page_count = {tx.fetchone('PRAGMA page_count')[0]}")
            tx.execute("INSERT INTO filler (body) VALUES (?)", ("x" * 100_000,))
        else:
            tx.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    return [Subscription("failing.rows", handle, setup=setup)]


FAILING = ServiceDefinition(name="failing", router=SERVICE.router, subscriptions=failing_database)


def test_a_rebuild_whose_database_fails_says_so_in_a_line_and_leaves_no_fresh_tables(context: ServiceContext):
    run_live(context, [SERVICE], batch_size=200)
    before = fresh_tables_left(context)
    with pytest.raises(RebuildFailed) as failed:
        rebuild(context, [SERVICE, FAILING], keep=True)  # half-built tables are not kept: they look like a rebuild
    said = str(failed.value)
    assert "\n" not in said
    assert ("database or disk is full" if context.db.dialect == "sqlite" else "terminating connection") in said
    assert "run the rebuild again" in said
    assert fresh_tables_left(context) == before


def fresh_tables_left(ctx: ServiceContext) -> set[str]:
    """The rebuilt tables of this store's clock's moment that are still there: files, or schemas (the test server
    is shared, so only this moment's)."""
    if ctx.db.dialect == "sqlite":
        return {path.name for path in (ctx.settings.data / "rebuild").glob("*.db")}
    with ctx.db.read() as tx:
        rows = tx.fetchall("SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE ?",
                           (f"lapor_rebuild_{ctx.clock.now():%Y%m%d%H%M%S}%",))
    return {name for (name,) in rows}


def test_lapor_rebuild_whose_disk_fills_exits_2_with_the_reason_not_a_traceback(
    sqlite_context: ServiceContext, capsys
):
    run_live(sqlite_context, [SERVICE], batch_size=200)
    data = sqlite_context.settings.data
    code = main(["rebuild", "--data", str(data), "--processes", "1"], services=[SERVICE, FAILING])
    error = capsys.readouterr().err
    assert code == 2
    assert error.startswith("lapor: rebuild failed:")
    assert "database or disk is full" in error
    assert not list((data / "rebuild").glob("*.db"))


def test_a_failed_or_unkept_rebuild_removes_the_rebuild_folder_it_made(sqlite_context: ServiceContext, capsys):
    """Session 31: the files were dropped and `<data>/rebuild/` was left behind, empty, by a rebuild that failed, one
    whose process failed, and one that succeeded without --keep."""
    run_live(sqlite_context, [SERVICE], batch_size=200)
    data = sqlite_context.settings.data
    assert main(["rebuild", "--data", str(data), "--processes", "1"], services=[SERVICE, FAILING]) == 2
    assert "database or disk is full" in capsys.readouterr().err
    assert not (data / "rebuild").exists()  # before: an empty folder
    with pytest.raises(RebuildFailed, match="no-such-service"):
        rebuild_in_shares(sqlite_context, [dataclasses.replace(SERVICE, name="no-such-service")], 2)
    assert not (data / "rebuild").exists()
    assert main(["rebuild", "--data", str(data), "--processes", "1"], services=[SERVICE]) == 0
    assert not (data / "rebuild").exists()


def test_a_failed_rebuild_leaves_a_rebuild_folder_it_did_not_make_and_what_is_kept_there(
    sqlite_context: ServiceContext, capsys
):
    run_live(sqlite_context, [SERVICE], batch_size=200)
    data = sqlite_context.settings.data
    assert main(["rebuild", "--data", str(data), "--keep", "--processes", "1"], services=[SERVICE]) == 0
    kept = sorted((data / "rebuild").iterdir())
    assert [path.suffix for path in kept] == [".db"]
    assert main(["rebuild", "--data", str(data), "--processes", "1"], services=[SERVICE, FAILING]) == 2
    assert sorted((data / "rebuild").iterdir()) == kept
    capsys.readouterr()


@pytest.mark.postgres
def test_lapor_rebuild_whose_postgresql_server_restarts_exits_2_with_the_reason_not_a_traceback(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    """Every connection of the command ends at once, as when the server restarts: the store's pooled ones too, so
    closing the store afterwards must not fail in turn and hide the reason."""
    name = f"lapor-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PGAPPNAME", name)  # tells this command's connections from other tests' on the server
    monkeypatch.setenv("LAPOR_STORE", postgres_url)
    monkeypatch.setenv("LAPOR_READMODELS", postgres_url)
    open_context(tmp_path / "var", postgres_url).close()

    def restart(ctx: ServiceContext) -> list[Subscription]:
        def handle(event: RecordedEvent, tx: Tx) -> None:
            tx.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ?", (name,))

        return [Subscription("restart.rows", handle)]

    restarting = ServiceDefinition(name="restart", router=SERVICE.router, subscriptions=restart)
    code = main(["rebuild", "--data", str(tmp_path / "var"), "--processes", "1"], services=[SERVICE, restarting])
    error = capsys.readouterr().err
    assert code == 2
    said = error.splitlines()[-1]  # after the pool's warnings about the connections it discards
    assert said.startswith("lapor: rebuild failed:")
    assert "terminating connection" in said


@pytest.mark.parametrize("column", ["data", "recorded_at", "metadata"])
def test_an_event_changed_past_reading_is_parked_live_and_by_a_rebuild_and_every_other_report_is_projected(
    context: ServiceContext, monkeypatch: pytest.MonkeyPatch, column: str
):
    """Until session 29 the projections' read of the batch holding such an event failed, and each tried again from
    its checkpoint for ever (the views froze there); `lapor rebuild` failed with the store's ValueError. Now every
    projection parks it ("cannot be read: ..."), and the later events of its report too (the shared fold cannot take
    them without it), and projects the rest; a rebuild parks the same, so its tables equal the live ones. Metadata
    is decoded only when asked for: the projections that read it refuse the event, and park it as any other."""
    versions: dict[str, int] = {}
    for event in complaint_events(context):
        versions[event.stream] = event.version
    stream = next(stream for stream, last in versions.items() if last >= 3)
    make_unreadable(context.settings.store, stream, 1, column)
    services = load_services()
    live: dict[str, list[ParkedEvent]] = {}
    for service in services:
        for subscription in service.subscriptions(context):
            if subscription.projection:
                runner = SubscriptionRunner(context.store, context.db, subscription, max_attempts=2, backoff=0.001)
                runner.run_until_caught_up()
                assert runner.checkpoint() == context.store.head_position()
                live[runner.name] = runner.parked()
    with context.db.read() as tx:
        projected = dict(tx.fetchall("SELECT tracking_id, version FROM rpt_complaints"))
    expected = {s.removeprefix("complaint-"): v for s, v in versions.items()}
    if column == "metadata":  # the reports do not read it: the event is projected
        assert projected == expected
    else:
        parked = live["reporting.complaints"]
        assert [(p.stream, p.version) for p in parked] == [(stream, v) for v in range(1, versions[stream] + 1)]
        assert parked[0].error.startswith("cannot be read: ")
        assert parked[0].attempts == 1  # the same bytes read again would fail again
        assert projected == expected | {stream.removeprefix("complaint-"): 0}

    parked_live = {name: len(events) for name, events in live.items()}
    report = rebuild(context, services)
    assert report.identical, report.differences
    assert {result.name: result.parked for result in report.subscriptions} == parked_live
    monkeypatch.setenv("LAPOR_STORE", context.settings.store)  # what the spawned processes open
    shared = rebuild_in_shares(context, services, 2, batch_size=300)  # the event is in one share's complaints
    assert shared.identical, shared.differences
    assert {result.name: result.parked for result in shared.subscriptions} == parked_live
