"""Real `lapor` processes for the subprocess tests: started on a free port, waited for until ready, killed if
a test leaves them running."""

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

import httpx2
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]


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

    def get(self, path: str, **kwargs) -> httpx2.Response:
        return httpx2.get(self.url + path, timeout=10, **kwargs)

    def post(self, path: str, **kwargs) -> httpx2.Response:
        return httpx2.post(self.url + path, timeout=10, **kwargs)

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


def run_lapor(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`lapor <arguments>` run to its end in a process of its own, from the project's root: its exit code and
    output."""
    return subprocess.run([sys.executable, "-m", "lapor.cli", *arguments], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=60)


def wait_until(condition, timeout: float = 60.0, describe: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except httpx2.TransportError:
            pass  # not listening yet
        assert time.monotonic() < deadline, f"{describe} not reached within {timeout}s"
        time.sleep(0.1)


@contextmanager
def started(
    tmp_path: Path, *args: str, name: str, module: str = "tests.platform.launch", env: dict[str, str] | None = None,
    session: bool = False,
) -> Iterator[tuple[subprocess.Popen, Path, Path]]:
    """`python -m <module> <args>` running, its output in files (process, stdout, stderr); killed afterwards if it
    is still running. `session`: in a session (and process group) of its own, for a signal to the whole group."""
    stdout, stderr = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    environment = {**os.environ, "LAPOR_LIMITS__SUBMISSION_RATE": "1000/minute", **(env or {})}
    with stdout.open("w") as out, stderr.open("w") as err:
        process = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, stdout=out, stderr=err,
                                   env=environment, start_new_session=session)
    try:
        yield process, stdout, stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@contextmanager
def lapor(
    tmp_path: Path, *args: str, name: str, module: str = "tests.platform.launch", env: dict[str, str] | None = None,
    session: bool = False,
) -> Iterator[Server]:
    port = free_port()
    with started(tmp_path, *args, "--port", str(port), name=name, module=module, env=env, session=session) as (
        process, out, err
    ):
        server = Server(process, f"http://127.0.0.1:{port}", out, err)
        wait_until(lambda: process.poll() is not None or server.get("/readyz").status_code == 200,
                   describe=f"{name} ready")
        assert process.poll() is None, f"{name} exited early:\n{server.logs()}"
        yield server
