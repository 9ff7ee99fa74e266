"""Followup benchmark: the queue projection following the log, and queue pages read over HTTP.

    .venv/bin/python -m benchmarks.bench_followup --reports 30000 --agencies 700

1. Fills a fresh SQLite store (under a temporary data directory, or `--data`) with `--reports` reports disposed to
   `--agencies` agencies, one of them (Kota Kupang) holding 5% of them; about half are accepted and assigned to one
   of four units, a third of those get a follow-up and a resolution. Appends come from 16 threads (group commit).
2. Catches the queue projection (`followup.queue`) up from position 0: events/s.
3. Serves the followup app (TestClient, real middleware, tokens, `lapor.privacy` on every item) and times queue
   pages: the first page of the big agency, every page of it by cursor, a unit's page, the overdue filter.
   Latencies are per request, p50 and p95, in ms.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from lapor.app import create_app
from lapor.auth import TokenService
from lapor.clock import SystemClock
from lapor.db import open_database
from lapor.policy import Sp4nPolicy
from lapor.principal import Role
from lapor.settings import load_settings
from lapor.states import ComplaintStates
from lapor.store import NO_STREAM, NewEvent, open_store
from lapor.subscriptions import SubscriptionRunner
from schemas.events import (
    ComplaintAssigned,
    ComplaintDisposed,
    ComplaintResolved,
    ComplaintSubmitted,
    ComplaintVerified,
    DispositionAccepted,
    EventData,
    FollowUpPosted,
)
from services.followup.projections import QueueProjection
from services.followup.service import SERVICE

BIG = "pemda-53.71"
UNITS = ("dinkes", "disdik", "dpupr", "dishub")
METADATA = {"actor": "bench", "role": "admin_national", "correlation_id": "bench"}


def lifecycle(n: int, agencies: int, policy: Sp4nPolicy) -> tuple[str, list[NewEvent]]:
    tracking_id = f"BENCH-{n:07d}"
    share = int.from_bytes(hashlib.sha256(tracking_id.encode()).digest()[:4], "big") % 1000
    agency = BIG if share < 50 else f"pemda-bench.{share % (agencies - 1):03d}"
    now = SystemClock().now() - timedelta(days=share % 12)  # some deadlines passed, some not
    events: list[EventData] = [
        ComplaintSubmitted(
            tracking_id=tracking_id, kind="pengaduan", title=f"Puskesmas {n} tutup di jam pelayanan",
            body="Sudah tiga hari puskesmas tutup pada jam pelayanan; warga pulang tanpa dilayani.",
            category=("kesehatan", "pendidikan", "infrastruktur")[share % 3], region_code="53.71", channel="web",
            reporter_token_hash=hashlib.sha256(tracking_id.encode()).hexdigest(),
            verification_due=policy.verification_due(now),
        ),
        ComplaintVerified(classification="pengaduan", category="kesehatan"),
        ComplaintDisposed(
            agency_id=agency,
            follow_up_due=policy.follow_up_due(now),
            ombudsman_offer_due=policy.ombudsman_offer_due(now),
        ),
    ]
    if share % 2:
        events += [DispositionAccepted(agency_id=agency), ComplaintAssigned(unit_id=f"{agency}/{UNITS[share % 4]}")]
        if share % 3 == 0:
            events += [
                FollowUpPosted(follow_up_id=f"fu-{n}", text="Petugas sudah meninjau lokasi."),
                ComplaintResolved(resolution="Sudah ditangani.", feedback_due=policy.feedback_due(now)),
            ]
    return tracking_id, [event.to_new_event(metadata=METADATA) for event in events]


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"p50 {statistics.median(ordered) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms ({len(ordered)} requests)"


def timed(call: Callable[[], Any], times: int) -> tuple[list[float], Any]:
    samples, result = [], None
    for _ in range(times):
        started = time.perf_counter()
        result = call()
        samples.append(time.perf_counter() - started)
    return samples, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=30_000)
    parser.add_argument("--agencies", type=int, default=700)
    parser.add_argument("--data", type=Path, help="data directory (default: a fresh temporary one)")
    args = parser.parse_args()
    data = args.data or Path(tempfile.mkdtemp(prefix="bench-followup-"))
    settings = load_settings(data=data)
    policy = Sp4nPolicy()

    store = open_store(settings.store)

    def append(n: int) -> int:
        tracking_id, events = lifecycle(n, args.agencies, policy)
        store.append(f"complaint-{tracking_id}", events, NO_STREAM)
        return len(events)

    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        events = sum(pool.map(append, range(args.reports)))
    filled = time.perf_counter() - started
    print(f"filled: {args.reports} reports, {events} events in {filled:.1f} s ({events / filled:,.0f} events/s)")

    db = open_database(settings.readmodels)
    runner = SubscriptionRunner(store, db, QueueProjection(ComplaintStates(store)).subscription(), batch_size=2000)
    started = time.perf_counter()
    handled = runner.run_until_caught_up()
    projected = time.perf_counter() - started
    print(f"queue projection: {handled} events in {projected:.1f} s ({handled / projected:,.0f} events/s)")
    db.close()
    store.close()

    tokens = TokenService(settings.signing_secret(), SystemClock())
    liaison = {"Authorization": f"Bearer {tokens.issue(Role.liaison, agency_id=BIG)}"}
    officer = {"Authorization": f"Bearer {tokens.issue(Role.unit_officer, unit_id=f'{BIG}/dinkes')}"}
    with TestClient(create_app(settings, [SERVICE])) as client:

        def page(headers: dict[str, str], agency: str = BIG, **params: Any) -> dict[str, Any]:
            response = client.get(f"/api/queues/{agency}", headers=headers, params=params)
            assert response.status_code == 200, response.text
            return response.json()

        samples, first = timed(lambda: page(liaison, limit=50), 30)
        print(f"first page of {BIG} (50 items): {percentiles(samples)}")
        cursor, walked, pages = first["next_cursor"], len(first["items"]), []
        while cursor:
            started = time.perf_counter()
            body = page(liaison, limit=200, cursor=cursor)
            pages.append(time.perf_counter() - started)
            walked += len(body["items"])
            cursor = body["next_cursor"]
        if pages:
            print(f"every later page of {BIG} (200 items each, {walked} items in all): {percentiles(pages)}")
        samples, _ = timed(lambda: page(officer, f"{BIG}/dinkes", limit=50), 30)
        print(f"first page of {BIG}/dinkes as its unit officer: {percentiles(samples)}")
        samples, _ = timed(lambda: page(liaison, limit=50, overdue="true"), 30)
        print(f"overdue filter of {BIG}: {percentiles(samples)}")
    print(f"data: {data}")


if __name__ == "__main__":
    main()
