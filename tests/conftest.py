"""Shared fixtures.

Store backends: `store_url` runs a test once per backend (sqlite, sqlite_writer: SQLite through a writer process,
postgres, kurrentdb). A backend whose server is
absent is skipped with the reason, unless `LAPOR_REQUIRE_BACKENDS` (comma list, e.g. "sqlite,postgres") names it:
then the test fails with the reason (`backend_unavailable`). PostgreSQL comes from `LAPOR_TEST_POSTGRES_URL`, each
test in a fresh schema; KurrentDB from a testcontainers container shared by the session. The terminal summary
lists which backends ran, for the CI log.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from lapor.store import NewEvent, open_store
from lapor.store.writer import WriterProcess

BACKENDS = (
    pytest.param("sqlite", id="sqlite"),
    pytest.param("sqlite_writer", id="sqlite_writer"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("kurrentdb", id="kurrentdb", marks=pytest.mark.docker),
)
KURRENTDB_IMAGE = "docker.kurrent.io/kurrent-latest/kurrentdb:latest"

# The public statistics are kept for 30 s in a running system (reporting's `PublicFigures`). Tests look at them right
# after changing the log, so apps built here compute them per request unless a test asks for the cache
# (tests/reporting/test_public_cache.py); setdefault: a run may still choose.
os.environ.setdefault("LAPOR_PUBLIC_STATISTICS_CACHE", "0")

_backends_ran: Counter[str] = Counter()
_backends_missing: dict[str, str] = {}


def required_backends() -> set[str]:
    return {name.strip() for name in os.environ.get("LAPOR_REQUIRE_BACKENDS", "").split(",") if name.strip()}


def backend_unavailable(backend: str, reason: str) -> NoReturn:
    """Skip the test for a backend that is not here, or fail it when the run demands that backend."""
    _backends_missing[backend] = reason
    if backend in required_backends():
        pytest.fail(f"{backend} is required by LAPOR_REQUIRE_BACKENDS but unavailable: {reason}", pytrace=False)
    pytest.skip(f"{backend} unavailable: {reason}")


@pytest.fixture(autouse=True)
def _root_log_handlers_restored() -> Iterator[None]:
    """A test that runs the CLI in-process (`lapor.cli.main`) points the root logger at the stream pytest captured
    for that test; put back what was there, so later tests' server threads do not log into a closed file."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait for a background thread's work (a bound on waiting, not a timing claim)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def with_search_path(url: str, schema: str) -> str:
    """`url` with `options=-csearch_path=<schema>` added to whatever options it already carries."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["options"] = f"{query.get('options', '')} -csearch_path={schema}".strip()
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The URL of a PostgreSQL server that answers (checked once per session)."""
    url = os.environ.get("LAPOR_TEST_POSTGRES_URL")
    if not url:
        backend_unavailable("postgres", "LAPOR_TEST_POSTGRES_URL is not set")
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError as error:
        backend_unavailable("postgres", f"the server at LAPOR_TEST_POSTGRES_URL does not answer: {error}")
    return url


@contextmanager
def fresh_schema(server: str) -> Iterator[str]:
    """The URL of a fresh, empty schema on `server`, dropped afterwards."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield with_search_path(server, schema)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty schema for this test, dropped afterwards."""
    with fresh_schema(postgres_server) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def paths(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(store URL, read-model URL): two SQLite files, or one fresh PostgreSQL schema holding both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/events.db", f"sqlite:///{tmp_path}/readmodels.db"
    url = request.getfixturevalue("postgres_url")
    return url, url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'events.db'}"


@pytest.fixture
def sqlite_writer_url(tmp_path: Path) -> Iterator[str]:
    """SQLite with its appends sent to a writer process."""
    with WriterProcess(tmp_path / "events.db") as writer:
        yield writer.url


@pytest.fixture
def damaged_sqlite_store(tmp_path: Path) -> Path:
    """A SQLite store of 1,200 events whose pages after the first 20 (the schema is on the first) are overwritten,
    as a disk's bad sectors or a copy cut short leave it: it opens, and fails under a walk of its log."""
    path = tmp_path / "damaged" / "events.db"
    path.parent.mkdir()
    with open_store(f"sqlite:///{path}") as store:
        for n in range(300):
            store.append(f"complaint-T{n}", [NewEvent("Noted", {"n": n, "pad": "x" * 500}) for _ in range(4)])
    with path.open("r+b") as file:
        file.seek(20 * 4096)
        file.write(b"\xde\xad\xbe\xef" * 50_000)
    return path


@pytest.fixture(scope="session")
def kurrentdb_server() -> Iterator[str]:
    """A KurrentDB container for the session (in memory, insecure). Tests share it, so they use their own
    stream names and read from the head they found."""
    import docker
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import HttpWaitStrategy

    try:
        docker.from_env().close()  # building the client asks the engine for its API version
    except docker.errors.DockerException as error:
        backend_unavailable("kurrentdb", f"no Docker engine answers, so KurrentDB cannot be started ({error})")
    container = (
        DockerContainer(KURRENTDB_IMAGE)
        .with_env("KURRENTDB_INSECURE", "true")
        .with_env("KURRENTDB_MEM_DB", "true")
        .with_exposed_ports(2113)
        .waiting_for(HttpWaitStrategy(2113, "/health/live"))
    )
    with container:
        yield f"kurrentdb://{container.get_container_host_ip()}:{container.get_exposed_port(2113)}?tls=false"


@pytest.fixture
def kurrentdb_url(kurrentdb_server: str, tmp_path: Path) -> str:
    return f"{kurrentdb_server}&{urlencode({'vault': tmp_path / 'vault.db'})}"


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest) -> str:
    """The URL of an event store, once per backend."""
    url = request.getfixturevalue(f"{request.param}_url")
    _backends_ran[request.param] += 1
    return url


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not (_backends_ran or _backends_missing):
        return
    terminalreporter.section("store backends")
    for param in BACKENDS:
        backend = param.values[0]
        if backend in _backends_missing:
            verdict = "REQUIRED, FAILED" if backend in required_backends() else "skipped"
            terminalreporter.write_line(f"{backend}: {verdict}: {_backends_missing[backend]}")
        elif _backends_ran[backend]:
            terminalreporter.write_line(f"{backend}: ran ({_backends_ran[backend]} tests)")
