"""`lapor rebuild`: every projection of every service built again from position 0, beside the live one, and
compared with it.

The projections are the `ServiceDefinition.subscriptions` of the services (those with `projection=True`;
reactions that append events or call out are left out and named). They are built into *fresh* tables — a new
SQLite file beside the live read models, or a new schema in the live PostgreSQL database — so nothing live is
touched, through the same `SubscriptionRunner` code the live ones run on (batch handlers, checkpoints committed
with the rows, parking). The log is read once and each batch is fed to every runner. The services see a store
that refuses appends, so the events of a subscription that wrongly claims to be a projection are parked in the
rebuilt tables (and counted in the report) instead of writing to the log.

When the log's head is reached, each rebuilt projection is brought to exactly the live one's checkpoint (read
in the same snapshot as the live tables, so a server running meanwhile does not blur the comparison), and
every table the projections created is compared row by row with the live table of that name. A live
subscription that is behind the log's head is marked as lagging: its differences are those of the lag.
"""

from __future__ import annotations

import dataclasses
import gc
import multiprocessing
import queue
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from lapor.context import ServiceContext, ServiceDefinition
from lapor.db import Database, PostgresDatabase, SqliteDatabase, Tx
from lapor.states import ComplaintStates
from lapor.store import EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError
from lapor.store.model import AppendResult, category_of
from lapor.subscriptions import CHECKPOINT_SCHEMA, Subscription, SubscriptionRunner

READ_PAGE = 5000  # events per read_all call
DEFAULT_BATCH = 50_000  # events per transaction of each projection (~400 MB peak with the states)
# The complaint states the projections share (`lapor.states`): enough for every report still moving in a busy
# period, about 1.8 KB each; a report folded again from the store is only slower.
REBUILD_STATES = 250_000
REBUILD_HISTORY = 64  # states per complaint within one batch
# Rows a projection that can hold them keeps in memory between batches before it writes them (about 2 KB each
# for the largest, reporting's complaints): a log of ~2 million reports is rebuilt writing each row once.
REBUILD_HOLD = 250_000
# The fresh SQLite tables' page cache: every table a rebuild writes stays in memory until it is compared (a
# rebuild of 10^6 events writes ~300 MB; 2 MB, SQLite's default, cost 7% of the rebuild's time).
REBUILD_CACHE_MB = 512
BOOKKEEPING_TABLES = frozenset({"subscription_checkpoints", "parked_events"})
EXAMPLES = 3  # differing rows shown per table and side

Progress = Callable[[int, int], None]  # (position reached, target position)


class ReadOnlyStore(EventStore):
    """The live store, for reading only: what a rebuilt projection gets as `ctx.store`."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self.url = store.url
        self.vault = store.vault

    def append(self, stream: str, events: Sequence[NewEvent], expected_version: ExpectedVersion = -2) -> AppendResult:
        raise StoreError(
            f"a rebuild only reads the log, but a projection tried to append to {stream}: "
            "mark its subscription projection=False"
        )

    def read_stream(self, stream: str, from_version: int = 0, limit: int | None = None) -> list[RecordedEvent]:
        return self._store.read_stream(stream, from_version, limit)

    def read_all(self, from_position: int = 0, category: str | None = None, limit: int = 1000) -> list[RecordedEvent]:
        return self._store.read_all(from_position, category, limit)

    def head_position(self) -> int:
        return self._store.head_position()

    def wait_for_events(self, after_position: int, timeout: float) -> bool:
        return self._store.wait_for_events(after_position, timeout)

    def stream_version(self, stream: str) -> int:
        return self._store.stream_version(stream)

    def close(self) -> None:
        """The live store belongs to whoever opened it."""


# -- where the fresh tables go ------------------------------------------------------------------------------


@dataclass
class FreshTables:
    """A read-model database nobody else uses, and how to get rid of it."""

    db: Database
    location: str
    drop: Callable[[], None]


def _with_search_path(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["options"] = f"{query.get('options', '')} -csearch_path={schema}".strip()
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def fresh_tables(live: Database, label: str) -> FreshTables:
    """A new SQLite file beside the live one (`rebuild/<name>-<label>.db`), or a new schema
    `lapor_rebuild_<label>` in the live PostgreSQL database."""
    if isinstance(live, SqliteDatabase):
        path = live.path.parent / "rebuild" / f"{live.path.stem}-{label}.db"
        db = SqliteDatabase(path, writer_cache_mb=REBUILD_CACHE_MB)

        def drop_file() -> None:
            db.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

        return FreshTables(db, str(path), drop_file)
    if isinstance(live, PostgresDatabase):
        schema = f"lapor_rebuild_{label}"
        with psycopg.connect(live.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        db = PostgresDatabase(_with_search_path(live.url, schema))

        def drop_schema() -> None:
            db.close()
            with psycopg.connect(live.url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))

        return FreshTables(db, f"schema {schema}", drop_schema)
    raise ValueError(f"cannot rebuild beside a {type(live).__name__}")


# -- the report ---------------------------------------------------------------------------------------------


@dataclass
class TableDifference:
    table: str
    live_rows: int | None  # None: the live database has no such table
    rebuilt_rows: int
    only_live: int
    only_rebuilt: int
    examples_live: list[tuple[Any, ...]] = field(default_factory=list)
    examples_rebuilt: list[tuple[Any, ...]] = field(default_factory=list)
    problem: str | None = None  # e.g. the live table lacks a column


@dataclass
class SubscriptionResult:
    name: str
    service: str
    live_checkpoint: int
    rebuilt_checkpoint: int
    handled: int
    parked: int
    seconds: float

    @property
    def lagging(self) -> bool:
        return self.live_checkpoint < self.rebuilt_checkpoint


@dataclass
class RebuildReport:
    location: str
    target_position: int
    events_read: int
    seconds: float  # reading the log and building the fresh tables, up to the head found at the start
    compare_seconds: float  # following live projections that moved on, and comparing every table
    subscriptions: list[SubscriptionResult]
    skipped: list[str]  # reactions, not projections
    tables: list[str]
    differences: list[TableDifference]

    @property
    def identical(self) -> bool:
        return not self.differences

    @property
    def events_per_second(self) -> float:
        return self.events_read / self.seconds if self.seconds > 0 else 0.0


# -- the rebuild --------------------------------------------------------------------------------------------


@dataclass
class _Projection:
    service: str
    runner: SubscriptionRunner
    seconds: float = 0.0  # spent handling (reading the log is shared, so not counted here)


def projections(
    ctx: ServiceContext, services: Sequence[ServiceDefinition]
) -> tuple[list[tuple[str, Subscription]], list[str]]:
    """(service name, subscription) of every projection, and the names of the reactions left out."""
    chosen: list[tuple[str, Subscription]] = []
    skipped: list[str] = []
    for service in services:
        for subscription in service.subscriptions(ctx):
            if subscription.projection:
                chosen.append((service.name, subscription))
            else:
                skipped.append(subscription.name)
    return chosen, skipped


def _read(store: EventStore, after: int, until: int) -> Iterator[list[RecordedEvent]]:
    """Pages of committed events with after < position <= until."""
    position = after + 1
    while position <= until:
        page = [event for event in store.read_all(position, None, READ_PAGE) if event.position <= until]
        if not page:
            return
        yield page
        position = page[-1].position + 1


def _checkpoints(tx: Tx) -> dict[str, int]:
    if not _table_exists(tx, "subscription_checkpoints"):
        return {}
    rows = tx.fetchall("SELECT name, position FROM subscription_checkpoints")
    return {name: int(position) for name, position in rows}


def rebuild(
    ctx: ServiceContext,
    services: Sequence[ServiceDefinition],
    *,
    batch_size: int = DEFAULT_BATCH,
    keep: bool = False,
    progress: Progress | None = None,
) -> RebuildReport:
    """Rebuild every projection of `services` into fresh tables and compare them with the live ones. The fresh
    tables are dropped afterwards unless `keep`."""
    fresh = fresh_tables(ctx.db, ctx.clock.now().strftime("%Y%m%d%H%M%S") + "_" + uuid.uuid4().hex[:6])
    # Millions of short-lived objects and hardly a cycle among them: the cyclic collector's ever longer scans of
    # a heap holding a whole batch cost a third of the run (measured), and reference counting frees the rest.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _rebuild_into(ctx, services, fresh, batch_size, progress)
    finally:
        if collecting:
            gc.enable()
        if keep:
            fresh.db.close()
        else:
            fresh.drop()


def _rebuild_into(
    ctx: ServiceContext,
    services: Sequence[ServiceDefinition],
    fresh: FreshTables,
    batch_size: int,
    progress: Progress | None,
) -> RebuildReport:
    started = time.perf_counter()
    read_only = ReadOnlyStore(ctx.store)
    states = ComplaintStates(read_only, capacity=REBUILD_STATES, history=REBUILD_HISTORY)
    rebuild_ctx = dataclasses.replace(ctx, db=fresh.db, store=read_only, states=states)
    chosen, skipped = projections(rebuild_ctx, services)
    fresh.db.executescript(CHECKPOINT_SCHEMA)
    running = [
        _Projection(service, SubscriptionRunner(rebuild_ctx.store, fresh.db, subscription, clock=ctx.clock,
                                                batch_size=batch_size, max_attempts=1, backoff=0.0,
                                                hold=REBUILD_HOLD))
        for service, subscription in chosen
    ]
    target = ctx.store.head_position()
    read = _feed(ctx.store, running, 0, target, batch_size, progress, states)
    rebuilt_in = time.perf_counter() - started

    # Compare inside one snapshot of the live database: its checkpoints and its rows agree with each other.
    with ctx.db.read() as live:
        live_checkpoints = _checkpoints(live)
        tail_end = max([target, *(live_checkpoints.get(p.runner.name, 0) for p in running)])
        if tail_end > target:  # the live projections moved on while we rebuilt: follow each to its checkpoint
            for projection in running:
                until = max(target, live_checkpoints.get(projection.runner.name, 0))
                read += _feed(ctx.store, [projection], target, until, batch_size, None, states)
        with fresh.db.read() as rebuilt:
            tables = _tables(rebuilt)
            differences = [_compare(live, rebuilt, table) for table in tables]
        results = [
            SubscriptionResult(
                p.runner.name,
                p.service,
                live_checkpoints.get(p.runner.name, 0),
                p.runner.checkpoint(),
                p.runner.handled_count(),
                len(p.runner.parked()),
                p.seconds,
            )
            for p in running
        ]
    return RebuildReport(
        location=fresh.location,
        target_position=target,
        events_read=read,
        seconds=rebuilt_in,
        compare_seconds=time.perf_counter() - started - rebuilt_in,
        subscriptions=results,
        skipped=skipped,
        tables=tables,
        differences=[d for d in differences if d is not None],
    )


def _feed(
    store: EventStore,
    running: Sequence[_Projection],
    after: int,
    until: int,
    batch_size: int,
    progress: Progress | None,
    states: ComplaintStates,
) -> int:
    """Read (after, until] once and hand it to every runner in batches of about `batch_size` events, each runner
    the events of its category."""
    read = 0
    batch: list[RecordedEvent] = []

    def flush() -> None:
        by_category: dict[str, list[RecordedEvent]] = {}
        for event in batch:
            by_category.setdefault(category_of(event.stream), []).append(event)
        through = batch[-1].position
        states.prefold(by_category.get("complaint", []))
        for projection in running:
            category = projection.runner.subscription.category
            started = time.perf_counter()
            projection.runner.feed(batch if category is None else by_category.get(category, []), through)
            projection.seconds += time.perf_counter() - started
        states.keep_latest()
        if progress is not None:
            progress(through, until)
        batch.clear()

    for page in _read(store, after, until):
        read += len(page)
        batch.extend(page)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    for projection in running:  # the rows they still hold
        started = time.perf_counter()
        projection.runner.flush()
        projection.seconds += time.perf_counter() - started
    return read


# -- comparing tables ---------------------------------------------------------------------------------------


def _tables(tx: Tx) -> list[str]:
    if tx.dialect == "sqlite":
        rows = tx.fetchall("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    else:
        rows = tx.fetchall(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
            "ORDER BY table_name"
        )
    return [name for (name,) in rows if name not in BOOKKEEPING_TABLES]


def _table_exists(tx: Tx, table: str) -> bool:
    if tx.dialect == "sqlite":
        return tx.fetchone("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)) is not None
    return (
        tx.fetchone(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?",
            (table,),
        )
        is not None
    )


def _columns(tx: Tx, table: str) -> list[str]:
    if tx.dialect == "sqlite":
        return [row[1] for row in tx.fetchall(f'PRAGMA table_info("{table}")')]
    rows = tx.fetchall(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = ? ORDER BY ordinal_position",
        (table,),
    )
    return [name for (name,) in rows]


def _select(table: str, columns: Sequence[str]) -> str:
    listed = ", ".join(f'"{column}"' for column in columns)
    return f'SELECT {listed} FROM "{table}"'


def _digests(tx: Tx, table: str, columns: Sequence[str]) -> Counter[int]:
    """How often each row occurs, by the row's hash: a large table is streamed, never held. Both sides are hashed
    in this one process, so equal rows have equal hashes."""
    return Counter(hash(tuple(row)) for row in tx.execute(_select(table, columns)))


def _rows_with(tx: Tx, table: str, columns: Sequence[str], digests: Counter[int]) -> list[tuple[Any, ...]]:
    """Up to EXAMPLES rows whose hash is among `digests`."""
    found: list[tuple[Any, ...]] = []
    for row in tx.execute(_select(table, columns)):
        if hash(tuple(row)) in digests:
            found.append(tuple(row))
            if len(found) == EXAMPLES:
                break
    return found


def _compare(live: Tx, rebuilt: Tx, table: str) -> TableDifference | None:
    """None when the live table holds exactly the rebuilt rows (as a multiset)."""
    columns = _columns(rebuilt, table)
    fresh_rows = _digests(rebuilt, table, columns)
    rebuilt_count = sum(fresh_rows.values())
    if not _table_exists(live, table):
        return TableDifference(table, None, rebuilt_count, 0, rebuilt_count, problem="no such live table")
    missing = sorted(set(columns) - set(_columns(live, table)))
    if missing:
        return TableDifference(
            table, None, rebuilt_count, 0, rebuilt_count, problem=f"live table lacks {', '.join(missing)}"
        )
    live_rows = _digests(live, table, columns)
    only_live = live_rows - fresh_rows
    only_rebuilt = fresh_rows - live_rows
    if not only_live and not only_rebuilt:
        return None
    return TableDifference(
        table,
        sum(live_rows.values()),
        rebuilt_count,
        sum(only_live.values()),
        sum(only_rebuilt.values()),
        _rows_with(live, table, columns, only_live),
        _rows_with(rebuilt, table, columns, only_rebuilt),
    )


# -- the command ----------------------------------------------------------------------------------------------


@contextmanager
def _progress_bar(total: int) -> Iterator[Progress]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("rebuilding projections"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("positions"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("rebuild", total=total or 1)

        def advance(position: int, target: int) -> None:
            bar.update(task, completed=min(position, total))

        yield advance
        bar.update(task, completed=total or 1)


def print_report(report: RebuildReport) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"read {report.events_read:,} events up to position {report.target_position:,} in "
        f"{report.seconds:.1f} s ({report.events_per_second:,.0f} events/s) into {report.location}; "
        f"compared in {report.compare_seconds:.1f} s"
    )
    subscriptions = Table(
        "subscription", "service", "handled", "parked", "seconds", "rebuilt at", "live at", title="projections"
    )
    for result in report.subscriptions:
        live = f"{result.live_checkpoint:,}" + (" (behind)" if result.lagging else "")
        subscriptions.add_row(
            result.name, result.service, f"{result.handled:,}", str(result.parked), f"{result.seconds:.1f}",
            f"{result.rebuilt_checkpoint:,}", live,
        )
    console.print(subscriptions)
    if report.skipped:
        console.print(f"left out (reactions, not projections): {', '.join(report.skipped)}")
    if report.identical:
        console.print(f"[green]identical[/green]: {len(report.tables)} tables equal their live counterparts")
        return
    differences = Table("table", "live rows", "rebuilt rows", "only live", "only rebuilt", "note", title="differences")
    for d in report.differences:
        differences.add_row(
            d.table, "-" if d.live_rows is None else f"{d.live_rows:,}", f"{d.rebuilt_rows:,}", f"{d.only_live:,}",
            f"{d.only_rebuilt:,}", d.problem or "",
        )
    console.print(differences)
    for d in report.differences:
        for side, rows in (("live", d.examples_live), ("rebuilt", d.examples_rebuilt)):
            for row in rows:
                console.print(f"  {d.table} only {side}: {row!r}", markup=False)


def run(
    ctx: ServiceContext,
    services: Sequence[ServiceDefinition],
    *,
    batch_size: int = DEFAULT_BATCH,
    keep: bool = False,
    show_progress: bool = True,
    processes: int = 1,
) -> RebuildReport:
    """The rebuild (`rebuild_shared_out`) with a progress bar, its report printed."""
    if show_progress:
        with _progress_bar(ctx.store.head_position()) as progress:
            report = rebuild_shared_out(ctx, services, processes, batch_size=batch_size, keep=keep, progress=progress)
    else:
        report = rebuild_shared_out(ctx, services, processes, batch_size=batch_size, keep=keep)
    print_report(report)
    return report


def rebuild_shared_out(
    ctx: ServiceContext,
    services: Sequence[ServiceDefinition],
    processes: int,
    *,
    batch_size: int = DEFAULT_BATCH,
    keep: bool = False,
    progress: Progress | None = None,
) -> RebuildReport:
    """`rebuild` of `services`, shared out between up to `processes` processes (`share_out`,
    `rebuild_in_processes`); in this one when one is enough or a service cannot be loaded by name there."""
    groups = share_out([service.name for service in services], processes)
    if len(groups) > 1 and all(_loadable(service) for service in services):
        return rebuild_in_processes(ctx.settings.data, groups, batch_size=batch_size, keep=keep, progress=progress)
    return rebuild(ctx, services, batch_size=batch_size, keep=keep, progress=progress)


# -- in several processes -----------------------------------------------------------------------------------

# Seconds each service's projections took per 10^6 events in the last full rebuild measured (docs/performance.md):
# only used to share the services out between processes, longest first. Others count as the middle one.
REBUILD_COST = {"routing": 16.0, "followup": 12.0, "reporting": 10.0, "intake": 2.0}
RESULT_WAIT = 1.0  # seconds between checks that no rebuild process died without a word


def share_out(names: Sequence[str], processes: int) -> list[list[str]]:
    """The services in at most `processes` groups of about equal cost: longest first, each to the cheapest group
    so far (the classic LPT rule). Empty groups are dropped."""
    middle = sorted(REBUILD_COST.values())[len(REBUILD_COST) // 2]
    groups: list[list[str]] = [[] for _ in range(max(1, min(processes, len(names))))]
    costs = [0.0] * len(groups)
    for name in sorted(names, key=lambda n: -REBUILD_COST.get(n, middle)):
        cheapest = costs.index(min(costs))
        groups[cheapest].append(name)
        costs[cheapest] += REBUILD_COST.get(name, middle)
    return [group for group in groups if group]


def _loadable(service: ServiceDefinition) -> bool:
    from lapor.app import SERVICE_NAMES, load_service  # local: the app imports the services, which import us

    return service.name in SERVICE_NAMES and load_service(service.name) is service


def rebuild_in_processes(
    data: Path | None,
    groups: Sequence[Sequence[str]],
    *,
    batch_size: int = DEFAULT_BATCH,
    keep: bool = False,
    progress: Progress | None = None,
) -> RebuildReport:
    """Each group of services rebuilt by a process of its own (spawned, so it reads the same environment, with the
    data directory `data`) into fresh tables of its own, compared there, and the reports merged. Each process
    reads the whole log: reading and folding cost a few µs an event, the projections tens. `progress` sees the
    slowest process's position."""
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    children = [
        context.Process(
            target=_rebuild_group, args=(data, list(group), batch_size, keep, messages, index), name=f"rebuild-{index}"
        )
        for index, group in enumerate(groups)
    ]
    for child in children:
        child.start()
    reached = [0] * len(children)
    reports: dict[int, RebuildReport] = {}
    failures: list[str] = []
    try:
        while len(reports) + len(failures) < len(children):
            try:
                message = messages.get(timeout=RESULT_WAIT)
            except queue.Empty:
                dead = [c.name for i, c in enumerate(children) if i not in reports and c.exitcode not in (None, 0)]
                if dead and messages.empty():
                    failures.append(f"{', '.join(dead)} died without a report")
                    break
                continue
            kind, index, *rest = message
            if kind == "progress":
                reached[index] = rest[0]
                if progress is not None:
                    progress(min(reached), rest[1])
            elif kind == "done":
                reports[index] = rest[0]
                reached[index] = rest[0].target_position
            else:
                failures.append(f"{children[index].name} ({', '.join(groups[index])}): {rest[0]}")
    finally:
        for child in children:
            child.join(None if not failures else RESULT_WAIT)
            if child.exitcode is None:
                child.terminate()
                child.join()
    if failures:
        raise RebuildFailed("; ".join(failures))
    return merge_reports([reports[index] for index in sorted(reports)])


class RebuildFailed(Exception):
    """A rebuild process failed; its message says which and why."""


def _rebuild_group(
    data: Path | None, names: list[str], batch_size: int, keep: bool, messages: Any, index: int
) -> None:
    from lapor.app import load_services  # local: see _loadable
    from lapor.logs import configure_logging
    from lapor.settings import load_settings

    try:
        settings = load_settings(data=data)
        configure_logging(settings.log_level)
        ctx = ServiceContext.open(settings)
        try:
            report = rebuild(
                ctx,
                load_services(names),
                batch_size=batch_size,
                keep=keep,
                progress=lambda position, target: messages.put(("progress", index, position, target)),
            )
        finally:
            ctx.close()
    except BaseException as error:  # reported to the parent, which raises RebuildFailed
        messages.put(("failed", index, "".join(traceback.format_exception_only(error)).strip()))
        raise
    messages.put(("done", index, report))


def merge_reports(reports: Sequence[RebuildReport]) -> RebuildReport:
    """One report for rebuilds that ran side by side: every subscription, table and difference; the slowest
    process's times (they ran at once) and the most events any of them read (each read the whole log)."""
    return RebuildReport(
        location="; ".join(report.location for report in reports),
        target_position=max(report.target_position for report in reports),
        events_read=max(report.events_read for report in reports),
        seconds=max(report.seconds for report in reports),
        compare_seconds=max(report.compare_seconds for report in reports),
        subscriptions=[result for report in reports for result in report.subscriptions],
        skipped=[name for report in reports for name in report.skipped],
        tables=[table for report in reports for table in report.tables],
        differences=[difference for report in reports for difference in report.differences],
    )
