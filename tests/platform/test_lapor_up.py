"""`lapor up` and `lapor serve` as real processes: ready, stopped by a signal with exit code 0, and restarted
from their checkpoints without handling any event twice."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import pytest

from lapor.cli import http_url
from lapor.cli import main as cli_main
from lapor.store import open_store
from lapor.store.writer import WriterProcess
from tests.platform._servers import ROOT, Server, free_port, lapor, run_lapor, started, wait_until

pytestmark = pytest.mark.slow

SUBMISSION = {"title": "Jembatan retak", "body": "Jembatan Liliba retak di sisi timur, berbahaya."}
ROLES = ["admin_national", "admin_agency", "liaison", "unit_officer", "operator", "auditor", "ombudsman",
         "integration:sms"]


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


def test_lapor_up_twice_on_one_data_directory_runs_each_subscription_once_and_the_second_takes_over(tmp_path):
    data = str(tmp_path / "var")
    # Ready means its runners have started, and the first thing a runner does is take its lease. The second serves
    # HTTP (ready: its reads come from the rows the first keeps current) and stands by.
    with lapor(tmp_path, "up", "--data", data, name="first") as first, \
            lapor(tmp_path, "up", "--data", data, name="second") as second:
        for server in (first, second) * 10:
            assert server.post("/api/probe/complaints", json=SUBMISSION).status_code == 201
        wait_until(lambda: first.get("/api/probe/handled").json()["events"] >= 20 and caught_up(first),
                   describe="20 reports handled")
        # (A background loop may add events of its own: the probe's reports are overdue at once.)
        assert second.get("/api/probe/handled").json()["handled_twice"] == 0
        assert first.metric("lapor_subscription_leased", "probe.events") == 1
        assert second.metric("lapor_subscription_leased", "probe.events") == 0
        standby = second.get("/readyz").json()["standby"]
        assert "probe.events" in standby
        assert "reporting.complaints" in standby
        # The loops that act stand by too; the live stream's hub serves each process's own connections.
        assert "background loop routing.deadlines" in standby
        assert "background loop followup.notifications" in standby
        assert "background loop reporting.stream-hub" not in standby
        assert "standby" not in first.get("/readyz").json()

        assert first.stop(signal.SIGTERM) == 0
        wait_until(lambda: second.metric("lapor_subscription_leased", "probe.events") == 1,
                   describe="the second took over")
        for _ in range(5):
            assert second.post("/api/probe/complaints", json=SUBMISSION).status_code == 201
        wait_until(lambda: second.get("/api/probe/handled").json()["events"] >= 25 and caught_up(second),
                   describe="5 more handled by the second")
        assert second.get("/api/probe/handled").json()["handled_twice"] == 0
        wait_until(lambda: "standby" not in second.get("/readyz").json(), describe="the second runs everything")
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


# -- lapor up --workers ---------------------------------------------------------------------------------------

REPORT = {
    "title": "Lampu jalan mati",
    "body": "Lampu jalan di Jl. El Tari mati sejak dua minggu.",
    "region_code": "53.71",
}


def proc_stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, parent, ...); None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def children(parent: int, command: bytes) -> list[int]:
    """The living child processes of `parent` whose command line holds `command`."""
    found = []
    for entry in Path("/proc").iterdir():
        stat = proc_stat(entry.name) if entry.name.isdigit() else None
        if stat is None or int(stat[1]) != parent or stat[0] == "Z":
            continue
        try:
            if command in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile
    return found


def http_workers(parent: int) -> list[int]:
    """The HTTP worker processes `lapor up` spawned (not multiprocessing's resource tracker)."""
    return children(parent, b"spawn_main")


def alive(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def logged_pids(server: Server, **matching: str) -> set[int]:
    """The processes that wrote log lines with these fields."""
    entries = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    return {entry["pid"] for entry in entries if all(entry.get(key) == value for key, value in matching.items())}


@pytest.mark.parametrize("store_writer", [[], ["--store-writer"]], ids=["own-commits", "store-writer"])
def test_lapor_up_with_workers_answers_from_every_process_and_stops_them_all(tmp_path, store_writer):
    data = str(tmp_path / "var")
    with lapor(tmp_path, "up", "--data", data, "--workers", "2", *store_writer, name="workers",
               module="lapor.cli") as server:
        [worker] = http_workers(server.process.pid)
        wait_until(lambda: worker in logged_pids(server, message="Application startup complete."),
                   describe="the worker listening")
        # Each request on a connection of its own: the kernel spreads connections over both processes.
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: server.post("/api/complaints", json=REPORT), range(64)))
        assert [answer.status_code for answer in answers] == [201] * 64
        assert logged_pids(server, logger="lapor.access", route="/api/complaints") == {server.process.pid, worker}
        # Only the first process runs the subscriptions: a worker running them too would handle events twice.
        started = [line for line in server.logs().splitlines() if '"started ' in line and "subscriptions" in line]
        assert [json.loads(line)["pid"] for line in started] == [server.process.pid]
        # Twenty identical retries spread over both processes still make one report.
        key = {"Idempotency-Key": "c5a7e0b2-5f0e-4c59-9c55-3f1f3d2d0a11"}
        with ThreadPoolExecutor(20) as pool:
            retries = list(pool.map(lambda _: server.post("/api/complaints", json=REPORT, headers=key), range(20)))
        assert {retry.status_code for retry in retries} == {201}
        assert len({retry.json()["tracking_id"] for retry in retries}) == 1
        tracking_ids = {answer.json()["tracking_id"] for answer in answers + retries}
        with sqlite3.connect(Path(data) / "events.db") as store:
            recorded = store.execute("SELECT count(*) FROM events WHERE type = 'ComplaintSubmitted'").fetchone()[0]
        assert recorded == len(tracking_ids) == 65
        assert server.stop(signal.SIGINT) == 0
        wait_until(lambda: not alive(worker), timeout=30, describe="the worker stopped")
        assert "Traceback" not in server.logs()
    if store_writer:  # every process appended through the writer, which stopped after them
        [said] = [json.loads(line)["message"] for line in server.logs().splitlines() if "store writer: stopped" in line]
        assert int(said.split()[4]) >= recorded
        assert not (Path(data) / "events.db-writer.sock").exists()


def store_writers(parent: int) -> list[int]:
    """The store writer processes `lapor up --store-writer` started."""
    return children(parent, b"lapor.store.writer")


def test_lapor_up_starts_its_store_writer_again_when_it_dies_and_no_report_is_lost_or_refused(tmp_path):
    """Every append of every process goes through the writer: one that died (killed, out of memory) was left dead,
    and every command after it was a 500 for as long as `lapor up` ran, while /readyz said ready."""
    data = tmp_path / "var"
    with lapor(tmp_path, "up", "--data", str(data), "--store-writer", name="writer", module="lapor.cli") as server:
        [writer] = store_writers(server.process.pid)
        answers: list[httpx2.Response] = []

        def submit_reports(count: int) -> None:
            for _ in range(count):
                answers.append(server.post("/api/complaints", json=REPORT))

        with ThreadPoolExecutor(4) as pool:
            submitting = [pool.submit(submit_reports, 8) for _ in range(4)]
            wait_until(lambda: len(answers) >= 4, describe="reports coming in")
            os.kill(writer, signal.SIGKILL)  # while reports are being submitted
            for done in submitting:
                done.result()
        assert [answer.status_code for answer in answers] == [201] * 32
        [new_writer] = store_writers(server.process.pid)
        assert new_writer != writer
        assert "starting a new one" in server.logs()
        after = server.post("/api/complaints", json=REPORT)
        assert after.status_code == 201
        tracking_ids = [answer.json()["tracking_id"] for answer in [*answers, after]]
        with sqlite3.connect(data / "events.db") as store:
            recorded = [row[0] for row in store.execute(
                "SELECT json_extract(data, '$.tracking_id') FROM events WHERE type = 'ComplaintSubmitted'")]
        assert sorted(recorded) == sorted(tracking_ids)  # each acknowledged report once, nothing else
        assert server.stop(signal.SIGTERM) == 0
        assert not store_writers(server.process.pid)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_whole_group_stops_lapor_up_and_its_store_writer_once_without_an_error(tmp_path, sig):
    """systemd (its control group), a terminal's Ctrl-C and `kill -- -PGID` signal every process of the service at
    once. The store writer stopped at once too, while `lapor up` was still finishing its requests: `lapor up` logged
    an ERROR, "exited with code 0; starting a new one", and started another writer on its way out (session 32). The
    writer now stops when `lapor up` tells it, after its last append."""
    data = tmp_path / "var"
    with lapor(tmp_path, "up", "--data", str(data), "--store-writer", "--workers", "2", name="group",
               module="lapor.cli", session=True) as server:
        [writer] = store_writers(server.process.pid)
        assert server.post("/api/complaints", json=REPORT).status_code == 201
        os.killpg(server.process.pid, sig)
        assert server.process.wait(timeout=30) == 0
        wait_until(lambda: not alive(writer), timeout=30, describe="the store writer stopped")
    logged = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    assert [line["message"] for line in logged if line["level"] in ("ERROR", "CRITICAL")] == []
    stopped = [line["message"] for line in logged if line["message"].startswith("store writer: stopped")]
    [said] = stopped  # one writer, which committed the report
    assert int(said.split()[4]) >= 1


def test_a_worker_stops_when_lapor_up_is_killed(tmp_path):
    with lapor(tmp_path, "up", "--data", str(tmp_path / "var"), "--workers", "2", name="killed",
               module="lapor.cli") as server:
        [worker] = http_workers(server.process.pid)
        server.process.kill()
        server.process.wait()
        wait_until(lambda: not alive(worker), timeout=30, describe="the orphaned worker stopped")


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["--workers", "0"], "--workers must be at least 1, not 0"),
        (["--workers", "2", "--training"], "training mode's clock lives in one process"),
    ],
)
def test_lapor_up_refuses_workers_it_cannot_run(tmp_path, capsys, arguments, complaint):
    assert cli_main(["up", "--data", str(tmp_path / "var"), "--port", str(free_port()), *arguments]) == 2
    assert complaint in capsys.readouterr().err


def test_lapor_up_refuses_a_store_writer_for_a_store_that_is_not_sqlite(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LAPOR_STORE", "postgresql://postgres@127.0.0.1:5432/test")
    assert cli_main(["up", "--data", str(tmp_path / "var"), "--port", str(free_port()), "--store-writer"]) == 2
    assert "a store writer serves a SQLite store" in capsys.readouterr().err


def test_lapor_up_refuses_a_store_writer_when_another_serves_the_store(tmp_path, capsys):
    data = tmp_path / "var"
    with WriterProcess(data / "events.db"):
        assert cli_main(["up", "--data", str(data), "--port", str(free_port()), "--store-writer"]) == 2
    assert "did not start" in capsys.readouterr().err


def test_lapor_up_logs_a_worker_that_died_and_goes_on_serving(tmp_path):
    with lapor(tmp_path, "up", "--data", str(tmp_path / "var"), "--workers", "2", name="lost",
               module="lapor.cli") as server:
        [worker] = http_workers(server.process.pid)
        os.kill(worker, signal.SIGKILL)
        wait_until(lambda: "exited with code -9" in server.logs(), describe="the lost worker logged")
        assert server.post("/api/complaints", json=REPORT).status_code == 201
        assert server.stop(signal.SIGTERM) == 0


def test_lapor_up_with_workers_refuses_a_port_another_server_listens_on(tmp_path):
    with lapor(tmp_path, "up", "--data", str(tmp_path / "first"), "--workers", "2", name="first",
               module="lapor.cli") as first:
        port = first.url.rsplit(":", 1)[1]
        second = run_lapor("up", "--data", str(tmp_path / "second"), "--workers", "2", "--port", port)
        assert second.returncode == 2
        assert f"cannot listen on 127.0.0.1:{port}" in second.stderr
        assert not (tmp_path / "second" / "events.db").exists()  # refused before anything was opened
        assert first.get("/readyz").status_code == 200


@contextmanager
def demo_on_port_0(tmp_path: Path, *args: str) -> Iterator[tuple[Server, str, list[str]]]:
    """`lapor up --demo --port 0 <args>` once its banner is out: the server at the URL the banner names, the banner's
    first line and its token lines."""
    up = ("up", "--demo", "--data", str(tmp_path / "var"), "--port", "0", *args)
    with started(tmp_path, *up, name="up", module="lapor.cli") as (process, stdout, stderr):
        wait_until(lambda: process.poll() is not None or "\n  integration:sms " in stdout.read_text(),
                   describe="the banner")
        banner, *lines = stdout.read_text().splitlines()
        url = re.fullmatch(r"LAPOR demo on (\S+)/docs — bearer tokens .*", banner)
        assert url is not None, banner
        yield Server(process, url[1], stdout, stderr), banner, lines


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one-process", "workers"])
def test_lapor_up_demo_on_port_0_prints_the_port_the_system_gave_and_serves_there(tmp_path, workers):
    """`--port 0` asks for any free port: until session 28 the banner said http://127.0.0.1:0/docs, and with
    --workers each worker bound a free port of its own, answering nobody."""
    with demo_on_port_0(tmp_path, *workers) as (server, banner, lines):
        url = re.fullmatch(r"http://127\.0\.0\.1:([0-9]+)", server.url)
        assert url is not None, banner
        assert int(url[1]) != 0
        wait_until(lambda: server.get("/readyz").status_code == 200, describe="ready on the port in the banner")
        tokens = dict(line.split() for line in lines)
        national = server.get("/api/reports/national", headers={"Authorization": f"Bearer {tokens['admin_national']}"})
        assert national.status_code == 200
        if workers:  # the worker shares the port: connections reach both processes
            [worker] = http_workers(server.process.pid)
            wait_until(lambda: worker in logged_pids(server, message="Application startup complete."),
                       describe="the worker listening")
            with ThreadPoolExecutor(16) as pool:
                answers = list(pool.map(lambda _: server.post("/api/complaints", json=REPORT), range(64)))
            assert [answer.status_code for answer in answers] == [201] * 64
            assert logged_pids(server, logger="lapor.access", route="/api/complaints") == {server.process.pid, worker}
        assert server.stop(signal.SIGTERM) == 0


@pytest.mark.parametrize(
    ("host", "url", "hostname"),
    [
        ("127.0.0.1", "http://127.0.0.1:8000/docs", "127.0.0.1"),
        ("lapor.example.go.id", "http://lapor.example.go.id:8000/docs", "lapor.example.go.id"),
        ("::1", "http://[::1]:8000/docs", "::1"),
        ("::", "http://[::]:8000/docs", "::"),
        ("fe80::1%eth0", "http://[fe80::1%25eth0]:8000/docs", "fe80::1%25eth0"),  # RFC 6874: the zone's % escaped
    ],
)
def test_a_servers_url_writes_an_ipv6_address_in_brackets(host, url, hostname):
    """RFC 3986: `http://::1:8000` (until session 28) is no URL a client reads as ::1, port 8000."""
    assert http_url(host, 8000, "/docs") == url
    parsed = urlsplit(url)
    assert (parsed.hostname, parsed.port, parsed.path) == (hostname, 8000, "/docs")


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_lapor_up_on_an_ipv6_address_names_its_url_with_the_address_in_brackets(tmp_path):
    """`lapor up --demo --host ::1 --port 0`: the banner and the log line said `http://::1:<port>` until session 28."""
    if not ipv6_loopback():
        pytest.skip("this machine cannot listen on the IPv6 loopback address ::1")
    with demo_on_port_0(tmp_path, "--host", "::1") as (server, banner, _):
        assert re.fullmatch(r"http://\[::1\]:[0-9]+", server.url), banner
        wait_until(lambda: server.get("/healthz").status_code == 200, describe="answering at the banner's URL")
        assert logged_pids(server, message=f"listening on {server.url}") == {server.process.pid}
        assert server.stop(signal.SIGTERM) == 0


@pytest.mark.parametrize("command", [["up"], ["serve", "intake"]])
def test_a_port_out_of_range_is_refused_before_anything_is_opened(tmp_path, command):
    """It was taken as given: the server then listened on the port modulo 65536 (15264) while its log said
    http://127.0.0.1:80800."""
    result = run_lapor(*command, "--data", str(tmp_path / "var"), "--port", "80800")
    assert result.returncode == 2
    assert "argument --port: expected a port from 0 to 65535, not '80800'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "var").exists()


@pytest.mark.parametrize("command", [["up"], ["serve", "intake"]])
def test_a_port_another_server_listens_on_is_refused_before_anything_is_opened(tmp_path, command):
    """Only `--workers` asked first: otherwise the store was opened, every subscription and background loop started
    (beside the other server's, when it serves the same data), and only then did the bind fail, with exit 3."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_lapor(*command, "--data", str(tmp_path / "var"), "--port", str(port))
    assert result.returncode == 2
    assert result.stderr == f"lapor: cannot listen on 127.0.0.1:{port}: [Errno 98] Address already in use\n"
    assert not (tmp_path / "var").exists()


def test_a_store_writer_that_cannot_keep_its_store_there_is_one_line(tmp_path):
    """A data directory that is a file (or cannot be made) ended `lapor writer` in a traceback, exit 1, and
    `lapor up --store-writer` printed the writer's traceback before its own line."""
    data = tmp_path / "var"
    data.write_text("not a directory\n")
    environment = {**os.environ, "LAPOR_SECRET": "s" * 40}
    for command in (["writer"], ["up", "--store-writer", "--port", str(free_port())]):
        result = run_lapor(*command, "--data", str(data), env=environment)
        assert result.returncode == 2, command
        assert "Traceback" not in result.stderr, command
        assert f"store writer: not started: cannot keep the store {data}/events.db there" in result.stderr, command


def test_a_store_writer_refused_a_store_that_is_not_a_database_leaves_no_socket_behind(tmp_path):
    """Session 31: the writer bound its socket first, then failed on the file ("file is not a database"), and the
    socket stayed, as no writer that stops leaves one."""
    data = tmp_path / "var"
    data.mkdir()
    (data / "events.db").write_text("not a database\n")
    environment = {**os.environ, "LAPOR_SECRET": "s" * 40}
    for command in (["writer"], ["up", "--store-writer", "--port", str(free_port())]):
        result = run_lapor(*command, "--data", str(data), env=environment)
        assert result.returncode == 2, command
        assert "store writer: not started: cannot keep the store" in result.stderr, command
        assert not (data / "events.db-writer.sock").exists(), command


@pytest.mark.parametrize("command", [["up"], ["serve", "intake"], ["seed"]])
def test_a_store_url_naming_a_writer_that_does_not_answer_is_refused_before_anything_starts(tmp_path, command):
    """`LAPOR_STORE=...?writer=<socket>` without `lapor writer` running: the server opened the store, started, and
    failed at its first append with a traceback in its log and exit 3 (`lapor seed`: a traceback, exit 1)."""
    data = tmp_path / "var"
    socket_path = tmp_path / "events.db-writer.sock"
    environment = {**os.environ, "LAPOR_STORE": f"sqlite:///{data}/events.db?writer={socket_path}"}
    ports = ["--port", str(free_port())] if command[0] != "seed" else []
    result = run_lapor(*command, "--data", str(data), *ports, env=environment)
    assert result.returncode == 2
    assert result.stderr == (
        f"lapor: the store writer at {socket_path} does not answer (No such file or directory): start it first "
        f"(lapor writer --data DIR), or leave ?writer= out of LAPOR_STORE\n"
    )
    assert not (data / "events.db").exists()  # refused before anything was opened


@pytest.fixture(scope="module")
def seeded_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("seeded") / "var"
    subprocess.run([sys.executable, "-m", "lapor.cli", "seed", "--data", str(data)], cwd=ROOT, check=True,
                   capture_output=True, timeout=300)
    return data


@pytest.mark.parametrize(
    "command",
    [["up"], ["serve", "reporting"], ["seed"], ["parked", "replay", "--subscription", "reporting.complaints", "--all"]],
)
def test_read_models_of_another_store_are_refused_before_anything_runs(tmp_path, seeded_data, command):
    """LAPOR_STORE pointed at another store while LAPOR_DATA's read models stayed (or a store restored from an older
    backup than they were): the subscriptions went on from checkpoints past the store's end, so every event it held
    or recorded up to there was never handled, no report reached a queue or a view, and /readyz said ready."""
    other = tmp_path / "other" / "events.db"
    open_store(f"sqlite:///{other}").close()  # another installation's, still empty
    environment = {**os.environ, "LAPOR_STORE": f"sqlite:///{other}"}
    ports = ["--port", str(free_port())] if command[0] in ("up", "serve") else []
    with sqlite3.connect(seeded_data / "readmodels.db") as db:
        (checkpoint,) = db.execute("SELECT max(position) FROM subscription_checkpoints").fetchone()
    result = run_lapor(*command, "--data", str(seeded_data), *ports, env=environment)
    assert (result.returncode, result.stdout) == (2, "")
    problem = result.stderr.splitlines()[-1]
    assert problem.startswith(
        f"lapor: the read models sqlite:///{seeded_data}/readmodels.db have handled events up to position {checkpoint} "
    )
    assert f"but the store sqlite:///{other} ends at 0: they were built from another store" in problem
    assert "Traceback" not in result.stderr
