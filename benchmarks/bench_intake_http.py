"""HTTP submissions through `lapor up`, against a bare FastAPI endpoint that only answers 201, in one run.

    .venv/bin/python benchmarks/bench_intake_http.py                      # 32 clients, 20 s each
    .venv/bin/python benchmarks/bench_intake_http.py --clients 32 --duration 30 --json results.json

1. Start a bare FastAPI app (one route, `POST /api/complaints` -> 201, nothing read, nothing stored) under
   uvicorn, and `lapor up` on a fresh SQLite data directory (all four services, their subscriptions running,
   the per-client submission rate limit lifted since every client comes from 127.0.0.1).
2. For each: a warm-up, then `--clients` concurrent clients (one asyncio task each, keep-alive connections) post
   realistic reports back to back for `--duration` seconds: Kemendagri region codes of the seed cities, a named
   reporter on half of them, the reporter's own phone number in the text of some (masked by intake), an
   Idempotency-Key on each.
   The load generator runs on the first CPU and both servers on the others (`--no-pin` to share them all): on
   a 2-core machine, a load generator and a busy server sharing both cores slow each other down (the client's
   CPU per request rose from ~2 to ~3.5 ms beside `lapor up`), so the figure measured the contention more than
   the server. Pinned, each server has one core fewer than the machine, and the bare endpoint's ceiling is the
   load generator's, as before.
3. Print sustained throughput (answers per second over the measured window), p50/p95/p99 latency and the
   server's CPU time per request (all its threads and worker processes, from /proc), and for LAPOR check that
   the store holds exactly one ComplaintSubmitted per 201 (SQLite synchronous=FULL: every 201 waited for its
   fsync).

Figures, not assertions: the load generator runs on the same machine as the server, so both numbers are what
this machine does with this client; their ratio is the point.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx2
import uvicorn
from fastapi import FastAPI

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

REGIONS = ("53.71", "82.71", "81.71", "35.73", "35", "36.03", "36.71")
TOPICS = (
    ("Jalan rusak di {place}", "Jalan di {place} berlubang dan tergenang air setiap hujan sejak {n} bulan."),
    ("Lampu jalan mati di {place}", "Lampu penerangan di {place} mati sejak {n} minggu, rawan kecelakaan."),
    ("Sampah menumpuk di {place}", "Sampah di {place} tidak diangkut {n} hari, bau dan mengundang lalat."),
    ("Air PDAM tidak mengalir", "Sudah {n} minggu air PDAM di {place} tidak mengalir tetapi tagihan tetap datang."),
    ("Antrean puskesmas lama", "Pasien di puskesmas dekat {place} menunggu {n} jam sebelum dilayani."),
)
PLACES = ("Jl. El Tari", "Kelurahan Oebobo", "Pasar Gamalama", "Jl. Sultan Hairun", "Kelurahan Lowokwaru", "Cikupa")
NAMES = ("Yohanes Lado", "Maria Manafe", "Siti Rahayu", "Budi Santoso", "Dewi Wijaya", "Ahmad Hidayat")


def report(rng: random.Random) -> dict:
    title, body = rng.choice(TOPICS)
    fields = {"place": rng.choice(PLACES), "n": rng.randint(2, 9)}
    submission: dict[str, Any] = {
        "title": title.format(**fields),
        "body": body.format(**fields) + f" Mohon segera ditindaklanjuti ({rng.randint(1, 10**9)}).",
        "region_code": rng.choice(REGIONS),
    }
    if rng.random() < 0.5:
        name, phone = rng.choice(NAMES), f"0812{rng.randint(10_000_000, 99_999_999)}"
        submission["reporter"] = {"name": name, "phone": phone}
        if rng.random() < 0.3:
            submission["body"] += f" Saya {name}, HP {phone}."
        submission["anonymous"] = rng.random() < 0.3
    return submission


# -- the bare endpoint --------------------------------------------------------------------------------------


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.post("/api/complaints", status_code=201)
    async def submit() -> dict[str, str]:
        return {"status": "submitted"}

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


def serve_bare(port: int, workers: int) -> None:
    if workers == 1:
        uvicorn.run(bare_app(), host="127.0.0.1", port=port, log_config=None, access_log=False)
    else:  # uvicorn's own process manager: the workers share one socket, as `lapor up --workers` does
        uvicorn.run(
            "benchmarks.bench_intake_http:bare_app",
            factory=True,
            workers=workers,
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
        )


# -- load -----------------------------------------------------------------------------------------------------


async def load(base: str, clients: int, duration: float, warmup: float, seed: int) -> dict:
    latencies: list[float] = []
    statuses: dict[int | str, int] = {}
    created = 0  # 201s, warm-up included: each must be a report in the store
    limits = httpx2.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx2.AsyncClient(base_url=base, limits=limits, timeout=60) as client:

        async def worker(number: int, until: float, record: bool) -> None:
            nonlocal created
            rng = random.Random(seed * 1000 + number)
            while time.perf_counter() < until:
                headers = {"Idempotency-Key": str(uuid.UUID(int=rng.getrandbits(128)))}
                started = time.perf_counter()
                try:
                    response = await client.post("/api/complaints", json=report(rng), headers=headers)
                except httpx2.TransportError as error:  # counted: a dropped connection is a result too
                    outcome: int | str = type(error).__name__
                else:
                    outcome = response.status_code
                if outcome == 201:
                    created += 1
                if record:
                    latencies.append(time.perf_counter() - started)
                    statuses[outcome] = statuses.get(outcome, 0) + 1

        await asyncio.gather(*(worker(n, time.perf_counter() + warmup, False) for n in range(clients)))
        started = time.perf_counter()
        await asyncio.gather(*(worker(clients + n, started + duration, True) for n in range(clients)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    cut = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "requests": len(latencies),
        "statuses": statuses,
        "created_with_warmup": created,
        "seconds": round(elapsed, 2),
        "throughput": round(statuses.get(201, 0) / elapsed, 1),  # reports accepted per second
        "p50_ms": round(cut[49] * 1000, 1),
        "p95_ms": round(cut[94] * 1000, 1),
        "p99_ms": round(cut[98] * 1000, 1),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(base: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server at {base} exited with {process.returncode}")
        try:
            if httpx2.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{base} was not ready within {timeout} s")


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def _stat(path: Path) -> list[str]:
    return path.read_text().rsplit(")", 1)[1].split()  # the fields after the command name


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of every thread of the process and of its child processes (the workers of
    `--workers`), from Linux /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat(entry / "stat")[1]) == pid:  # its parent
                    pids.append(int(entry.name))
            except (OSError, IndexError):
                continue  # gone meanwhile
    total = 0
    for process in pids:
        for task in Path(f"/proc/{process}/task").iterdir():
            try:
                fields = _stat(task / "stat")
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def measured(base: str, process: subprocess.Popen, args: argparse.Namespace, seed: int) -> dict:
    """The load's figures, plus the server's CPU time per answered request (steadier than throughput on a
    machine shared with other work)."""
    before = cpu_seconds(process.pid)
    result = asyncio.run(load(base, args.clients, args.duration, args.warmup, seed=seed))
    result["server_cpu_ms_per_request"] = round((cpu_seconds(process.pid) - before) / result["requests"] * 1000, 2)
    return result


def submitted_in_store(data: Path) -> int:
    with sqlite3.connect(data / "events.db") as conn:
        return conn.execute("SELECT count(*) FROM events WHERE type = 'ComplaintSubmitted'").fetchone()[0]


def cpu_split(pin: bool) -> tuple[set[int], set[int]] | None:
    """(the load generator's CPUs, the servers' CPUs) when pinning: the first CPU for the load, the rest for
    the server under test; None when not pinning or there is only one CPU."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not pin or len(cpus) < 2:
        return None
    return {cpus[0]}, set(cpus[1:])


def run(args: argparse.Namespace) -> dict:
    split = cpu_split(args.pin)
    results: dict = {
        "clients": args.clients,
        "duration_s": args.duration,
        "cpus": os.cpu_count(),
        "workers": args.workers,
        "store_writer": args.store_writer,
        "pinned": {"load": sorted(split[0]), "server": sorted(split[1])} if split else None,
    }
    on_server_cpus = None
    if split:
        os.sched_setaffinity(0, split[0])

        def on_server_cpus() -> None:
            os.sched_setaffinity(0, split[1])
    port = free_port()
    bare = subprocess.Popen(
        [PYTHON, "-m", "benchmarks.bench_intake_http", "--bare-server", str(port), "--workers", str(args.workers)],
        cwd=ROOT,
        preexec_fn=on_server_cpus,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", bare)
        results["bare_fastapi"] = measured(f"http://127.0.0.1:{port}", bare, args, seed=1)
    finally:
        stop(bare)
    print("bare FastAPI:", results["bare_fastapi"], flush=True)

    data = Path(args.data or tempfile.mkdtemp(prefix="lapor-bench-intake-"))
    env = {
        **os.environ,
        "LAPOR_LIMITS__SUBMISSION_RATE": "100000000/minute",
        "LAPOR_LOG_LEVEL": "WARNING",
        "LAPOR_READINESS_MAX_LAG": "100000000",
    }
    port = free_port()
    command = [str(Path(PYTHON).with_name("lapor")), "up", "--data", str(data), "--port", str(port)]
    if args.workers != 1:
        command += ["--workers", str(args.workers)]
    if args.store_writer:
        command.append("--store-writer")
    lapor = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        preexec_fn=on_server_cpus,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", lapor)
        before = submitted_in_store(data)
        results["lapor_up"] = measured(f"http://127.0.0.1:{port}", lapor, args, seed=2)
    finally:
        stop(lapor)
    stored = submitted_in_store(data) - before
    results["lapor_up"]["every_201_is_stored"] = stored == results["lapor_up"]["created_with_warmup"]
    print("lapor up:    ", results["lapor_up"], flush=True)
    if not args.keep and not args.data:
        shutil.rmtree(data, ignore_errors=True)
    results["ratio_of_bare"] = round(results["lapor_up"]["throughput"] / results["bare_fastapi"]["throughput"], 3)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per server")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--data", help="data directory for lapor up (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--workers", type=int, default=1, help="HTTP processes, for both servers (lapor up --workers N)"
    )
    parser.add_argument(
        "--store-writer", action="store_true", help="lapor up --store-writer: appends through a writer process"
    )
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="let the load and the servers share every CPU (default: the load on the first, servers on the rest)",
    )
    parser.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        serve_bare(args.bare_server, args.workers)
        return
    results = run(args)
    print()
    for name in ("bare_fastapi", "lapor_up"):
        r = results[name]
        print(
            f"{name:<13} {r['throughput']:>8.1f} req/s   p50 {r['p50_ms']:>6.1f} ms   p95 {r['p95_ms']:>6.1f} ms   "
            f"p99 {r['p99_ms']:>6.1f} ms   server CPU {r['server_cpu_ms_per_request']:.2f} ms/request   "
            f"({r['requests']} requests, statuses {r['statuses']})"
        )
    print(f"lapor up sustains {results['ratio_of_bare']:.0%} of the bare endpoint's throughput")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
