"""`lapor up` and `lapor serve` as real processes: ready, stopped by a signal with exit code 0, and restarted
from their checkpoints without handling any event twice."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SUBMISSION = {"title": "Jembatan retak", "body": "Jembatan Liliba retak di sisi timur, berbahaya."}
ROLES = ["admin_national", "admin_agency", "liaison", "unit_officer", "operator", "auditor", "ombudsman",
         "integration:sms"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    stdout: Path
    stderr: Path

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return httpx.post(self.url + path, timeout=10, **kwargs)

    def metric(self, name: str, consumer: str | None = None) -> float:
        for family in text_string_to_metric_families(self.get("/metrics").text):
            for sample in family.samples:
                if sample.name == name and (consumer is None or sample.labels.get("consumer") == consumer):
                    return sample.value
        raise LookupError(name)

    def stop(self, sig: signal.Signals) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=30)

    def logs(self) -> str:
        return self.stderr.read_text()


def wait_until(condition, timeout: float = 60.0, describe: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except httpx.TransportError:
            pass  # not listening yet
        assert time.monotonic() < deadline, f"{describe} not reached within {timeout}s"
        time.sleep(0.1)


@contextmanager
def lapor(tmp_path: Path, *args: str, name: str) -> Iterator[Server]:
    port = free_port()
    stdout, stderr = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    environment = {**os.environ, "LAPOR_LIMITS__SUBMISSION_RATE": "1000/minute"}
    with stdout.open("w") as out, stderr.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.platform.launch", *args, "--port", str(port)],
            cwd=ROOT, stdout=out, stderr=err, env=environment,
        )
    server = Server(process, f"http://127.0.0.1:{port}", stdout, stderr)
    try:
        wait_until(lambda: process.poll() is not None or server.get("/readyz").status_code == 200,
                   describe=f"{name} ready")
        assert process.poll() is None, f"{name} exited early:\n{server.logs()}"
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def caught_up(server: Server) -> bool:
    return server.metric("lapor_subscription_checkpoint_position", "probe.events") == server.metric(
        "lapor_store_head_position"
    )


def test_lapor_up_stops_cleanly_and_resumes_from_its_checkpoints(tmp_path):
    data = str(tmp_path / "var")
    with lapor(tmp_path, "up", "--data", data, "--demo", name="first") as first:
        printed = dict(line.split() for line in first.stdout.read_text().splitlines() if line.startswith("  "))
        assert sorted(printed) == sorted(ROLES)
        admin_token = printed["admin_national"]
        whoami = first.get("/api/probe/whoami", headers={"Authorization": f"Bearer {admin_token}"}).json()
        assert whoami["role"] == "admin_national"
        wait_until(lambda: caught_up(first), describe="demo data handled")
        demo = first.get("/api/probe/handled").json()["events"]  # the services' demo reports
        assert demo > 0
        for _ in range(20):
            assert first.post("/api/probe/complaints", json=SUBMISSION).status_code == 201
        wait_until(lambda: first.get("/api/probe/handled").json()["events"] >= demo + 20, describe="20 more events")
        wait_until(lambda: caught_up(first), describe="caught up")
        handled = first.metric("lapor_subscription_handled_events", "probe.events")
        assert first.stop(signal.SIGINT) == 0
        assert '"stopped subscriptions at' in first.logs()
        assert "Traceback" not in first.logs()

    with lapor(tmp_path, "up", "--data", data, name="second") as second:
        wait_until(lambda: caught_up(second), describe="caught up after restart")
        # Nothing was replayed: every event the first run handled was handled once, and the persisted count goes
        # on from where it stopped (a background loop may add new events of its own, never old ones again).
        assert second.get("/api/probe/handled").json()["handled_twice"] == 0
        assert second.metric("lapor_subscription_handled_events", "probe.events") >= handled
        # A token printed by the first run still opens the second: the secret was kept in the data dir.
        whoami = second.get("/api/probe/whoami", headers={"Authorization": f"Bearer {admin_token}"}).json()
        assert whoami["role"] == "admin_national"
        before = second.get("/api/probe/handled").json()["events"]
        for _ in range(5):
            second.post("/api/probe/complaints", json=SUBMISSION)
        wait_until(lambda: second.get("/api/probe/handled").json()["events"] >= before + 5, describe="5 more")
        wait_until(lambda: caught_up(second), describe="caught up")
        counted = second.get("/api/probe/handled").json()
        assert counted["handled_twice"] == 0
        assert second.metric("lapor_subscription_handled_events", "probe.events") == counted["events"]
        assert second.stop(signal.SIGTERM) == 0


def test_lapor_serve_runs_services_side_by_side_on_one_store(tmp_path):
    data = str(tmp_path / "var")
    with lapor(tmp_path, "serve", "probe", "--data", data, name="probe") as probe_server, \
            lapor(tmp_path, "serve", "intake", "--data", data, name="intake") as intake_server:
        assert intake_server.get("/openapi.json").json()["info"]["title"] == "LAPOR intake"
        assert intake_server.get("/api/probe/whoami").status_code == 404
        assert probe_server.post("/api/probe/complaints", json=SUBMISSION).status_code == 201
        # Both processes read the same log.
        wait_until(lambda: intake_server.metric("lapor_store_head_position") == 1, describe="shared head")
        assert probe_server.stop(signal.SIGINT) == 0
        assert intake_server.stop(signal.SIGINT) == 0
