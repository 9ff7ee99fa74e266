"""Routing benchmark: the directory seeding, the complaint projection and the deadline scheduler.

    .venv/bin/python -m benchmarks.bench_routing --reports 20000
    .venv/bin/python -m benchmarks.bench_routing --reports 20000 --store postgresql://postgres@127.0.0.1:5432/test

On a fresh store (SQLite in a temporary directory unless --store names a PostgreSQL server, where a fresh schema is
used and dropped):
- directory seeding at first start (every agency stream and the rules), and at a restart that finds them;
- `--reports` reports submitted, verified, disposed and accepted (4 events each, appended from 16 threads);
- the complaint projection catching up on them (queue rows and open deadlines), in events/s;
- the clock moved past every follow-up deadline, then one scheduler tick escalating them all (escalations/s, each
  a read + fold + decide + durable append), and a second tick that finds nothing left to do;
- the first page of the verification queue read from the projection.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import psycopg
from psycopg import sql

from lapor.auth import TokenService
from lapor.calendar import WorkingCalendar
from lapor.clock import ManualClock
from lapor.complaint import Status
from lapor.context import ServiceContext
from lapor.db import open_database
from lapor.limits import RateLimits
from lapor.observability import Metrics
from lapor.policy import Sp4nPolicy
from lapor.settings import load_settings
from lapor.states import ComplaintStates
from lapor.store import NO_STREAM, open_store
from lapor.subscriptions import SubscriptionRunner
from schemas.events import ComplaintDisposed, ComplaintSubmitted, ComplaintVerified, DispositionAccepted
from services.routing.handlers import DeadlineScheduler
from services.routing.projections import queued_reports
from services.routing.seed import seed_directory
from services.routing.service import subscriptions

METADATA = {"actor": "bench", "role": "admin_national", "correlation_id": "bench"}
AGENCY = "pemda-53.71"


@contextmanager
def fresh_store(url: str | None) -> Iterator[str]:
    if url is None:
        with tempfile.TemporaryDirectory() as directory:
            yield f"sqlite:///{Path(directory) / 'events.db'}"
        return
    schema = f"bench_routing_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def open_context(store_url: str, data: Path, clock: ManualClock) -> ServiceContext:
    settings = load_settings(data=data, store=store_url)
    calendar = WorkingCalendar()
    store = open_store(store_url, clock=clock)
    return ServiceContext(
        settings=settings,
        clock=clock,
        store=store,
        db=open_database(settings.readmodels),
        calendar=calendar,
        policy=Sp4nPolicy(calendar=calendar),
        metrics=Metrics(),
        tokens=TokenService("b" * 32, clock),
        rate_limits=RateLimits(settings.limits, secret="b" * 32),
        states=ComplaintStates(store),
    )


def lifecycle(ctx: ServiceContext, n: int) -> int:
    tracking_id = f"LAP-BENCH-{n:07d}"
    now = ctx.clock.now()
    events = [
        ComplaintSubmitted(
            tracking_id=tracking_id, kind="pengaduan", title="Jalan berlubang", body="Lubang besar di jalan kota.",
            category="Infrastruktur", region_code="53.71", channel="web", reporter_token_hash="0" * 64,
            verification_due=ctx.policy.verification_due(now),
        ),
        ComplaintVerified(classification="pengaduan", category="Infrastruktur"),
        ComplaintDisposed(agency_id=AGENCY, follow_up_due=ctx.policy.follow_up_due(now),
                          ombudsman_offer_due=ctx.policy.ombudsman_offer_due(now)),
        DispositionAccepted(agency_id=AGENCY),
    ]
    if n % 10 == 0:
        events = events[:1]  # one in ten still waits for verification
    ctx.store.append(f"complaint-{tracking_id}", [e.to_new_event(metadata=METADATA) for e in events], NO_STREAM)
    return len(events)


def timed(label: str, work: object) -> float:
    started = time.perf_counter()
    result = work() if callable(work) else None
    seconds = time.perf_counter() - started
    print(f"{label:<58} {seconds:8.2f} s" + (f"   ({result})" if result is not None else ""))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=20_000)
    parser.add_argument("--store", help="a PostgreSQL server URL (default: SQLite in a temporary directory)")
    args = parser.parse_args()
    clock = ManualClock()
    with fresh_store(args.store) as store_url, tempfile.TemporaryDirectory() as data:
        ctx = open_context(store_url, Path(data), clock)
        try:
            timed("directory seeding, first start", lambda: f"{seed_directory(ctx)} streams")
            timed("directory seeding, restart", lambda: f"{seed_directory(ctx)} streams")
            runners = [SubscriptionRunner(ctx.store, ctx.db, s, clock=clock) for s in subscriptions(ctx)]
            timed("directory projection", lambda: f"{runners[0].run_until_caught_up()} events")
            counts: dict[str, int] = {}

            def append_reports() -> str:
                with ThreadPoolExecutor(16) as pool:
                    counts["events"] = sum(pool.map(lambda n: lifecycle(ctx, n), range(args.reports)))
                return f"{counts['events']} events"

            def project() -> str:
                return f"{runners[1].run_until_caught_up()} events"

            def escalate() -> str:
                counts["escalations"] = scheduler.tick()
                return f"{counts['escalations']} escalations"

            timed(f"{args.reports} reports appended (9 in 10 disposed and accepted)", append_reports)
            seconds = timed("complaint projection catch-up", project)
            print(f"{'  -> events/s':<58} {counts['events'] / seconds:8.0f}")
            scheduler = DeadlineScheduler(ctx)
            clock.advance(timedelta(days=10))
            seconds = timed("scheduler tick: every deadline overdue", escalate)
            print(f"{'  -> escalations/s':<58} {counts['escalations'] / seconds:8.0f}")
            runners[1].run_until_caught_up()
            timed("scheduler tick: nothing left to do", lambda: f"{scheduler.tick()} escalations")

            def first_page() -> str:
                with ctx.db.read() as tx:
                    total, page = queued_reports(tx, [Status.submitted, Status.verified, Status.returned], limit=50)
                return f"{len(page)} of {total}"

            timed("verification queue, first page", first_page)
        finally:
            ctx.close()


if __name__ == "__main__":
    main()
