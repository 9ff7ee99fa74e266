"""`lapor rebuild`: every projection of every service built again from position 0, beside the live one, and
compared with it.

The projections are the `ServiceDefinition.subscriptions` of the services (those with `projection=True`;
reactions that append events or call out are left out and named). They are built into *fresh* tables — a new
SQLite file beside the live read models, or a new schema in the live PostgreSQL database — so nothing live is
touched, through the same `SubscriptionRunner` code the live ones run on (batch handlers, checkpoints committed
with the rows, parking). The log is read once and each batch is fed to every runner. The services see a store
that refuses appends, so the events of a subscription that wrongly claims to be a projection are parked in the
rebuilt tables (and counted in the report) instead of writing to the log.

With several processes, each builds a *share* of the complaints (`lapor.store.StreamShare`: the store hands it
only its complaint streams, and every directory event) into fresh tables of its own, and the comparison takes
the shares together: a complaint's rows are in exactly one share, the counts of `Subscription.counters` add
up, and the tables of the directory (which every share builds whole) and of subscriptions that are not
`per_stream` (which only the first share runs, on every stream) are taken from the first share.

When the log's head is reached, each rebuilt projection is brought to exactly the live one's checkpoint (read
in the same snapshot as the live tables, so a server running meanwhile does not blur the comparison), and
every table the projections created is compared row by row with the live table of that name. A live
subscription that is behind the log's head is marked as lagging: its differences are those of the lag.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import multiprocessing
import queue
import signal
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from lapor.context import ServiceContext, ServiceDefinition
from lapor.db import Database, PostgresDatabase, SqliteDatabase, Tx, table_columns, table_exists
from lapor.states import ComplaintStates
from lapor.store import (
    EventStore,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamShare,
    UnreadableEvent,
    read_readable,
)
from lapor.store.model import AppendResult, category_of
from lapor.store.postgres import network_timeouts
from lapor.store.sqlite import connect
from lapor.subscriptions import CHECKPOINT_SCHEMA, Subscription, SubscriptionRunner, committed_checkpoints

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

log = logging.getLogger("lapor.rebuild")

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
# Shares at most, whatever `--processes` says: SQLite attaches at most 10 databases to the connection that
# compares them, and more processes than cores only take turns.
MAX_SHARES = 8
SHARED_CATEGORY = "complaint"  # what a rebuild in several processes shares out; each reads every other category
BOOKKEEPING_TABLES = frozenset({"subscription_checkpoints", "parked_events"})
EXAMPLES = 3  # differing rows shown per table and side

Progress = Callable[[int, int], None]  # (position reached, target position)


class AppendDuringRebuild(RuntimeError):
    """A rebuilt projection tried to append: the handler's fault, parked like any other (not a `StoreError`, which
    a subscription takes for the store being out of reach and tries again from its checkpoint, for ever here)."""


class ReadOnlyStore(EventStore):
    """The live store, for reading only: what a rebuilt projection gets as `ctx.store`. With a `share`, it reads
    only that share of the complaints (and everything else)."""

    def __init__(self, store: EventStore, share: StreamShare | None = None) -> None:
        self._store = store
        self._share = share
        self.url = store.url
        self.vault = store.vault

    def append(self, stream: str, events: Sequence[NewEvent], expected_version: ExpectedVersion = -2) -> AppendResult:
        raise AppendDuringRebuild(
            f"a rebuild only reads the log, but a projection tried to append to {stream}: "
            "mark its subscription projection=False"
        )

    def read_stream(self, stream: str, from_version: int = 0, limit: int | None = None) -> list[RecordedEvent]:
        return self._store.read_stream(stream, from_version, limit)

    def read_all(
        self, from_position: int = 0, category: str | None = None, limit: int = 1000, share: StreamShare | None = None
    ) -> list[RecordedEvent]:
        return self._store.read_all(from_position, category, limit, self._share if share is None else share)

    def head_position(self, *, wait: float | None = None) -> int:
        return self._store.head_position(wait=wait)

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
    name: str  # SQLite: the file's path; PostgreSQL: the schema
    drop: Callable[[], None]
    # The folder made for the file (`<data>/rebuild/`), if this one made it: removed with the fresh tables when it
    # is left empty (session 31: a failed, interrupted or unkept rebuild left an empty `rebuild/` behind).
    made: Path | None = None


def _with_search_path(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["options"] = f"{query.get('options', '')} -csearch_path={schema}".strip()
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def fresh_tables(live: Database, label: str, *, existing: bool = False) -> FreshTables:
    """A new SQLite file beside the live one (`rebuild/<name>-<label>.db`), or a new schema
    `lapor_rebuild_<label>` in the live PostgreSQL database. Refused (`FileExistsError`, psycopg's `DuplicateSchema`)
    where anything of that name is there already: it is not this rebuild's to fill and then drop (session 32: it
    was taken, and dropped afterwards). `existing`: the ones a rebuild made for that label, opened by one of its
    processes. What this made is removed again when it fails (the folder, the file, the schema)."""
    if isinstance(live, SqliteDatabase):
        path = live.path.parent / "rebuild" / f"{live.path.stem}-{label}.db"
        folder = None if existing or path.parent.exists() else path.parent

        def drop_file() -> None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

        if not existing:
            path.parent.mkdir(parents=True, exist_ok=True)
            with _undone_if_failed(lambda: _remove_if_empty(folder)):
                path.open("x").close()

        def undo() -> None:
            if not existing:
                drop_file()
                _remove_if_empty(folder)

        with _undone_if_failed(undo):
            db = SqliteDatabase(path, writer_cache_mb=REBUILD_CACHE_MB)

        def close_and_drop_file() -> None:
            db.close()
            drop_file()

        return FreshTables(db, str(path), str(path), close_and_drop_file, folder)
    if isinstance(live, PostgresDatabase):
        schema = f"lapor_rebuild_{label}"

        def drop_schema() -> None:
            with psycopg.connect(network_timeouts(live.url), autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

        if not existing:
            with psycopg.connect(network_timeouts(live.url), autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        with _undone_if_failed(lambda: None if existing else drop_schema()):
            # Its bulk writes (rows held by the hundred thousand) wait for their answers for as long as they take.
            schema_db = PostgresDatabase(_with_search_path(live.url, schema), answer_timeout=None)

        def close_and_drop_schema() -> None:
            schema_db.close()
            drop_schema()

        return FreshTables(schema_db, f"schema {schema}", schema, close_and_drop_schema)
    raise ValueError(f"cannot rebuild beside a {type(live).__name__}")


@contextmanager
def _undone_if_failed(undo: Callable[[], None]) -> Iterator[None]:
    """`undo` when the block fails; the block's error is the one raised (one of `undo`'s own is logged)."""
    try:
        yield
    except BaseException:
        try:
            undo()
        except _DATABASE_FAILED as error:
            log.warning("could not remove what a rebuild made before it failed: %s", _failure(error))
        raise


def _remove_if_empty(folder: Path | None) -> None:
    """Remove `folder`, which a rebuild made, if it is there and empty: a kept rebuild's files or another's stay."""
    if folder is not None:
        with suppress(OSError):
            folder.rmdir()


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
    shares: int = 1  # processes that each built a share of the complaints

    @property
    def identical(self) -> bool:
        return not self.differences

    @property
    def events_per_second(self) -> float:
        return self.events_read / self.seconds if self.seconds > 0 else 0.0


# -- building -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Combine:
    """How the shares' rows of one table make up the live table."""

    split: bool  # each share holds the rows of its streams (else the first share holds them all)
    counter: str | None = None  # of a split table: shares' rows alike but for this column add up


@dataclass
class _Projection:
    service: str
    runner: SubscriptionRunner
    every_stream: bool  # runs on every stream of its category, though the process builds a share
    seconds: float = 0.0  # spent handling (reading the log is shared, so not counted here)


@dataclass(frozen=True)
class _Layout:
    """What a share's projections are, as the parent needs it to put the shares together (picklable)."""

    skipped: list[str]  # reactions, not projections
    tables: dict[str, Combine]  # the tables the projections created
    repeated: frozenset[str]  # the projections every share runs on the same events (of other categories)


@dataclass
class _Runners:
    running: list[_Projection]
    states: ComplaintStates
    layout: _Layout


@dataclass
class _Built:
    """What building one share (or the whole) reports back: picklable, for a rebuild process's parent."""

    share: StreamShare | None
    seconds: float
    own_events: int  # events of the shared category that were this share's
    other_events: int  # events of every other category (each share reads them all)
    results: list[SubscriptionResult]  # live_checkpoint not yet known: 0
    layout: _Layout


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


def _on_every_stream(subscription: Subscription, category: str) -> bool:
    """Whether a rebuild in shares of `category` runs `subscription` in the first share only, on every stream: it
    is not `per_stream`, or it reads every category (and would see the directory in every share)."""
    return subscription.category is None or (subscription.category == category and not subscription.per_stream)


def _runners(
    ctx: ServiceContext, services: Sequence[ServiceDefinition], fresh: FreshTables, share: StreamShare | None,
    batch_size: int,
) -> _Runners:
    """A runner on `fresh` for every projection this share builds, with the tables each one created."""
    read_only = ReadOnlyStore(ctx.store, share)
    states = ComplaintStates(read_only, capacity=REBUILD_STATES, history=REBUILD_HISTORY)
    rebuild_ctx = dataclasses.replace(ctx, db=fresh.db, store=read_only, states=states)
    chosen, skipped = projections(rebuild_ctx, services)
    fresh.db.executescript(CHECKPOINT_SCHEMA)
    running: list[_Projection] = []
    tables: dict[str, Combine] = {}
    repeated: set[str] = set()
    for service, subscription in chosen:
        shared = share is not None and subscription.category in (None, share.category)
        if share is not None and not shared:
            repeated.add(subscription.name)
        every_stream = share is not None and _on_every_stream(subscription, share.category)
        if every_stream and share is not None and not share.first:
            continue
        store = ReadOnlyStore(ctx.store) if every_stream else read_only
        with fresh.db.read() as tx:
            before = set(_tables(tx))
        runner = SubscriptionRunner(store, fresh.db, subscription, clock=ctx.clock, batch_size=batch_size,
                                    max_attempts=1, backoff=0.0, hold=REBUILD_HOLD)
        with fresh.db.read() as tx:
            created = set(_tables(tx)) - before
        split = shared and not every_stream
        for table in created:
            tables[table] = Combine(split, subscription.counters.get(table) if split else None)
        running.append(_Projection(service, runner, every_stream))
    return _Runners(running, states, _Layout(skipped, tables, frozenset(repeated)))


def _build(
    ctx: ServiceContext, services: Sequence[ServiceDefinition], fresh: FreshTables, share: StreamShare | None,
    target: int, batch_size: int, progress: Progress | None,
) -> _Built:
    started = time.perf_counter()
    runners = _runners(ctx, services, fresh, share, batch_size)
    own, other = _feed(ctx.store, runners.running, 0, target, batch_size, progress, runners.states, share)
    results = [
        SubscriptionResult(p.runner.name, p.service, 0, p.runner.checkpoint(), p.runner.handled_count(),
                           len(p.runner.parked()), p.seconds)
        for p in runners.running
    ]
    return _Built(share, time.perf_counter() - started, own, other, results, runners.layout)


def _read(
    store: EventStore, after: int, until: int, share: StreamShare | None
) -> Iterator[tuple[list[RecordedEvent], UnreadableEvent | None]]:
    """Pages of committed events with after < position <= until (of `share`, when given), each with None; or, where
    an event cannot be read, the events before it and that one, which the runners park as the live ones do."""
    position = after + 1
    while position <= until:
        read, unreadable = read_readable(store, position, None, READ_PAGE, share)
        page = [event for event in read if event.position <= until]
        if unreadable is not None and unreadable.position > until:
            unreadable = None
        if not page and unreadable is None:
            return
        yield page, unreadable
        position = (page[-1].position if unreadable is None else unreadable.position) + 1


def _feed(
    store: EventStore,
    running: Sequence[_Projection],
    after: int,
    until: int,
    batch_size: int,
    progress: Progress | None,
    states: ComplaintStates,
    share: StreamShare | None,
) -> tuple[int, int]:
    """Read (after, until] once and hand it to every runner in batches of about `batch_size` events, each runner
    the events of its category (of the share, unless it runs on every stream). Returns how many events of the
    share's category were the share's, and how many of other categories were read."""
    # The store drops the other shares' events before decoding them, unless a runner here needs them too: then
    # they are read and sifted here.
    sifting = share is not None and any(p.every_stream for p in running)
    shared = None if share is None else share.category
    counts = [0, 0]
    batch: list[RecordedEvent] = []

    def flush() -> None:
        whole: dict[str, list[RecordedEvent]] = {}
        for event in batch:
            whole.setdefault(category_of(event.stream), []).append(event)
        mine = whole
        if sifting:
            assert share is not None
            mine = {**whole, share.category: [e for e in whole.get(share.category, []) if share.holds(e.stream)]}
        counts[0] += len(mine.get(shared, [])) if shared else 0
        counts[1] += sum(len(events) for category, events in whole.items() if category != shared)
        through = batch[-1].position
        states.prefold(mine.get("complaint", []))
        for projection in running:
            category = projection.runner.subscription.category
            # A projection reading every category reads every stream too, in a share (see `_runners`).
            events = batch if category is None else (whole if projection.every_stream else mine).get(category, [])
            started = time.perf_counter()
            projection.runner.feed(events, through)
            projection.seconds += time.perf_counter() - started
        states.keep_latest()
        if progress is not None:
            progress(through, until)
        batch.clear()

    for page, unreadable in _read(store, after, until, None if sifting else share):
        batch.extend(page)
        if len(batch) >= batch_size or (unreadable is not None and batch):
            flush()
        if unreadable is not None:
            for projection in running:
                if _handed(projection, unreadable, share):
                    projection.runner.park_unreadable(unreadable)
    if batch:
        flush()
    for projection in running:  # up to `until` (a share's last event may come before it), with the rows held
        started = time.perf_counter()
        projection.runner.feed([], until)
        projection.runner.flush()
        projection.seconds += time.perf_counter() - started
    return counts[0], counts[1]


def _handed(projection: _Projection, unreadable: UnreadableEvent, share: StreamShare | None) -> bool:
    """Whether `_feed` would hand `projection` the event that cannot be read, were it readable (by its stream's
    category and share; one whose stream cannot be read either goes to every projection of its category's kind)."""
    category, stream = projection.runner.subscription.category, unreadable.stream
    if category is None:
        return True
    if unreadable.category not in (None, category):
        return False
    return share is None or projection.every_stream or stream is None or share.holds(stream)


# -- in this process ----------------------------------------------------------------------------------------


def rebuild(
    ctx: ServiceContext,
    services: Sequence[ServiceDefinition],
    *,
    batch_size: int = DEFAULT_BATCH,
    keep: bool = False,
    progress: Progress | None = None,
) -> RebuildReport:
    """Rebuild every projection of `services` in this process into fresh tables and compare them with the live
    ones. The fresh tables are dropped afterwards unless `keep`."""
    made: list[FreshTables] = []
    with _dropped_unless_kept(made, keep), _collector_paused():
        fresh = fresh_tables(ctx.db, _label(ctx))  # inside: its failure said in a line too (session 32)
        made.append(fresh)
        target = ctx.store.head_position()
        built = _build(ctx, services, fresh, None, target, batch_size, progress)
        return _finish(ctx, services, [fresh], [built], target, batch_size)


# What a database failing under a rebuild raises (a lost connection, a full disk, a damaged file): said in a line
# (`RebuildFailed`), like a rebuild process's failure, where it was a traceback.
_DATABASE_FAILED = (OSError, sqlite3.Error, psycopg.Error)


def _failure(error: BaseException) -> str:
    """An error of a rebuild (or of one of its processes) in one line, with what to do when the database failed."""
    said = f"{type(error).__name__}: {' '.join(str(error).split())}"
    if isinstance(error, _DATABASE_FAILED):
        return f"the database failed ({said}); nothing live was changed: run the rebuild again once it is fixed"
    return said


@contextmanager
def _dropped_unless_kept(fresh: Sequence[FreshTables], keep: bool) -> Iterator[None]:
    """Drops the fresh tables after the block, unless `keep` and it succeeded: a half-built table would look like a
    rebuild's. A database failing in the block is a `RebuildFailed` saying why in a line."""
    try:
        yield
    except _DATABASE_FAILED as error:
        left = _drop_all(fresh)
        raise RebuildFailed(_failure(error) + (f"; drop {', '.join(left)} by hand" if left else "")) from error
    except BaseException:
        _drop_all(fresh)
        raise
    if keep:
        for tables in fresh:
            tables.db.close()
    else:
        left = _drop_all(fresh)
        if left:
            raise RebuildFailed(f"could not drop the fresh tables: drop {', '.join(left)} by hand")


def _drop_all(fresh: Sequence[FreshTables]) -> list[str]:
    """Drop every one of the fresh tables that can be; the locations of those that could not."""
    left = []
    for tables in fresh:
        try:
            tables.drop()
        except _DATABASE_FAILED as error:
            log.warning("could not drop the fresh tables at %s: %s", tables.location, _failure(error))
            left.append(tables.location)
    for tables in fresh:  # only once every share's file is gone
        _remove_if_empty(tables.made)
    return left


def _label(ctx: ServiceContext) -> str:
    return ctx.clock.now().strftime("%Y%m%d%H%M%S") + "_" + uuid.uuid4().hex[:6]


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Millions of short-lived objects and hardly a cycle among them: the cyclic collector's ever longer scans of
    a heap holding a whole batch cost a third of the run (measured), and reference counting frees the rest."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _finish(
    ctx: ServiceContext,
    services: Sequence[ServiceDefinition],
    shares: Sequence[FreshTables],
    built: Sequence[_Built],
    target: int,
    batch_size: int,
) -> RebuildReport:
    """Bring every share to the live checkpoints and compare the shares, taken together, with the live tables,
    inside one snapshot of the live database (its checkpoints and its rows agree with each other)."""
    started = time.perf_counter()
    layout = built[0].layout  # the first share runs every projection
    with ctx.db.read() as live:
        live.answer_within(None, "lapor rebuild's comparison")  # every live table read whole: as long as it takes
        live_checkpoints = committed_checkpoints(live)
        results = [
            _follow(ctx, services, fresh, one, target, live_checkpoints, batch_size)
            for fresh, one in zip(shares, built, strict=True)
        ]
        with _rebuilt_view(ctx.db, shares) as (rebuilt, prefixes):
            tables = _tables(rebuilt)
            differences = [
                _compare(live, rebuilt, table, layout.tables.get(table, Combine(split=False)), prefixes)
                for table in tables
            ]
    return RebuildReport(
        location="; ".join(fresh.location for fresh in shares),
        target_position=target,
        events_read=sum(one.own_events for one in built) + built[0].other_events,
        seconds=max(one.seconds for one in built),
        compare_seconds=time.perf_counter() - started,
        subscriptions=_merged(results, live_checkpoints, layout.repeated),
        skipped=layout.skipped,
        tables=tables,
        differences=[d for d in differences if d is not None],
        shares=len(shares),
    )


def _follow(
    ctx: ServiceContext,
    services: Sequence[ServiceDefinition],
    fresh: FreshTables,
    built: _Built,
    target: int,
    live_checkpoints: dict[str, int],
    batch_size: int,
) -> list[SubscriptionResult]:
    """The share's results, after bringing each of its projections whose live one moved on past `target` during
    the rebuild to that checkpoint."""
    behind = {result.name for result in built.results if live_checkpoints.get(result.name, 0) > target}
    if not behind:
        return built.results
    runners = _runners(ctx, services, fresh, built.share, batch_size)
    followed = {p.runner.name: p for p in runners.running if p.runner.name in behind}
    for projection in followed.values():
        _feed(ctx.store, [projection], target, live_checkpoints[projection.runner.name], batch_size, None,
              runners.states, built.share)
    return [
        dataclasses.replace(result, rebuilt_checkpoint=p.runner.checkpoint(), handled=p.runner.handled_count(),
                            parked=len(p.runner.parked()), seconds=result.seconds + p.seconds)
        if (p := followed.get(result.name)) is not None else result
        for result in built.results
    ]


def _merged(
    results: Sequence[list[SubscriptionResult]], live_checkpoints: dict[str, int], repeated: frozenset[str]
) -> list[SubscriptionResult]:
    """One result per subscription over the shares: what they handled and parked together (once, for one that
    every share runs on the same events), the longest time (they ran at once), the checkpoint all of them
    reached."""
    merged: dict[str, SubscriptionResult] = {}
    for share in results:
        for result in share:
            seen = merged.get(result.name)
            if seen is None:
                merged[result.name] = dataclasses.replace(result, live_checkpoint=live_checkpoints.get(result.name, 0))
            else:
                if result.name not in repeated:
                    seen.handled += result.handled
                    seen.parked += result.parked
                seen.seconds = max(seen.seconds, result.seconds)
                seen.rebuilt_checkpoint = min(seen.rebuilt_checkpoint, result.rebuilt_checkpoint)
    return list(merged.values())


# -- comparing tables ---------------------------------------------------------------------------------------


@contextmanager
def _rebuilt_view(live: Database, shares: Sequence[FreshTables]) -> Iterator[tuple[Tx, list[str | None]]]:
    """A read of the fresh tables with the first share's as its own tables and every other share's reachable by
    a prefix (an attached SQLite file, or a schema): (the read, each share's prefix, None for the first)."""
    if len(shares) == 1:
        with shares[0].db.read() as tx:
            yield tx, [None]
        return
    prefixes: list[str | None] = [None]
    if isinstance(live, SqliteDatabase):
        conn = connect(shares[0].name, readonly=True)
        try:
            for index, fresh in enumerate(shares[1:], start=1):
                conn.execute(f"ATTACH DATABASE ? AS share{index}", (fresh.name,))
                prefixes.append(f"share{index}")
            conn.execute("BEGIN")
            yield Tx(conn, "sqlite"), prefixes
        finally:
            conn.close()
        return
    with psycopg.connect(network_timeouts(_with_search_path(live.url, shares[0].name)), autocommit=True) as pg:
        prefixes += [fresh.name for fresh in shares[1:]]
        pg.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield Tx(pg, "postgresql"), prefixes


def _tables(tx: Tx) -> list[str]:
    if tx.dialect == "sqlite":
        rows = tx.fetchall("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    else:
        rows = tx.fetchall(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
            "ORDER BY table_name"
        )
    return [name for (name,) in rows if name not in BOOKKEEPING_TABLES]


def _listed(columns: Sequence[str]) -> str:
    return ", ".join(f'"{column}"' for column in columns)


def _source(table: str, columns: Sequence[str], combine: Combine, prefixes: Sequence[str | None]) -> str:
    """What to select the rebuilt rows of `table` from: the first share's table, or all shares' rows together
    (the rows of a counter added up)."""
    if not combine.split or len(prefixes) == 1:
        return f'"{table}"'
    union = " UNION ALL ".join(
        f'SELECT {_listed(columns)} FROM ' + (f'"{prefix}"."{table}"' if prefix else f'"{table}"')
        for prefix in prefixes
    )
    if combine.counter is None:
        return f"({union}) AS shares"
    totals = ", ".join(
        f'CAST(sum("{column}") AS BIGINT) AS "{column}"' if column == combine.counter else f'"{column}"'
        for column in columns
    )
    grouped = _listed([column for column in columns if column != combine.counter])
    return f"(SELECT {totals} FROM ({union}) AS shares GROUP BY {grouped}) AS counted"


def _select(source: str, columns: Sequence[str]) -> str:
    return f"SELECT {_listed(columns)} FROM {source}"


def _digests(tx: Tx, source: str, columns: Sequence[str]) -> Counter[int]:
    """How often each row occurs, by the row's hash: a large table is streamed, never held. Both sides are hashed
    in this one process, so equal rows have equal hashes."""
    return Counter(hash(tuple(row)) for row in tx.execute(_select(source, columns)))


def _rows_with(tx: Tx, source: str, columns: Sequence[str], digests: Counter[int]) -> list[tuple[Any, ...]]:
    """Up to EXAMPLES rows whose hash is among `digests`."""
    found: list[tuple[Any, ...]] = []
    for row in tx.execute(_select(source, columns)):
        if hash(tuple(row)) in digests:
            found.append(tuple(row))
            if len(found) == EXAMPLES:
                break
    return found


def _compare(
    live: Tx, rebuilt: Tx, table: str, combine: Combine, prefixes: Sequence[str | None]
) -> TableDifference | None:
    """None when the live table holds exactly the rebuilt rows (as a multiset)."""
    columns = table_columns(rebuilt, table)
    source = _source(table, columns, combine, prefixes)
    fresh_rows = _digests(rebuilt, source, columns)
    rebuilt_count = sum(fresh_rows.values())
    if not table_exists(live, table):
        return TableDifference(table, None, rebuilt_count, 0, rebuilt_count, problem="no such live table")
    missing = sorted(set(columns) - set(table_columns(live, table)))
    if missing:
        return TableDifference(
            table, None, rebuilt_count, 0, rebuilt_count, problem=f"live table lacks {', '.join(missing)}"
        )
    live_rows = _digests(live, f'"{table}"', columns)
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
        _rows_with(live, f'"{table}"', columns, only_live),
        _rows_with(rebuilt, source, columns, only_rebuilt),
    )


# -- the command ----------------------------------------------------------------------------------------------


@contextmanager
def _progress_bar(total: int) -> Iterator[Progress]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from lapor.terminal import output_console

    columns = (
        TextColumn("rebuilding projections"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("positions"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False, console=output_console()) as bar:
        task = bar.add_task("rebuild", total=total or 1)

        def advance(position: int, target: int) -> None:
            bar.update(task, completed=min(position, total))

        yield advance
        bar.update(task, completed=total or 1)


# Wider than any table the report prints: the width its tables are measured at, whole.
_UNBOUNDED_WIDTH = 10_000


def _print_whole(console: Console, table: Table) -> None:
    """Print `table` with every cell whole. Rich fits a table to the console's width by cutting what does not fit
    with an ellipsis: off a terminal (a log, a pipe, cron's mail) that is 80 columns, so the differences named
    `intake_rec…` twice for two tables, and `reporting.c…` / `reporting.d…` for the subscriptions (session 31).
    Off a terminal the table is printed at its own width; on one, a cell too long for its column folds onto the
    next line instead."""
    for column in table.columns:
        column.overflow = "fold"
    if console.is_terminal:
        console.print(table)
        return
    natural = console.measure(table, options=console.options.update_width(_UNBOUNDED_WIDTH)).maximum
    width = console.width
    console.width = max(width, natural)
    try:
        console.print(table)
    finally:
        console.width = width


def print_report(report: RebuildReport) -> None:
    from rich.table import Table

    from lapor.terminal import output_console

    console = output_console()
    by = f" by {report.shares} processes, each a share of the complaints," if report.shares > 1 else ""
    console.print(  # soft_wrap: one line, never broken inside a path the operator copies (the kept tables)
        f"read {report.events_read:,} events up to position {report.target_position:,}{by} in "
        f"{report.seconds:.1f} s ({report.events_per_second:,.0f} events/s) into {report.location}; "
        f"compared in {report.compare_seconds:.1f} s", soft_wrap=True, markup=False,
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
    _print_whole(console, subscriptions)
    if report.skipped:
        console.print(f"left out (reactions, not projections): {', '.join(report.skipped)}", soft_wrap=True)
    if report.identical:
        console.print(f"[green]identical[/green]: {len(report.tables)} tables equal their live counterparts")
        return
    differences = Table("table", "live rows", "rebuilt rows", "only live", "only rebuilt", "note", title="differences")
    for d in report.differences:
        differences.add_row(
            d.table, "-" if d.live_rows is None else f"{d.live_rows:,}", f"{d.rebuilt_rows:,}", f"{d.only_live:,}",
            f"{d.only_rebuilt:,}", d.problem or "",
        )
    _print_whole(console, differences)
    for d in report.differences:
        for side, rows in (("live", d.examples_live), ("rebuilt", d.examples_rebuilt)):
            for row in rows:
                console.print(f"  {d.table} only {side}: {row!r}", markup=False, soft_wrap=True)  # a row a line


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
    """`rebuild` of `services`, the complaints shared out between up to `processes` processes (at most
    MAX_SHARES; `rebuild_in_shares`); in this one when one is asked for or a service cannot be loaded by name in
    another process."""
    shares = min(processes, MAX_SHARES)
    if shares > 1 and all(_loadable(service) for service in services):
        return rebuild_in_shares(ctx, services, shares, batch_size=batch_size, keep=keep, progress=progress)
    return rebuild(ctx, services, batch_size=batch_size, keep=keep, progress=progress)


# -- in several processes -----------------------------------------------------------------------------------

RESULT_WAIT = 1.0  # seconds between checks that no rebuild process died without a word
# The first share's size beside the others' when it also runs the projections that are not per stream (reading
# and sifting every complaint): measured on the 10^6-event benchmark, where it then took ~7 s more of ~32.
FIRST_SHARE_WEIGHT = 0.75


def _loadable(service: ServiceDefinition) -> bool:
    from lapor.app import SERVICE_NAMES, load_service  # local: the app imports the services, which import us

    return service.name in SERVICE_NAMES and load_service(service.name) is service


class RebuildFailed(Exception):
    """A rebuild process failed; its message says which and why."""


def rebuild_in_shares(
    ctx: ServiceContext,
    services: Sequence[ServiceDefinition],
    count: int,
    *,
    batch_size: int = DEFAULT_BATCH,
    keep: bool = False,
    progress: Progress | None = None,
) -> RebuildReport:
    """Each of `count` shares of the complaints built by a process of its own (spawned, so it reads the same
    environment, with the data directory of `ctx`) into fresh tables of its own, up to the head found now; then,
    here, followed to the live checkpoints and compared, taken together, with the live tables. `progress` sees
    the slowest process's position. The services must be loadable by name (`lapor.app.load_services`)."""
    label = _label(ctx)
    target = ctx.store.head_position()
    chosen, _ = projections(ctx, services)
    # The first share also runs what is not per stream, on every stream: it takes fewer complaints.
    sifts = any(_on_every_stream(subscription, SHARED_CATEGORY) for _, subscription in chosen)
    shares = StreamShare.split([FIRST_SHARE_WEIGHT if sifts else 1.0] + [1.0] * (count - 1), SHARED_CATEGORY)
    fresh: list[FreshTables] = []
    with _dropped_unless_kept(fresh, keep), _collector_paused():
        for index in range(count):  # made here, so a later share's failing drops the earlier ones (session 32)
            fresh.append(fresh_tables(ctx.db, f"{label}_{index}"))
        built = _build_in_processes(ctx.settings.data, [s.name for s in services], shares, label, target,
                                    batch_size, progress)
        return _finish(ctx, services, fresh, built, target, batch_size)


def _build_in_processes(
    data: Path | None, names: list[str], shares: Sequence[StreamShare], label: str, target: int, batch_size: int,
    progress: Progress | None,
) -> list[_Built]:
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    count = len(shares)
    children = [
        context.Process(
            target=_build_share, args=(data, names, index, share, label, target, batch_size, messages),
            name=f"rebuild-{index + 1}-of-{count}",
        )
        for index, share in enumerate(shares)
    ]
    with _deaf_to_ctrl_c():
        for child in children:
            child.start()
    reached = [0] * count
    built: dict[int, _Built] = {}
    failures: list[str] = []
    stopped = True  # by Ctrl-C, or an error here: the processes are ended at once, not awaited
    try:
        while len(built) + len(failures) < count:
            try:
                message = messages.get(timeout=RESULT_WAIT)
            except queue.Empty:
                dead = [c.name for i, c in enumerate(children) if i not in built and c.exitcode not in (None, 0)]
                if dead and messages.empty():
                    failures.append(f"{', '.join(dead)} died without a report")
                    break
                continue
            kind, index, *rest = message
            if kind == "progress":
                reached[index] = rest[0]
                if progress is not None:
                    progress(min(reached), target)
            elif kind == "done":
                built[index] = rest[0]
                reached[index] = target
            else:
                failures.append(f"{children[index].name}: {rest[0]}")
        stopped = False
    finally:
        for child in children:
            if stopped:
                child.terminate()
            child.join(None if not failures else RESULT_WAIT)
            if child.exitcode is None:
                child.terminate()
                child.join()
    if failures:
        raise RebuildFailed("; ".join(failures))
    return [built[index] for index in range(count)]


@contextmanager
def _deaf_to_ctrl_c() -> Iterator[None]:
    """The processes started in the block never see Ctrl-C, which the terminal sends to every process of its
    foreground group: this one hears it, ends them and drops their fresh tables. Each printed a traceback from
    wherever the signal landed in it, during its imports too (session 32). SIGINT is blocked here while they
    start, so they inherit it blocked (as the standard library starts its resource tracker); one arriving
    meanwhile is this process's once the block ends."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _build_share(
    data: Path | None, names: list[str], index: int, share: StreamShare, label: str, target: int, batch_size: int,
    messages: Any,
) -> None:
    from lapor.app import load_services  # local: see _loadable
    from lapor.logs import configure_logging
    from lapor.settings import load_settings

    try:
        settings = load_settings(data=data)
        configure_logging(settings.log_level)
        ctx = ServiceContext.open(settings)
        try:
            fresh = fresh_tables(ctx.db, f"{label}_{index}", existing=True)
            try:
                with _collector_paused():
                    built = _build(ctx, load_services(names), fresh, share, target, batch_size,
                                   lambda position, until: messages.put(("progress", index, position)))
            finally:
                fresh.db.close()
        finally:
            ctx.close()
    except BaseException as error:  # reported to the parent, which raises RebuildFailed
        messages.put(("failed", index, _failure(error)))
        raise
    messages.put(("done", index, built))
