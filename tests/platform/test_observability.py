"""Correlation ids, request logs, metrics and readiness."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from anyio import to_thread

from lapor.context import BackgroundLoop, ServiceContext, ServiceDefinition
from lapor.logs import JsonFormatter
from lapor.store import NO_STREAM, AppendNotRecorded, NewEvent, error_kind
from lapor.subscriptions import Subscription
from tests.conftest import wait_until
from tests.platform import probe
from tests.test_subscriptions import EFFECTS, locked, writing_to

SUBMISSION = {"title": "Lampu jalan padam", "body": "Jalan El Tari gelap sejak minggu lalu."}


def test_the_callers_correlation_id_is_echoed(client):
    response = client.get("/healthz", headers={"X-Correlation-ID": "kupang-7f3a"})
    assert response.headers["X-Correlation-ID"] == "kupang-7f3a"


def test_a_correlation_id_is_generated_when_none_or_a_suspicious_one_is_sent(client):
    generated = client.get("/healthz").headers["X-Correlation-ID"]
    replaced = client.get("/healthz", headers={"X-Correlation-ID": "x\" injected=1 {"}).headers["X-Correlation-ID"]
    assert len(generated) == 32
    assert replaced != 'x" injected=1 {'
    assert generated != replaced


def test_the_correlation_id_reaches_the_events_a_request_appends(client):
    response = client.post("/api/probe/complaints", json=SUBMISSION, headers={"X-Correlation-ID": "sub-001"})
    tracking_id = response.json()["tracking_id"]
    [event] = client.app.state.context.store.read_stream(f"complaint-{tracking_id}")
    assert event.metadata["correlation_id"] == "sub-001"
    assert event.metadata["actor"] == f"reporter:{tracking_id}"


def test_each_request_writes_one_json_log_line_with_its_correlation_id(client, caplog):
    with caplog.at_level(logging.INFO, logger="lapor.access"):
        client.post("/api/probe/complaints", json=SUBMISSION, headers={"X-Correlation-ID": "log-1"})
    [record] = [r for r in caplog.records if r.name == "lapor.access"]
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["correlation_id"] == "log-1"
    assert (entry["method"], entry["route"], entry["status"]) == ("POST", "/api/probe/complaints", 201)
    assert entry["duration_ms"] >= 0


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/problems/5371014508850001", "/problems/<number>"),  # a NIK where an id was asked
        ("/scanner/+62 812-9988-7766/x", "/scanner/<number>/x"),  # a phone number, as people write it
        ("/scanner/(0380) 821234", "/scanner/<number>"),
        ("/problems/no-such-kind", "/problems/no-such-kind"),
        ("/scanner/JEP6-CZ3E-6/wh_0123456789abcdef/pemda-53.71/1234567", None),  # ids stay as they are
    ],
)
def test_a_persons_number_in_a_path_is_not_logged(client, caplog, path, logged):
    """Session 32: the request line kept the path as sent, so `GET /api/complaints/5371014508850001` (a reporter's
    NIK typed as the tracking number) put the NIK in the operators' log, beside the client's address."""
    with caplog.at_level(logging.INFO, logger="lapor.access"):
        client.get(path)
    [record] = [r for r in caplog.records if r.name == "lapor.access"]
    entry = json.loads(JsonFormatter().format(record))
    assert entry["path"] == (logged or path)
    assert entry["message"] == f"GET {logged or path} 404"
    for number in ("5371014508850001", "812-9988-7766", "821234"):
        assert number not in JsonFormatter().format(record)


def metric(client, name: str, labels: dict[str, str]) -> float | None:
    return client.app.state.context.metrics.registry.get_sample_value(name, labels)


def test_requests_are_counted_by_route_template_not_by_path(client):
    client.post("/api/probe/complaints", json=SUBMISSION)
    for suffix in ("a", "b", "c"):
        client.get(f"/problems/no-such-{suffix}")
        client.get(f"/scanner/{suffix}")
    text = client.get("/metrics").text
    assert 'lapor_http_requests_total{method="POST",route="/api/probe/complaints",status="201"} 1.0' in text
    assert 'lapor_http_requests_total{method="GET",route="/problems/{kind}",status="404"} 3.0' in text
    assert 'lapor_http_requests_total{method="GET",route="<unmatched>",status="404"} 3.0' in text
    assert "lapor_http_request_duration_seconds_bucket" in text
    assert 'lapor_events_appended_total{type="ComplaintSubmitted"} 1.0' in text


def test_a_method_of_the_clients_own_is_counted_as_other_not_by_its_name(client):
    """An HTTP method is any token the client sends: each new one was a series of its own, its text kept by
    Prometheus (session 27), as each unknown path would be without `<unmatched>`."""
    for method in ("X0812345678901", "X5371014508850001"):
        assert client.request(method, "/api/probe/complaints").status_code == 405
        assert client.request(method, f"/scanner/{method}").status_code == 404
    client.request("OPTIONS", "/api/probe/complaints")
    text = client.get("/metrics").text
    assert "X0812345678901" not in text
    assert "X5371014508850001" not in text
    counted = {"method": "<other>", "status": "404", "route": "<unmatched>"}
    assert metric(client, "lapor_http_requests_total", counted) == 2
    refused = {**counted, "status": "405", "route": "/api/probe/complaints"}
    assert metric(client, "lapor_http_requests_total", refused) == 2
    timed = {"method": "OPTIONS", "route": "/api/probe/complaints"}
    assert metric(client, "lapor_http_request_duration_seconds_count", timed) == 1


def test_metrics_show_each_subscriptions_lag_and_handled_events(client):
    for _ in range(3):
        client.post("/api/probe/complaints", json=SUBMISSION)
    labels = {"consumer": "probe.events"}
    wait_until(lambda: metric(client, "lapor_subscription_handled_events", labels) == 3)
    assert metric(client, "lapor_subscription_lag_positions", labels) == 0
    assert metric(client, "lapor_subscription_parked_events", labels) == 0
    assert metric(client, "lapor_subscription_checkpoint_position", labels) == metric(
        client, "lapor_store_head_position", {}
    )


def test_every_app_has_its_own_registry(serve, data_dir):
    with serve() as first:
        first.get("/healthz")
        with serve() as second:
            assert "lapor_http_requests_total" in second.get("/metrics").text
            assert metric(second, "lapor_http_requests_total",
                          {"method": "GET", "route": "/healthz", "status": "200"}) is None


def test_readyz_is_503_and_names_a_subscription_that_is_behind(serve):
    release = threading.Event()

    def slow(event, tx) -> None:
        release.wait(30)

    slow_service = ServiceDefinition(
        name="slow",
        router=probe.build_router,
        subscriptions=lambda ctx: [Subscription("slow.projection", slow)],
    )
    with serve(services=[slow_service], readiness_max_lag=0) as client:
        assert client.get("/readyz").status_code == 200
        client.post("/api/probe/complaints", json=SUBMISSION)
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert body["type"] == "/problems/not-ready"
        assert body["behind"] == [{"consumer": "slow.projection", "lag": 1, "max_lag": 0}]
        assert "slow.projection" in body["detail"]
        release.set()
        wait_until(lambda: client.get("/readyz").status_code == 200)


def test_readyz_is_503_when_a_background_loop_died(serve):
    def broken(stop: threading.Event) -> None:
        raise RuntimeError("scheduler crashed")

    service = ServiceDefinition(
        name="broken", router=probe.build_router, background=lambda ctx: [BackgroundLoop("deadlines", broken)]
    )
    with serve(services=[service]) as client:
        wait_until(lambda: client.get("/readyz").status_code == 503)
        assert client.get("/readyz").json()["stopped"] == ["background loop deadlines"]


def test_readyz_and_metrics_say_a_subscription_is_retrying_while_its_database_is_locked(serve, tmp_path):
    other = tmp_path / "other.db"
    attempts: list[int] = []
    service = ServiceDefinition(
        name="locked", router=probe.build_router,
        subscriptions=lambda ctx: [
            Subscription("locked.projection", writing_to(other, attempts), setup=lambda tx: tx.execute(EFFECTS))
        ],
    )
    labels = {"consumer": "locked.projection"}
    with locked(other) as release, serve(services=[service]) as client:
        client.post("/api/probe/complaints", json=SUBMISSION)
        wait_until(lambda: client.get("/readyz").status_code == 503)
        answer = client.get("/readyz")
        body = answer.json()
        assert body["retrying"] == ["subscription locked.projection: OperationalError SQLITE_BUSY"]
        assert "locked.projection: OperationalError SQLITE_BUSY (trying again)" in body["detail"]
        assert "database is locked" not in answer.text  # the driver's words are the log's (session 28)
        assert metric(client, "lapor_subscription_retrying", labels) == 1
        assert metric(client, "lapor_subscription_parked_events", labels) == 0
        release()
        wait_until(lambda: client.get("/readyz").status_code == 200)
        assert metric(client, "lapor_subscription_retrying", labels) == 0
        assert metric(client, "lapor_subscription_handled_events", labels) == 1
        assert metric(client, "lapor_subscription_parked_events", labels) == 0


def test_a_periodic_loop_survives_a_failing_tick(serve):
    ticks: list[int] = []

    def tick() -> None:
        ticks.append(1)
        if len(ticks) == 1:
            raise RuntimeError("database is locked")

    service = ServiceDefinition(
        name="ticking", router=probe.build_router,
        background=lambda ctx: [BackgroundLoop.every("deadlines", 0.01, tick)],
    )
    with serve(services=[service]) as client:
        wait_until(lambda: len(ticks) >= 3)
        assert client.get("/readyz").status_code == 200


def test_metrics_count_the_failed_ticks_of_a_loop_and_say_while_it_fails(serve):
    """A tick that fails is logged and tried again at the next one, whatever the failure: here the store refusing
    every tick's append for good (it expects a stream that exists not to). Until session 30 only the log showed it:
    /metrics had nothing on it and /readyz says ready, which it still does (a loop's failing tick does not make the
    process's answers stale; docs/platform.md)."""
    refusing = threading.Event()
    refusing.set()

    def tick(ctx: ServiceContext) -> None:
        stream = "probe-ticks" if refusing.is_set() else f"probe-{uuid.uuid4().hex}"
        ctx.store.append(stream, [NewEvent("Ticked", {})], expected_version=NO_STREAM)

    service = ServiceDefinition(
        name="ticking", router=probe.build_router,
        background=lambda ctx: [BackgroundLoop.every("probe.ticks", 0.01, lambda: tick(ctx))],
    )
    labels = {"loop": "probe.ticks"}
    with serve(services=[service]) as client:
        wait_until(lambda: (metric(client, "lapor_background_loop_failed_ticks_total", labels) or 0) >= 3)
        assert metric(client, "lapor_background_loop_failing", labels) == 1
        assert client.get("/readyz").status_code == 200
        refusing.clear()
        wait_until(lambda: metric(client, "lapor_background_loop_failing", labels) == 0)
        assert metric(client, "lapor_background_loop_failed_ticks_total", labels) >= 3  # a count, not reset


def test_healthz_answers_while_readyz_does_not(serve):
    release = threading.Event()
    service = ServiceDefinition(
        name="slow", router=probe.build_router,
        subscriptions=lambda ctx: [Subscription("slow.projection", lambda event, tx: release.wait(30))],
    )
    with serve(services=[service], readiness_max_lag=0) as client:
        client.post("/api/probe/complaints", json=SUBMISSION)
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").json() == {"status": "alive"}
        release.set()


@contextmanager
def table_away(database: Path, table: str) -> Iterator[None]:
    """The table gone from under the running app, as a database that cannot be read looks to it; back afterwards."""

    def rename(old: str, new: str) -> None:
        conn = sqlite3.connect(database)
        with conn:
            conn.execute(f"ALTER TABLE {old} RENAME TO {new}")
        conn.close()

    rename(table, f"{table}_away")
    try:
        yield
    finally:
        rename(f"{table}_away", table)


def test_the_probes_answer_while_every_thread_of_the_api_waits_on_the_store(serve, data_dir):
    """Session 32: /healthz, /readyz and /metrics were plain `def` routes, in the thread pool every route shares, so
    while its 40 threads waited on the store (here its write lock, held by another process; a PostgreSQL outage
    alike) /healthz did not answer either, and a liveness probe would have restarted a process that was alive."""
    with serve(limits={"submission_rate": "1000/minute"}) as client:
        limiter = client.portal.call(to_thread.current_default_thread_limiter)
        submissions: list[int] = []
        lock = os.open(f"{data_dir}/events.db-writer.lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(lock, fcntl.LOCK_EX)  # what the store's writers take turns on
        try:
            waiting = [threading.Thread(
                target=lambda: submissions.append(client.post("/api/probe/complaints", json=SUBMISSION).status_code)
            ) for _ in range(int(limiter.total_tokens) + 5)]
            for thread in waiting:
                thread.start()
            wait_until(lambda: limiter.borrowed_tokens == limiter.total_tokens)  # every API thread waits
            answers: dict[str, int] = {}
            probing = threading.Thread(target=lambda: answers.update(
                {path: client.get(path).status_code for path in ("/healthz", "/readyz", "/metrics")}
            ))
            probing.start()
            probing.join(60)  # only a guard: without their own threads they wait for the lock, for ever
            assert answers == {"/healthz": 200, "/readyz": 200, "/metrics": 200}
            assert submissions == []  # still waiting: nothing was refused to make room
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            os.close(lock)
        for thread in waiting:
            thread.join()
        assert submissions == [201] * len(waiting)


def test_metrics_keep_the_request_counts_when_the_store_cannot_be_read(serve, data_dir):
    """The scrape was a 500, so an outage of the store also took away the counts of the requests failing in it."""
    with serve() as client:
        client.get("/healthz")
        with table_away(data_dir / "events.db", "events"):
            response = client.get("/metrics")
        assert response.status_code == 200
        assert 'lapor_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in response.text
        assert "lapor_store_head_position" not in response.text  # left out, not made up
        assert "lapor_store_head_position 0.0" in client.get("/metrics").text  # and back with the store


@pytest.mark.parametrize(
    ("database", "table", "dependency"),
    [("events.db", "events", "event store"), ("readmodels.db", "subscription_checkpoints", "read models")],
)
def test_readyz_names_the_dependency_that_cannot_be_used_and_leaves_the_drivers_words_to_the_log(
    serve, data_dir, caplog, database, table, dependency
):
    """Until session 28 the body carried the driver's error ("store unreachable (OperationalError: no such table:
    events)"; on a server, its host and user names) to whoever reached the service's address. The subscriptions'
    checkpoints are read models: reading them failed with a 500 instead of 'not ready' before that."""
    with serve() as client:
        with caplog.at_level(logging.WARNING, logger="lapor.observability"), table_away(data_dir / database, table):
            response = client.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert (body["type"], body["store_ok"], body["unreachable"]) == ("/problems/not-ready", False, dependency)
        assert body["detail"] == f"{dependency} unreachable (the service's log says why)"
        assert "no such table" not in response.text
        assert "OperationalError" not in response.text
        [logged] = [record for record in caplog.records if record.name == "lapor.observability"]
        assert logged.levelno == logging.WARNING
        assert logged.getMessage() == f"readiness: {dependency} unreachable: OperationalError: no such table: {table}"
        wait_until(lambda: client.get("/readyz").status_code == 200)


class _DriverPrivate(ConnectionError):
    """A driver's private class, as psycopg's `_WaitTimeout` is."""


def test_an_error_kind_names_a_private_class_by_its_nearest_public_base():
    """/readyz shows kinds, never words; a private class's name (psycopg's `_WaitTimeout`, session 31) says nothing
    to whoever reads it, so its nearest public base stands for it."""
    error = AppendNotRecorded("commit failed")
    error.__cause__ = _DriverPrivate("db.internal:5432 went away")
    assert error_kind(error) == "AppendNotRecorded from ConnectionError"
