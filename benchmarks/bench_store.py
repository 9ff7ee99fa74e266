"""Event store benchmark (issue 2): durable commits, command-per-event, group commit, replay, growth.

    .venv/bin/python -m benchmarks.bench_store --store sqlite:///var/bench/events.db --events 1000000
    .venv/bin/python -m benchmarks.bench_store --store postgresql://postgres@127.0.0.1:5432/test --schema bench

Measures, on a store that is filled with realistic complaint lifecycles:
- command-per-event from one writer: read the stream, fold it, decide the next event, append with the expected
  version (the work every command endpoint does), in events/s;
- the same from 32 concurrent writer threads (they share commits through group commit), once in this process and
  once spread over `--processes` processes with a store each (they take turns on the store's writer lock);
- on SQLite, those three runs again with the appends sent to a writer process (`lapor.store.writer`), which
  commits every process's appends in shared groups;
- append cost (µs per single-event append) at 10^5 events and again at the full size, to show it stays flat;
- `read_all` + fold of the whole log (the replay a projection rebuild does), in events/s: with CPython's default
  garbage collector, with its first threshold raised, and with it paused as `lapor rebuild` pauses it.
Every commit is durable (SQLite WAL with synchronous=FULL; PostgreSQL with its default synchronous_commit=on).
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from lapor.complaint import ComplaintState, Status, fold, replay
from lapor.store import NO_STREAM, EventStore, NewEvent, open_store
from lapor.store.open import parse_sqlite_url
from lapor.store.writer import WriterProcess
from schemas.events import (
    ComplaintClosed,
    ComplaintDisposed,
    ComplaintResolved,
    ComplaintSubmitted,
    ComplaintVerified,
    DispositionAccepted,
    EventData,
    FeedbackGiven,
    FollowUpPosted,
)

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
METADATA = {"actor": "bench", "role": "admin_national", "correlation_id": "bench"}


def _templates() -> list[tuple[str, dict[str, Any]]]:
    """One valid lifecycle, validated once through the contracts, reused as data templates."""
    lifecycle: list[EventData] = [
        ComplaintSubmitted(
            tracking_id="TEMPLATE",
            kind="pengaduan",
            title="Jalan berlubang di Jl. Frans Seda",
            body="Lubang besar di depan kantor kelurahan sudah dua bulan, sering membuat pengendara jatuh.",
            category="infrastruktur",
            region_code="53.71",
            channel="web",
            anonymous=False,
            confidential=False,
            reporter_ref="pii_benchmarkreference00",
            reporter_token_hash="0" * 64,
            verification_due=T0 + timedelta(days=3),
        ),
        ComplaintVerified(classification="pengaduan", category="infrastruktur", tags=("jalan",)),
        ComplaintDisposed(
            agency_id="pemda-53.71", follow_up_due=T0 + timedelta(days=8), ombudsman_offer_due=T0 + timedelta(days=90)
        ),
        DispositionAccepted(agency_id="pemda-53.71"),
        FollowUpPosted(follow_up_id="fu-1", text="Tim sudah meninjau lokasi; penambalan dijadwalkan minggu depan."),
        ComplaintResolved(resolution="Lubang sudah ditambal.", feedback_due=T0 + timedelta(days=30)),
        FeedbackGiven(satisfied=True, rating=5, comment="Terima kasih."),
        ComplaintClosed(reason="satisfied"),
    ]
    return [(event.event_type(), event.to_data()) for event in lifecycle]


TEMPLATES = _templates()
NEXT_BY_STATUS = {
    None: 0,
    Status.submitted: 1,
    Status.verified: 2,
    Status.disposed: 3,
}


def new_event(step: int, tracking_id: str) -> NewEvent:
    event_type, data = TEMPLATES[step]
    if step == 0:
        data = {**data, "tracking_id": tracking_id}
    return NewEvent(event_type, data, METADATA)


def decide_next(state: ComplaintState | None) -> int | None:
    """The index of the lifecycle event that comes next, None when the complaint is closed."""
    if state is None:
        return 0
    if state.status in NEXT_BY_STATUS:
        return NEXT_BY_STATUS[state.status]
    if state.status is Status.in_progress:
        return 4 if state.follow_up_count == 0 else 5
    if state.status is Status.resolved:
        return 6 if state.feedback is None else 7
    return None


def command(store: EventStore, tracking_id: str) -> bool:
    """One command: read, fold, decide, append with the expected version. False when the complaint is done."""
    stream = f"complaint-{tracking_id}"
    state = fold(store.read_stream(stream))
    step = decide_next(state)
    if step is None:
        return False
    store.append(stream, [new_event(step, tracking_id)], NO_STREAM if state is None else state.version)
    return True


def run_commands(store: EventStore, prefix: str, count: int) -> int:
    """`count` events by command-per-event, walking complaints through their lifecycle one at a time."""
    done = 0
    serial = 0
    while done < count:
        tracking_id = f"{prefix}-{serial}"
        while done < count and command(store, tracking_id):
            done += 1
        serial += 1
    return done


def fill(store: EventStore, target: int, label: str) -> None:
    """Append whole lifecycles (8 events an append) from 8 threads until the log holds `target` events."""
    have = count_events(store)
    missing = max(0, target - have)
    lifecycles = missing // len(TEMPLATES)
    if lifecycles == 0:
        return
    run = uuid.uuid4().hex[:8]
    started = time.perf_counter()

    def append_range(start: int, stop: int) -> None:
        for n in range(start, stop):
            tracking_id = f"F{run}-{n}"
            events = [new_event(step, tracking_id) for step in range(len(TEMPLATES))]
            store.append(f"complaint-{tracking_id}", events, NO_STREAM)

    chunks = 8
    size = -(-lifecycles // chunks)
    with ThreadPoolExecutor(chunks) as pool:
        list(pool.map(lambda c: append_range(c * size, min(lifecycles, (c + 1) * size)), range(chunks)))
    elapsed = time.perf_counter() - started
    print(f"  filled {lifecycles * len(TEMPLATES):,} events to {label} in {elapsed:.1f} s", flush=True)


def count_events(store: EventStore) -> int:
    total = 0
    position = 1
    while True:
        batch = store.read_all(position, None, 50_000)
        if not batch:
            return total
        total += len(batch)
        position = batch[-1].position + 1


def timed(label: str, events: int, work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    elapsed = time.perf_counter() - started
    rate = events / elapsed
    print(f"  {label}: {events:,} events in {elapsed:.2f} s = {rate:,.0f} events/s", flush=True)
    return rate


def append_cost(store: EventStore, label: str, samples: int = 2000) -> float:
    run = uuid.uuid4().hex[:8]
    costs = []
    for n in range(samples):
        event = new_event(0, f"A{run}-{n}")
        started = time.perf_counter()
        store.append(f"complaint-A{run}-{n}", [event], NO_STREAM)
        costs.append(time.perf_counter() - started)
    median = statistics.median(costs) * 1e6
    p99 = statistics.quantiles(costs, n=100)[98] * 1e6
    print(f"  append cost at {label}: median {median:,.0f} µs, p99 {p99:,.0f} µs", flush=True)
    return median


def replay_all(store: EventStore, batch: int = 10_000) -> int:
    states: dict[str, ComplaintState] = {}
    position = 1
    total = 0
    while True:
        events = store.read_all(position, "complaint", batch)
        if not events:
            return total
        states.update(replay(events, states))
        total += len(events)
        position = events[-1].position + 1


def concurrent_commands(store: EventStore, writers: int, per_writer: int) -> None:
    run = uuid.uuid4().hex[:8]
    errors: list[BaseException] = []

    def work(w: int) -> None:
        try:
            run_commands(store, f"C{run}w{w}", per_writer)
        except BaseException as error:  # noqa: BLE001 - reported after the run
            errors.append(error)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _writer_process(url: str, writers: int, per_writer: int, start: Any) -> None:
    with open_store(url) as store:
        start.wait()
        concurrent_commands(store, writers, per_writer)


def concurrent_commands_in_processes(url: str, writers: int, per_writer: int, processes: int, label: str = "") -> float:
    """`writers` threads spread over `processes` processes, each with its own store on the same log (as several
    service processes would write it); returns commands/s from the moment they all start together."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes + 1)
    children = [
        context.Process(target=_writer_process, args=(url, len(range(p, writers, processes)), per_writer, start))
        for p in range(processes)
    ]
    for child in children:
        child.start()
    start.wait()
    started = time.perf_counter()
    for child in children:
        child.join()
    elapsed = time.perf_counter() - started
    if any(child.exitcode != 0 for child in children):
        raise RuntimeError("a writer process failed")
    rate = writers * per_writer / elapsed
    print(
        f"  {label}command-per-event, {writers} writers in {processes} processes: {writers * per_writer:,} events in "
        f"{elapsed:.2f} s = {rate:,.0f} events/s",
        flush=True,
    )
    return rate


def writer_process_runs(url: str, commands: int, writers: int, per_writer: int, processes: int) -> dict[str, float]:
    """The command-per-event runs again with every append sent to a writer process (lapor.store.writer) on the
    same file: 1 writer, `writers` threads in this process, and `writers` threads in `processes` processes."""
    path, _ = parse_sqlite_url(url)
    with WriterProcess(path) as writer:
        with open_store(writer.url) as store:
            single = timed("writer process: command-per-event, 1 writer", commands,
                           lambda: run_commands(store, "WS", commands))
            many = timed(f"writer process: command-per-event, {writers} writers", per_writer * writers,
                         lambda: concurrent_commands(store, writers, per_writer))
        spread = concurrent_commands_in_processes(writer.url, writers, per_writer, processes, "writer process: ")
        print(f"  {writer.stop()}", flush=True)
    return {"single": single, "concurrent": many, f"concurrent_in_{processes}_processes": spread}


def prepare_postgres(url: str, schema: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return schema_url(url, schema)


def schema_url(url: str, schema: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


def replays(store: EventStore) -> tuple[float, float, float]:
    """The whole log replayed three ways: with gc paused (as `lapor rebuild` runs it: the cyclic collector off,
    reference counting still freeing everything), with CPython's first gc threshold raised, and with its default
    gc. The paused run goes first: each replay leaves a larger, more scattered heap to the next."""
    total = count_events(store)
    gc.disable()
    try:
        paused = timed(
            f"read_all + fold of {total:,} events (gc paused, as lapor rebuild)", total, lambda: replay_all(store)
        )
    finally:
        gc.enable()
    # A replay keeps ~10^5 live states; CPython's default thresholds re-walk them over and over.
    thresholds = gc.get_threshold()
    gc.set_threshold(100_000, 50, 100)
    try:
        raised = timed(f"read_all + fold of {total:,} events (gc threshold 100k)", total, lambda: replay_all(store))
    finally:
        gc.set_threshold(*thresholds)
    default_gc = timed(f"read_all + fold of {total:,} events (default gc)", total, lambda: replay_all(store))
    return default_gc, raised, paused


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="sqlite:///var/bench/events.db")
    parser.add_argument("--schema", default="lapor_bench", help="PostgreSQL: a schema to (re)create for the run")
    parser.add_argument("--events", type=int, default=1_000_000, help="size of the log for the growth/replay runs")
    parser.add_argument("--commands", type=int, default=6000, help="events per command-per-event run")
    parser.add_argument("--writers", type=int, default=32)
    parser.add_argument("--processes", type=int, default=2, help="processes for the writers-in-processes run")
    parser.add_argument(
        "--replay-only", action="store_true", help="only replay the store that is there, in this fresh process"
    )
    args = parser.parse_args(argv)
    if args.replay_only:
        url = schema_url(args.store, args.schema) if args.store.startswith("postgres") else args.store
        with open_store(url) as existing:
            default_gc, raised, paused = replays(existing)
        print(f"summary: replay={paused:,.0f}/s (gc threshold 100k {raised:,.0f}/s, default gc {default_gc:,.0f}/s)")
        return 0

    url = args.store
    if url.startswith("postgres"):
        url = prepare_postgres(url, args.schema)
    elif url.startswith("sqlite:///"):
        from pathlib import Path

        path = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    print(f"store: {args.store} ({sys.platform}, durable commits)", flush=True)
    store = open_store(url)
    try:
        first = min(100_000, args.events)
        fill(store, first, f"{first:,}")
        small = append_cost(store, f"{first:,} events")
        single = timed("command-per-event, 1 writer", args.commands, lambda: run_commands(store, "S", args.commands))
        per_writer = max(1, args.commands * 2 // args.writers)
        many = timed(
            f"command-per-event, {args.writers} writers",
            per_writer * args.writers,
            lambda: concurrent_commands(store, args.writers, per_writer),
        )
        spread = concurrent_commands_in_processes(url, args.writers, per_writer, args.processes)
        through_writer = {}
        if url.startswith("sqlite:///"):
            through_writer = writer_process_runs(url, args.commands, args.writers, per_writer, args.processes)
        fill(store, args.events, f"{args.events:,}")
        large = append_cost(store, f"{args.events:,} events")
        default_gc, raised, rate = replays(store)
        print(
            f"summary: single={single:,.0f}/s concurrent={many:,.0f}/s "
            f"concurrent_in_{args.processes}_processes={spread:,.0f}/s replay={rate:,.0f}/s "
            f"(gc threshold 100k {raised:,.0f}/s, default gc {default_gc:,.0f}/s) "
            f"append_median_us small={small:,.0f} large={large:,.0f} (ratio {large / small:.2f})"
            + "".join(f" writer_process_{label}={rate:,.0f}/s" for label, rate in through_writer.items())
        )
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
