"""Startup and memory of `lapor up` on a large store.

    .venv/bin/python benchmarks/bench_startup.py                 # 1,000,000 events in a temporary directory
    .venv/bin/python benchmarks/bench_startup.py --events 200000 --data /tmp/lapor-bench --keep

1. Generate the store: complete complaint lifecycles (ten events each: submitted, verified, disposed, accepted,
   assigned, two follow-ups, resolved, feedback, closed) with valid v1 data, appended through the store's own
   `append` from many threads so the group commit packs them into large transactions.
2. First start of `lapor up`: time until /readyz answers 200. Subscriptions that are new to this store catch
   up from position 0 before they are ready, so this is the one-time cost of building the projections.
3. Stop (SIGINT), start again: time until ready — the target is under 10 s with 1,000,000 events, since
   projections persist and nothing is replayed — then serve some requests and read the process's RSS from
   /proc (target: under 300 MB).

`--probe` adds the platform tests' probe service (one real subscription that records every event it handles),
so the first start shows a projection catching up on the whole log and the restart shows it is not replayed,
even while the four services have no subscriptions of their own.

Figures, not assertions: the numbers depend on the machine. Results are printed and, with --json, written.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lapor.auth import new_reporter_token, reporter_token_hash  # noqa: E402
from lapor.store import NO_STREAM, NewEvent, open_store  # noqa: E402
from schemas import events as ev  # noqa: E402

AGENCIES = ["pemda-53.71", "pemda-35.73", "pemda-31.71", "kemenkes", "pemda-82.71"]
EVENTS_PER_COMPLAINT = 10


def lifecycle(number: int, at: datetime) -> list[NewEvent]:
    """One complaint's full history, valid against the v1 contracts."""
    tracking_id = f"BENCH-{number:08d}"
    agency = AGENCIES[number % len(AGENCIES)]
    due = at + timedelta(days=7)
    actor = {"actor": "bench", "role": "admin_national", "agency": "kemenpanrb", "correlation_id": tracking_id}
    models = [
        ev.ComplaintSubmitted(
            tracking_id=tracking_id, kind="pengaduan", title=f"Jalan rusak nomor {number}",
            body="Lubang besar di jalan utama, membahayakan pengendara motor pada malam hari.",
            region_code="53.71", channel="web", reporter_token_hash=reporter_token_hash(new_reporter_token()),
            verification_due=due,
        ),
        ev.ComplaintVerified(classification="pengaduan", category="infrastruktur"),
        ev.ComplaintDisposed(agency_id=agency, follow_up_due=due, ombudsman_offer_due=due + timedelta(days=80)),
        ev.DispositionAccepted(agency_id=agency),
        ev.ComplaintAssigned(unit_id=f"{agency}/pupr"),
        ev.FollowUpPosted(follow_up_id=f"{tracking_id}-1", text="Tim sudah meninjau lokasi."),
        ev.FollowUpPosted(follow_up_id=f"{tracking_id}-2", text="Perbaikan dijadwalkan minggu depan."),
        ev.ComplaintResolved(resolution="Jalan sudah ditambal.", feedback_due=due + timedelta(days=14)),
        ev.FeedbackGiven(satisfied=True, rating=5),
        ev.ComplaintClosed(reason="satisfied"),
    ]
    return [model.to_new_event(metadata=actor) for model in models]


def generate(data: Path, total_events: int, threads: int = 32) -> float:
    """Fill `<data>/events.db`; returns the seconds it took."""
    data.mkdir(parents=True, exist_ok=True)
    store = open_store(f"sqlite:///{data / 'events.db'}")
    complaints = total_events // EVENTS_PER_COMPLAINT
    numbers = itertools.count()
    lock = threading.Lock()
    at = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    started = time.perf_counter()

    def work() -> None:
        while True:
            with lock:
                number = next(numbers)
            if number >= complaints:
                return
            store.append(f"complaint-BENCH-{number:08d}", lifecycle(number, at), expected_version=NO_STREAM)
            if number % 10_000 == 0:
                print(f"  {number * EVENTS_PER_COMPLAINT:>9,} events", flush=True)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    store.close()
    return elapsed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def start(data: Path, log: Path, timeout: float, probe: bool) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    program = ["tests.platform.launch"] if probe else ["lapor.cli"]
    url = f"http://127.0.0.1:{port}"
    with log.open("a") as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", *program, "up", "--data", str(data), "--port", str(port)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err,
        )
    while True:
        if process.poll() is not None:
            raise SystemExit(f"lapor up exited with {process.returncode}; see {log}")
        try:
            if httpx2.get(url + "/readyz", timeout=5).status_code == 200:
                return process, url, time.perf_counter() - started
        except httpx2.TransportError:
            pass
        if time.perf_counter() - started > timeout:
            process.kill()
            raise SystemExit(f"not ready within {timeout}s; see {log}")
        time.sleep(0.05)


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGINT)
    return process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--data", type=Path, help="data directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--probe", action="store_true", help="run with the probe subscription of the tests")
    args = parser.parse_args()
    data = args.data or Path(tempfile.mkdtemp(prefix="lapor-bench-"))
    log = data / "bench-server.log"
    results: dict[str, float | int | str | bool] = {"events": args.events, "data": str(data), "probe": args.probe}

    if not (data / "events.db").exists():
        print(f"generating {args.events:,} events in {data} ...", flush=True)
        seconds = generate(data, args.events)
        results["generate_seconds"] = round(seconds, 1)
        results["generate_events_per_second"] = round(args.events / seconds)
    results["store_mb"] = round((data / "events.db").stat().st_size / 2**20)

    process, _, first_ready = start(data, log, timeout=3600, probe=args.probe)
    results["first_start_ready_seconds"] = round(first_ready, 2)
    results["first_stop_exit_code"] = stop(process)

    process, url, ready = start(data, log, timeout=600, probe=args.probe)
    results["restart_ready_seconds"] = round(ready, 2)
    with httpx2.Client(base_url=url, timeout=30) as client:
        for _ in range(50):
            client.get("/readyz")
            client.get("/metrics")
            client.get("/openapi.json")
    current, peak = rss_mb(process.pid)
    results["serving_rss_mb"] = round(current, 1)
    results["peak_rss_mb"] = round(peak, 1)
    results["restart_stop_exit_code"] = stop(process)

    width = max(len(key) for key in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if not args.keep and args.data is None:
        shutil.rmtree(data)


if __name__ == "__main__":
    os.environ.setdefault("LAPOR_LOG_LEVEL", "WARNING")
    main()
