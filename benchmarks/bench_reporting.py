"""Reporting benchmarks: `lapor rebuild` throughput, and how soon an append shows in the national view under load.

    .venv/bin/python benchmarks/bench_reporting.py generate --data /tmp/lapor-bench-reporting   # 1,000,000 events
    .venv/bin/python benchmarks/bench_reporting.py rebuild  --data /tmp/lapor-bench-reporting
    .venv/bin/python benchmarks/bench_reporting.py latency  --data /tmp/lapor-bench-reporting

generate: about 110,000 complaint histories from `tests/reporting/lifecycles.py` (verified, disposed, returned and
    disposed again, escalated, followed up, resolved, reopened, closed, archived...), arriving at the national rate
    (2 million reports a year: ~5,500 a day) and lasting weeks each, so the log interleaves them as production
    would. Appended in time order through the store's own `append` (16 threads, group commit), each event
    recorded at its simulated moment.
rebuild: the live projections first catch up (as a first start would), then `lapor.rebuild.rebuild` rebuilds
    every projection of every service from position 0 into fresh tables and compares: events/s overall and
    per subscription, and whether rebuilt equals live. `--processes 2` shares the complaints out between two
    processes, as `lapor rebuild --processes 2` does.
latency: `lapor up`'s app on that store under uvicorn, a writer appending complaint events at --rate events/s
    in the same process (as intake, routing and followup would), and a probe that appends a marker and polls
    GET /api/reports/national until `as_of.position` reaches it: p50/p95/p99 of append-to-visible, and the
    national view's own response time.

Figures, not assertions: they depend on the machine (and on what else runs on it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sqlite3
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lapor.app import create_app, load_services  # noqa: E402
from lapor.auth import TokenService  # noqa: E402
from lapor.clock import ManualClock, SystemClock  # noqa: E402
from lapor.context import ServiceContext  # noqa: E402
from lapor.policy import Sp4nPolicy  # noqa: E402
from lapor.principal import Role  # noqa: E402
from lapor.rebuild import DEFAULT_BATCH, rebuild_shared_out  # noqa: E402
from lapor.settings import load_settings  # noqa: E402
from lapor.store import NewEvent, WrongExpectedVersion, open_store  # noqa: E402
from lapor.subscriptions import SubscriptionRunner  # noqa: E402
from tests.reporting import lifecycles  # noqa: E402
from tests.reporting.conftest import live_server  # noqa: E402

START = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)
REPORTS_PER_DAY = 5500  # 2 million a year


def generate(data: Path, events: int, seed: int = 1) -> dict[str, Any]:
    """Histories are drawn complaint by complaint, parked in a scratch table, then appended in time order."""
    data.mkdir(parents=True, exist_ok=True)
    scratch_path = data / "generate-scratch.db"
    scratch_path.unlink(missing_ok=True)
    scratch = sqlite3.connect(scratch_path)
    scratch.execute("CREATE TABLE steps (at REAL, tracking_id TEXT, n INTEGER, type TEXT, data BLOB, metadata BLOB)")
    rng = random.Random(seed)
    policy = Sp4nPolicy()
    started = time.perf_counter()
    drawn = number = 0
    days = 0.0
    while drawn < events:
        batch = []
        for _ in range(1000):
            submitted_at = START + timedelta(days=number / REPORTS_PER_DAY, seconds=rng.uniform(0, 60))
            days = number / REPORTS_PER_DAY
            tracking_id = f"LAP-{number:07d}"
            ends = START + timedelta(days=(events / 9.5) / REPORTS_PER_DAY + 45)
            for n, step in enumerate(lifecycles.random_history(rng, tracking_id, submitted_at, ends, policy)):
                batch.append((step.at.timestamp(), tracking_id, n, step.event.type, orjson.dumps(step.event.data),
                              orjson.dumps(step.event.metadata)))
            number += 1
        scratch.executemany("INSERT INTO steps VALUES (?, ?, ?, ?, ?, ?)", batch)
        drawn += len(batch)
    scratch.execute("CREATE INDEX steps_by_time ON steps (at, tracking_id, n)")
    scratch.commit()
    drawn_seconds = time.perf_counter() - started

    clock = ManualClock(START - timedelta(days=1))
    store = open_store(f"sqlite:///{data / 'events.db'}", clock=clock)
    lifecycles.register_directory(store)
    started = time.perf_counter()
    rows = scratch.execute("SELECT at, tracking_id, type, data, metadata FROM steps ORDER BY at, tracking_id, n")
    appended = 0

    def steps() -> Any:
        for at, tracking_id, event_type, event_data, metadata in rows:
            yield lifecycles.Step(datetime.fromtimestamp(at, UTC), tracking_id,
                                  NewEvent(event_type, orjson.loads(event_data), orjson.loads(metadata)))

    chunk: list[lifecycles.Step] = []
    versions: dict[str, int] = {}
    for step in steps():
        chunk.append(step)
        if len(chunk) >= 50_000:
            lifecycles.append_in_time_order(store, clock, chunk, tick=timedelta(minutes=30), threads=16,
                                            versions=versions)
            appended += len(chunk)
            print(f"  {appended:>9,} events appended", flush=True)
            chunk = []
    lifecycles.append_in_time_order(store, clock, chunk, tick=timedelta(minutes=30), threads=16, versions=versions)
    appended += len(chunk)
    append_seconds = time.perf_counter() - started
    head = store.head_position()
    store.close()
    scratch.close()
    scratch_path.unlink()
    return {
        "complaints": number,
        "events": head,
        "arrival_days": round(days, 1),
        "draw_seconds": round(drawn_seconds, 1),
        "append_seconds": round(append_seconds, 1),
        "store_mb": round((data / "events.db").stat().st_size / 2**20),
    }


def open_context(data: Path) -> ServiceContext:
    return ServiceContext.open(load_settings(data=data))


def bench_rebuild(data: Path, batch_size: int, services: list[str] | None, processes: int) -> dict[str, Any]:
    chosen = load_services(services) if services else load_services()
    ctx = open_context(data)
    try:
        head = ctx.store.head_position()
        live_started = time.perf_counter()
        for service in chosen:
            for subscription in service.subscriptions(ctx):
                if subscription.projection:  # a reaction would append to the log it is measured on
                    SubscriptionRunner(ctx.store, ctx.db, subscription).run_until_caught_up()
        live_seconds = time.perf_counter() - live_started
        started = time.perf_counter()
        report = rebuild_shared_out(ctx, chosen, processes, batch_size=batch_size)
        wall = time.perf_counter() - started
    finally:
        ctx.close()
    # The largest resident set of this process or of any rebuild process (Linux: KiB).
    peak_kib = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return {
        "events": head,
        "services": [service.name for service in chosen],
        "processes": report.shares,
        "live_catch_up_seconds": round(live_seconds, 1),
        "rebuild_seconds": round(report.seconds, 1),
        "rebuild_events_per_second": round(report.events_per_second),
        # from the call to the merged report: spawning, reading, building and comparing
        "wall_seconds_with_compare": round(wall, 1),
        "peak_resident_mb": round(peak_kib / 1024),
        "batch_size": batch_size,
        "identical": report.identical,
        "differences": [d.table for d in report.differences],
        "subscriptions": {r.name: {"handled": r.handled, "seconds": round(r.seconds, 1)} for r in report.subscriptions},
        "skipped": report.skipped,
    }


def bench_latency(data: Path, rate: float, samples: int, services: list[str] | None) -> dict[str, Any]:
    settings = load_settings(data=data)
    app = create_app(settings, load_services(services) if services else load_services())
    tokens = TokenService(settings.signing_secret(), SystemClock())
    headers = {"Authorization": f"Bearer {tokens.issue(Role.operator)}"}
    stop = threading.Event()
    written = [0]
    policy = Sp4nPolicy()
    with live_server(app) as server:
        ctx = server.ctx
        runners = app.state.runtime.runners
        while not all(runner.caught_up() for runner in runners):
            time.sleep(0.5)

        run = datetime.now(UTC).strftime("%H%M%S")  # ids of earlier runs on the same store differ

        def load() -> None:
            """Complaint histories at `rate` events a second, as the deciding services would append them. The
            running services react too (followup closes or reopens on feedback): where one got there first, the
            rest of that history is dropped."""
            rng = random.Random(11)
            number = 0
            pending: list[lifecycles.Step] = []
            version = -1
            next_at = time.perf_counter()
            while not stop.is_set():
                if not pending:
                    now = datetime.now(UTC)
                    pending = lifecycles.random_history(rng, f"LOAD-{run}-{number:07d}", now,
                                                        now + timedelta(days=90), policy)
                    number += 1
                    version = -1
                step = pending.pop(0)
                try:
                    ctx.store.append(f"complaint-{step.tracking_id}", [step.event], version)
                except WrongExpectedVersion:
                    pending = []
                    continue
                version += 1
                written[0] += 1
                next_at += 1 / rate
                delay = next_at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)

        writer = threading.Thread(target=load, daemon=True)
        writer.start()
        latencies: list[float] = []
        view_times: list[float] = []
        with httpx2.Client(base_url=server.url, timeout=60) as client:
            client.get("/api/reports/national", headers=headers)
            for number in range(samples):
                now = datetime.now(UTC)
                marker = lifecycles.random_history(random.Random(number), f"MARK-{run}-{number:06d}", now,
                                                   now + timedelta(minutes=1), policy)[0]
                appended_at = time.perf_counter()
                position = ctx.store.append(f"complaint-{marker.tracking_id}", [marker.event], -1).last_position
                while True:
                    asked = time.perf_counter()
                    view = client.get("/api/reports/national", headers=headers).json()
                    view_times.append(time.perf_counter() - asked)
                    if view["as_of"]["position"] >= position:
                        latencies.append(time.perf_counter() - appended_at)
                        break
                time.sleep(random.Random(number).uniform(0.05, 0.25))
        stop.set()
        writer.join(5)
    ordered = sorted(latencies)

    def pct(values: list[float], p: float) -> float:
        return round(1000 * values[min(len(values) - 1, int(p * len(values)))], 1)

    return {
        "load_events_per_second": rate,
        "appended_during_run": written[0],
        "samples": len(latencies),
        "append_to_national_view_ms": {"p50": pct(ordered, 0.5), "p95": pct(ordered, 0.95),
                                       "p99": pct(ordered, 0.99), "max": round(1000 * ordered[-1], 1)},
        "national_view_response_ms": {"median": round(1000 * statistics.median(view_times), 1),
                                      "p95": pct(sorted(view_times), 0.95)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["generate", "rebuild", "latency"])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="as lapor rebuild --batch-size")
    parser.add_argument("--rate", type=float, default=200.0, help="load, in events a second (latency)")
    parser.add_argument("--samples", type=int, default=300, help="markers timed (latency)")
    parser.add_argument("--service", action="append", help="only these services (default: all four)")
    parser.add_argument("--processes", type=int, default=1, help="rebuild processes (lapor rebuild --processes)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.what == "generate":
        results = generate(args.data, args.events)
    elif args.what == "rebuild":
        results = bench_rebuild(args.data, args.batch_size, args.service, args.processes)
    else:
        results = bench_latency(args.data, args.rate, args.samples, args.service)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("LAPOR_LOG_LEVEL", "WARNING")
    main()
