"""`deploy/`: what the container image, the compose file and the Kubernetes manifest say, done here for real where
this machine can (it has no Docker engine and no cluster): the image's install built from exactly what its
Dockerfile copies, the compose file's command and settings run as a real `lapor` process against the real
PostgreSQL, and the manifest held to the compose file's command and settings."""

from __future__ import annotations

import json
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from lapor.auth import TokenService
from lapor.clock import SystemClock
from lapor.principal import NATIONAL_ADMIN_AGENCY, Role
from tests.conftest import backend_unavailable
from tests.platform._servers import ROOT, free_port, lapor, run_lapor, wait_until

DEPLOY = ROOT / "deploy"
PACKAGES = ("lapor", "schemas", "services")


def dockerfile() -> list[list[str]]:
    """The Dockerfile's instructions, each as its words (continuation lines joined, comments dropped; an exec
    form's JSON array as its items)."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    instructions = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        keyword, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        instructions.append([keyword, *(json.loads(rest) if rest.startswith("[") else shlex.split(rest))])
    return instructions


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def manifest() -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all((DEPLOY / "kubernetes" / "lapor.yaml").read_text()) if document]


def kubernetes_container() -> dict[str, Any]:
    [deployment] = [document for document in manifest() if document["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def without_options(command: list[str], *names: str) -> list[str]:
    left = list(command)
    for name in names:
        at = left.index(name)
        del left[at : at + 2]
    return left


def tracked_package_files() -> set[str]:
    listed = subprocess.run(["git", "ls-files", *PACKAGES], cwd=ROOT, capture_output=True, text=True, check=True)
    return {path for path in listed.stdout.splitlines() if "__pycache__" not in path}


def test_the_image_installs_every_file_of_the_services(tmp_path):
    """The wheel pip builds inside the image, from only what the Dockerfile copies, holds every file of the three
    packages: the directory's data, the exported schemas, the calendar's holidays, not only the code."""
    context = tmp_path / "context"
    copies = [words[1:] for words in dockerfile() if words[0] == "COPY"]
    assert copies, "the Dockerfile copies nothing"
    ignored = {line.strip() for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()}
    for *sources, destination in copies:
        for source in sources:
            assert source not in ignored, f"{source} is copied but left out of the build context"
            target = context / destination / (Path(source).name if destination.endswith("/") else "")
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / source, target)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path / "wheel"),
         str(context)],
        capture_output=True, text=True,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "wheel").glob("lapor-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        installed = set(archive.namelist())
    missing = sorted(tracked_package_files() - installed)
    assert missing == [], f"files the image would not have: {missing}"
    assert [words for words in dockerfile() if words[0] == "USER"] == [["USER", "10001"]]


def test_compose_and_kubernetes_run_one_command_with_the_same_settings():
    service = compose()["services"]["lapor"]
    container = kubernetes_container()
    assert container["command"] == service["command"]
    [cmd] = [words for words in dockerfile() if words[0] == "CMD"]
    assert cmd[1:] == service["command"], "the image's default command is the one compose and Kubernetes run"
    assert option(service["command"], "--host") == "0.0.0.0"  # reachable from outside the container
    port = int(option(service["command"], "--port"))
    assert service["ports"] == [f"{port}:{port}"]
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    probes = {probe: container[probe]["httpGet"] for probe in ("readinessProbe", "livenessProbe")}
    assert probes == {"readinessProbe": {"path": "/readyz", "port": "http"},
                      "livenessProbe": {"path": "/healthz", "port": "http"}}
    environment = {entry["name"]: entry.get("value", "<secret>") for entry in container["env"]}
    assert set(environment) == set(service["environment"])
    for name, value in service["environment"].items():
        if "${" not in value:
            assert environment[name] == value, name
        else:  # what compose interpolates, Kubernetes takes from the secret
            assert environment[name] == "<secret>", name
    # One process runs the subscriptions: never two pods at once.
    [deployment] = [document for document in manifest() if document["kind"] == "Deployment"]
    assert (deployment["spec"]["replicas"], deployment["spec"]["strategy"]["type"]) == (1, "Recreate")
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001


def service_links(service: dict[str, Any], address: str) -> dict[str, str]:
    """The variables Kubernetes sets in every container of the namespace for `service` (enableServiceLinks, on
    unless a pod turns it off): `{NAME}_SERVICE_HOST`, `{NAME}_PORT_80_TCP_ADDR`, ... (kubernetes.io, "Service")."""
    name = service["metadata"]["name"].upper().replace("-", "_")
    [first, *_] = ports = service["spec"]["ports"]
    links = {f"{name}_SERVICE_HOST": address, f"{name}_SERVICE_PORT": str(first["port"]),
             f"{name}_PORT": f"tcp://{address}:{first['port']}"}
    for port in ports:
        link = f"{name}_PORT_{port['port']}_TCP"
        links |= {link: f"tcp://{address}:{port['port']}", f"{link}_PROTO": "tcp", f"{link}_PORT": str(port["port"]),
                  f"{link}_ADDR": address}
        if "name" in port:
            links[f"{name}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(port["port"])
    return links


def test_the_pod_starts_beside_the_manifests_service_and_others_named_lapor(tmp_path):
    """Kubernetes gives each container variables for every Service of its namespace: for the manifest's own
    Service `lapor` they are LAPOR_SERVICE_HOST, LAPOR_PORT, ..., which are not settings (nor are those of a
    `lapor-postgres` beside it). A pod restarted once the Service existed exited 2 on them ("unknown setting
    LAPOR_SERVICE_HOST") and stayed in CrashLoopBackOff."""
    [service] = [document for document in manifest() if document["kind"] == "Service"]
    database = {"metadata": {"name": "lapor-postgres"}, "spec": {"ports": [{"port": 5432}]}}
    secret = {"LAPOR_STORE": "postgresql://lapor:pw@postgres.example:5432/lapor", "LAPOR_SECRET": "s3cret-" + "x" * 40}
    environment = {entry["name"]: entry.get("value") or secret[entry["name"]]
                   for entry in kubernetes_container()["env"]}
    environment |= service_links(service, "10.96.0.12") | service_links(database, "10.96.0.13")
    assert {"LAPOR_SERVICE_HOST", "LAPOR_SERVICE_PORT_HTTP", "LAPOR_POSTGRES_PORT_5432_TCP_ADDR"} <= set(environment)
    created = run_lapor("token", "create", "--role", "operator",
                        env={**environment, "PATH": "/usr/bin:/bin", "LAPOR_DATA": str(tmp_path)})
    assert (created.returncode, created.stderr) == (0, "")
    assert created.stdout.count(".") == 2  # a signed token


def test_the_compose_store_is_the_compose_database():
    services = compose()["services"]
    written = services["lapor"]["environment"]["LAPOR_STORE"]
    store = urlsplit(re.sub(r"\$\{POSTGRES_PASSWORD[^}]*\}", "password", written))
    database = services["postgres"]["environment"]
    assert (store.scheme, store.hostname, store.port) == ("postgresql", "postgres", 5432)
    assert (store.username, store.path.lstrip("/")) == (database["POSTGRES_USER"], database["POSTGRES_DB"])
    assert services["lapor"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}


@pytest.mark.postgres
def test_the_compose_service_runs_as_written_on_postgresql(tmp_path, postgres_url):
    """The compose file's command and settings, its database swapped for this test's schema: ready, taking a
    report, answering the national view to a token signed with the same secret, and stopped cleanly."""
    service = compose()["services"]["lapor"]
    command = service["command"]
    assert command[0] == "lapor"
    settings = {name: value for name, value in service["environment"].items() if "${" not in value}
    settings |= {"LAPOR_STORE": postgres_url, "LAPOR_SECRET": secrets.token_urlsafe(48)}
    arguments = [*without_options(command[1:], "--host", "--port"), "--data", str(tmp_path / "var")]
    with lapor(tmp_path, *arguments, name="compose", module="lapor.cli", env=settings) as server:
        report = {"title": "Lampu jalan mati", "body": "Lampu jalan di Jl. El Tari mati.", "region_code": "53.71"}
        submitted = server.post("/api/complaints", json=report)
        assert submitted.status_code == 201, submitted.text
        tracking_id = submitted.json()["tracking_id"]
        assert server.get(f"/api/complaints/{tracking_id}").status_code == 200
        token = subprocess.run(
            [sys.executable, "-m", "lapor.cli", "token", "create", "--role", "operator"],
            capture_output=True, text=True, check=True, env={**settings, "PATH": "/usr/bin:/bin"}, cwd=ROOT,
        ).stdout.strip()
        deadline = time.monotonic() + 30
        while True:
            national = server.get("/api/reports/national", headers={"Authorization": f"Bearer {token}"})
            assert national.status_code == 200, national.text
            if national.json()["totals"]["reports"] >= 1:
                break
            assert time.monotonic() < deadline, "the report never reached the national view"
            time.sleep(0.2)
        assert server.stop(signal.SIGTERM) == 0
    assert "Traceback" not in server.logs()


# -- the four services apart, behind the gateway ------------------------------------------------------------

SAMPLES = {
    "agency_id": ["pemda-53.71", "pemda-53.71/dinkes"],
    "rule_id": ["kupang-kesehatan"],
    "webhook_id": ["wh-1"],
    "draft_id": ["draft-1"],
    "kind": ["validation"],
    "channel": ["hotline"],
    "name": ["lapor.js"],
}


def served_routes(server: Any) -> set[tuple[str, str]]:
    """(method, template) of every route the service answers: its OpenAPI document, and the pages beside it."""
    paths = server.get("/openapi.json").json()["paths"]
    routes = {(method.upper(), path) for path, operations in paths.items() for method in operations}
    if "/api/complaints" in paths:  # intake: the citizen pages are left out of its document
        routes |= {("GET", "/"), ("GET", "/lacak"), ("GET", "/static/{name}")}
    return routes


def answered(server: Any, method: str) -> float:
    """How many requests of `method` the service has answered (its /metrics, whose own reads are left out)."""
    total = 0.0
    for family in text_string_to_metric_families(server.get("/metrics").text):
        for sample in family.samples:
            labels = sample.labels
            if (sample.name == "lapor_http_requests_total" and labels.get("method") == method
                    and labels.get("route") != "/metrics"):
                total += sample.value
    return total


def concrete(template: str, tracking_id: str) -> list[str]:
    paths = [template.replace("{tracking_id}", tracking_id)]
    for name, values in SAMPLES.items():
        paths = [path.replace("{" + name + "}", value) for path in paths for value in values]
    assert "{" not in paths[0], f"no sample for a parameter of {template}"
    return paths


@contextmanager
def gateway(tmp_path: Path, upstreams: dict[str, str]) -> Iterator[str]:
    """deploy/gateway/nginx.conf run by a real nginx, its upstreams and paths pointed at this test's."""
    nginx = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if nginx is None:
        backend_unavailable("nginx", "Debian's nginx-light is not installed (.ci/run installs it)")
    port = free_port()
    text = (DEPLOY / "gateway" / "nginx.conf").read_text().replace("/tmp/nginx", str(tmp_path / "nginx"))
    text = text.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    for service, address in upstreams.items():
        text = text.replace(f"server {service}:8000;", f"server {address};")
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    log = (tmp_path / "nginx.log").open("w")
    process = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"],
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: process.poll() is not None or httpx2.get(url + "/healthz", timeout=5).status_code == 200,
                   describe="the gateway")
        assert process.poll() is None, (tmp_path / "nginx.log").read_text()
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def test_a_redirect_through_the_gateway_keeps_the_address_the_client_used(tmp_path):
    """A path with a trailing slash (/lacak/, /api/agencies/) is redirected by the service to the one without, as
    an absolute URL built from the Host header. The gateway sent `Host: $host`, which has no port, so the citizen
    who opened http://gateway:8080/lacak/ was sent to http://gateway/lacak, where nothing answers."""
    env = {"LAPOR_LIMITS__TRUST_FORWARDED_FOR": "true"}  # as compose.services.yaml sets it
    with lapor(tmp_path, "up", "--data", str(tmp_path / "var"), name="one", module="lapor.cli", env=env) as server:
        address = server.url.removeprefix("http://")
        with gateway(tmp_path, dict.fromkeys(("intake", "routing", "followup", "reporting"), address)) as url:
            for path in ("/lacak/", "/api/agencies/"):
                answer = httpx2.get(url + path, timeout=10)
                assert answer.status_code == 307, answer.text
                assert answer.headers["location"] == url + path.rstrip("/")
                assert httpx2.get(answer.headers["location"], timeout=10).status_code in (200, 401)
                # Behind a TLS terminator (which sets X-Forwarded-Proto), the redirect stays on https.
                behind_tls = httpx2.get(url + path, headers={"X-Forwarded-Proto": "https"}, timeout=10)
                assert behind_tls.headers["location"] == url.replace("http://", "https://", 1) + path.rstrip("/")


OPERATIONS = ("/metrics", "/readyz")  # what the gateway does not pass on


def test_the_operations_endpoints_stay_off_the_gateway(tmp_path):
    """/metrics (every route's counters) and /readyz (why a service is not ready, which subscription) are for
    the scraper and the probes, which reach a service on its own address: through the public gateway they are a
    404 problem, with or without a trailing slash. /healthz, which says only "alive", goes through."""
    with lapor(tmp_path, "up", "--data", str(tmp_path / "var"), name="one", module="lapor.cli") as server:
        address = server.url.removeprefix("http://")
        with gateway(tmp_path, dict.fromkeys(("intake", "routing", "followup", "reporting"), address)) as url:
            for path in OPERATIONS:
                assert httpx2.get(server.url + path, timeout=10).status_code == 200
                for asked in (path, path + "/", path + "?format=text"):
                    answer = httpx2.get(url + asked, timeout=10)
                    assert answer.status_code == 404, asked
                    assert answer.headers["content-type"] == "application/problem+json"
                    problem = answer.json()
                    assert (problem["type"], problem["status"], problem["instance"]) == (
                        "/problems/not-found", 404, asked.split("?")[0])
            assert httpx2.get(url + "/healthz", timeout=10).json() == {"status": "alive"}


@pytest.mark.postgres
def test_the_gateway_sends_every_route_to_the_service_that_serves_it(tmp_path, postgres_url):
    """The four services as compose.services.yaml runs them (command and settings; this test's database), behind
    the gateway's nginx.conf: every route of every service, called through the gateway, reaches a service that
    has it (never "no resource at", never 405), and a report goes from the form to the national view and the live
    stream through the one address."""
    services = yaml.safe_load((DEPLOY / "compose.services.yaml").read_text())["services"]
    secret = secrets.token_urlsafe(48)
    with ExitStack() as stack:
        running = {}
        for name in ("routing", "intake", "followup", "reporting"):  # routing first: it registers the directory
            service = services[name]
            assert service["command"][:3] == ["lapor", "serve", name]
            assert option(service["command"], "--host") == "0.0.0.0"
            settings = {key: value for key, value in service["environment"].items() if "${" not in value}
            settings |= {"LAPOR_STORE": postgres_url, "LAPOR_SECRET": secret}
            arguments = [*without_options(service["command"][1:], "--host", "--port"), "--data", str(tmp_path / name)]
            started = lapor(tmp_path, *arguments, name=name, module="lapor.cli", env=settings)
            running[name] = stack.enter_context(started)
        url = stack.enter_context(gateway(tmp_path, {name: server.url.removeprefix("http://")
                                                     for name, server in running.items()}))
        issue = TokenService(secret, SystemClock()).issue
        admin = {"Authorization": f"Bearer {issue(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)}"}
        report = {"title": "Lampu jalan mati", "body": "Lampu jalan di Jl. El Tari mati.", "region_code": "53.71"}
        filed = httpx2.post(url + "/api/complaints", json=report, timeout=10)
        assert filed.status_code == 201, filed.text
        tracking_id = filed.json()["tracking_id"]

        # Each route goes to the one service that has it; what every service has (health, problems, revocations)
        # to intake. Who answered is read off that service's own request counter.
        owners: dict[tuple[str, str], set[str]] = {}
        for name, server in running.items():
            for route in served_routes(server):
                owners.setdefault(route, set()).add(name)
        misrouted = []
        for (method, template), having in sorted(owners.items()):
            owner = next(iter(having)) if len(having) == 1 else "intake"
            for path in concrete(template, tracking_id):
                if path in OPERATIONS:  # kept off the gateway: test_the_operations_endpoints_stay_off_the_gateway
                    continue
                if path == "/api/stream":
                    with httpx2.stream(method, url + path, headers=admin, timeout=10) as answer:
                        if answer.headers.get("content-type", "").split(";")[0] != "text/event-stream":
                            misrouted.append(f"{method} {path}: {answer.status_code}, not the stream")
                    continue
                before = answered(running[owner], method)
                answer = httpx2.request(method, url + path, headers=admin, timeout=30,
                                        json={} if method in ("POST", "PUT") else None)
                if answered(running[owner], method) != before + 1:
                    misrouted.append(f"{method} {path}: not answered by {owner} ({answer.status_code})")
                # With a trailing slash, the owner's redirect to the route, as `lapor up` answers it (an action's
                # slash took it to intake, whose 404 said there was no such resource).
                if path.endswith("/"):
                    continue
                slashed = httpx2.request(method, url + path + "/", headers=admin, timeout=30)
                if (slashed.status_code, slashed.headers.get("location")) != (307, url + path):
                    misrouted.append(f"{method} {path}/: {slashed.status_code}, not the redirect to {path}")
        assert misrouted == [], "\n".join(misrouted)

        liaison = {"Authorization": f"Bearer {issue(Role.liaison, agency_id='pemda-53.71')}"}
        for action, body, headers in [("verify", {"category": "Infrastruktur"}, admin),
                                      ("dispose", {"agency_id": "pemda-53.71"}, admin), ("accept", {}, liaison),
                                      ("follow-ups", {"text": "Lampu sudah diganti."}, liaison)]:
            answer = httpx2.post(f"{url}/api/complaints/{tracking_id}/{action}", json=body, headers=headers,
                                 timeout=10)
            assert answer.status_code in (200, 201), f"{action}: {answer.text}"
        wait_until(lambda: httpx2.get(f"{url}/api/reports/national", headers=admin, timeout=10
                                      ).json()["totals"]["reports"] == 1, describe="the national view")
        # The live stream from the log's start (Last-Event-ID 0), as it comes through the gateway.
        types: list[str] = []
        deadline = time.monotonic() + 30
        with httpx2.stream("GET", f"{url}/api/stream", headers={**admin, "Last-Event-ID": "0"}, timeout=30) as stream:
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    types.append(line.removeprefix("event: "))
                if len(types) == 5 or time.monotonic() > deadline:
                    break
        assert types == ["ComplaintSubmitted", "ComplaintVerified", "ComplaintDisposed", "DispositionAccepted",
                         "FollowUpPosted"]
