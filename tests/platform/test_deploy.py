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
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.platform._servers import ROOT, lapor

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
