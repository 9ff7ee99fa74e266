"""Limits on public input: body size (declared and streamed), field lengths from settings, rate limits."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from lapor.app import load_services
from lapor.limits import InputGuardMiddleware, RateLimits
from lapor.principal import NATIONAL_ADMIN_AGENCY, Role
from lapor.privacy import ReportRequests
from lapor.settings import FieldLimits, RequestLimits, SettingsError, load_settings
from tests.conftest import backend_unavailable
from tests.platform._servers import free_port, wait_until

SUBMISSION = {"title": "Sampah menumpuk", "body": "Di pasar Oeba sampah tidak diangkut seminggu."}


def test_a_huge_declared_body_is_refused_before_a_byte_is_read():
    async def app(scope, receive, send) -> None:
        raise AssertionError("the app must not be reached")

    async def receive() -> dict:
        raise AssertionError("the body must not be read")

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    guard = InputGuardMiddleware(app, RequestLimits(max_body_bytes=4096), FieldLimits(), ReportRequests([]))
    scope = {
        "type": "http", "method": "POST", "path": "/api/complaints", "headers": [
            (b"content-length", b"5000000000"), (b"content-type", b"application/json")],
        "query_string": b"",
    }
    asyncio.run(guard(scope, receive, send))
    assert sent[0]["status"] == 413


def test_a_streamed_body_without_length_is_cut_off_at_the_limit(serve):
    chunks = (b'{"title": "t", "body": "' + b"x" * 1024 for _ in range(10))
    with serve(limits={"max_body_bytes": 4096}) as client:
        response = client.post(
            "/api/probe/complaints", content=chunks, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413
        assert response.json()["type"] == "/problems/too-large"
        assert client.post("/api/probe/complaints", json=SUBMISSION).status_code == 201


def test_field_lengths_follow_the_settings(serve):
    with serve(field_limits={"title": 20}) as client:
        ok = client.post("/api/probe/complaints", json={**SUBMISSION, "title": "x" * 20})
        too_long = client.post("/api/probe/complaints", json={**SUBMISSION, "title": "x" * 21})
    assert ok.status_code == 201
    assert too_long.status_code == 422
    [error] = too_long.json()["errors"]
    assert error["location"] == ["body", "title"]
    assert error["message"] == "String should have at most 20 characters"


def test_the_number_of_attachments_follows_the_settings(serve):
    with serve(field_limits={"attachments": 1}) as client:
        response = client.post("/api/probe/complaints", json={**SUBMISSION, "attachments": ["a", "b"]})
    assert response.status_code == 422
    assert response.json()["errors"][0]["message"] == "List should have at most 1 items"


def test_field_limits_cannot_loosen_the_event_contract():
    with pytest.raises(SettingsError, match="LAPOR_FIELD_LIMITS__TITLE"):
        load_settings(field_limits={"title": 500})


def test_each_client_has_its_own_submission_budget(serve):
    limits = {"submission_rate": "1/minute", "trust_forwarded_for": True}
    with serve(limits=limits) as client:
        kupang = {"X-Forwarded-For": "203.0.113.7"}
        malang = {"X-Forwarded-For": "198.51.100.23, 10.0.0.1"}
        assert client.post("/api/probe/complaints", json=SUBMISSION, headers=kupang).status_code == 201
        assert client.post("/api/probe/complaints", json=SUBMISSION, headers=kupang).status_code == 429
        assert client.post("/api/probe/complaints", json=SUBMISSION, headers=malang).status_code == 201


def test_the_client_is_the_address_the_proxy_appended_not_what_the_client_wrote_before_it(serve):
    """A proxy appends the address it was connected from; what comes before it is the client's own text."""
    with serve(limits={"submission_rate": "1/minute", "trust_forwarded_for": True}) as client:
        statuses = [
            client.post("/api/probe/complaints", json=SUBMISSION,
                        headers={"X-Forwarded-For": f"192.0.2.{n}, 203.0.113.7"}).status_code
            for n in range(3)
        ]
    assert statuses == [201, 429, 429]


def test_a_proxy_that_adds_its_own_forwarded_for_line_is_believed_over_the_clients_line(serve):
    """HAProxy's `option forwardfor` adds a header line rather than extending the client's: the last entry of all
    the lines is the proxy's (reading the first line only, a forged one bought a fresh budget per request)."""
    with serve(limits={"submission_rate": "1/minute", "trust_forwarded_for": True}) as client:
        statuses = [
            client.post("/api/probe/complaints", json=SUBMISSION,
                        headers=[("X-Forwarded-For", f"192.0.2.{n}"), ("X-Forwarded-For", "203.0.113.7")]).status_code
            for n in range(3)
        ]
    assert statuses == [201, 429, 429]


def test_forwarded_for_is_ignored_unless_trusted(serve):
    with serve(limits={"submission_rate": "1/minute"}) as client:
        first = client.post("/api/probe/complaints", json=SUBMISSION, headers={"X-Forwarded-For": "203.0.113.7"})
        spoofed = client.post("/api/probe/complaints", json=SUBMISSION, headers={"X-Forwarded-For": "192.0.2.1"})
    assert first.status_code == 201
    assert spoofed.status_code == 429


def test_routes_without_a_rate_limit_are_not_limited(serve):
    with serve(limits={"submission_rate": "1/minute"}) as client:
        assert all(client.get("/healthz").status_code == 200 for _ in range(5))


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_control_character_in_the_url_is_a_bad_request(serve, backend, request):
    """No id, name or filter holds one, and PostgreSQL cannot compare text with a NUL (`?q=kup%00` was a 500)."""
    overrides = {"store": request.getfixturevalue("postgres_url")} if backend == "postgres" else {}
    with serve(services=load_services(), **overrides) as client:
        assert client.get("/api/agencies?q=kup").status_code == 200
        assert client.get("/api/agencies?q=kota+kupang").status_code == 200  # '+' is a space, not a control
        for url in ("/api/agencies?q=kup%00", "/api/agencies?keyword=a%0Ab", "/api/agencies?q%7F=1",
                    "/api/complaints/LAP%00-1", "/api/agencies/pemda-53.71%09"):
            response = client.get(url)
            assert response.status_code == 400, url
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["detail"] == "the URL holds a control character (such as %00)"


@pytest.mark.parametrize("invisible", ["\u200b\u200b\u200b", "\u00ad\u200d", "\ufeff \u2060", "\u0301\u0301"])
def test_a_text_of_invisible_characters_is_refused_like_a_blank_one(client, invisible):
    """`strip()` leaves zero-width spaces, joiners, the BOM, soft hyphens and lone marks: such a title says
    nothing, yet it was accepted."""
    refused = client.post("/api/probe/complaints", json={**SUBMISSION, "title": invisible})
    assert refused.status_code == 422
    [error] = refused.json()["errors"]
    assert error["location"] == ["body", "title"]
    assert error["type"] == "text_invisible"
    shown = client.post("/api/probe/complaints", json={**SUBMISSION, "title": invisible + "Sampah"})
    assert shown.status_code == 201


def test_a_long_list_of_invalid_items_is_one_error_not_one_per_item(client):
    """The count was checked after every item: 300,000 numbers where texts go (a 0.9 MB body, without a token) were
    300,000 errors, an answer of tens of megabytes."""
    response = client.post("/api/probe/complaints", json={**SUBMISSION, "attachments": [1] * 300_000})
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert (error["location"], error["message"]) == (["body", "attachments"], "List should have at most 10 items")


def test_a_body_of_many_wrong_names_lists_a_few_and_counts_the_rest(client, bearer):
    """Every unknown name of a model that forbids them is an error: 50,000 names were 50,000 errors listed."""
    body = {"subject": "budi", "reason": "pindah tugas", **{f"nama{n}": 0 for n in range(50_000)}}
    response = client.post("/api/tokens/revocations", json=body,
                           headers=bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY))
    assert response.status_code == 422
    problem = response.json()
    assert len(problem["errors"]) == 20
    assert problem["errors"][0] == {"location": ["body", "nama0"], "message": "Extra inputs are not permitted",
                                    "type": "extra_forbidden"}
    assert problem["detail"].endswith("(50000 problems; the first 20 are listed)")
    assert len(response.content) < 10_000


def test_a_name_in_an_error_is_quoted_cut_short(client, bearer):
    body = {"subject": "budi", "reason": "pindah tugas", "x" * 100_000: 0}
    response = client.post("/api/tokens/revocations", json=body,
                           headers=bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY))
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["location"] == ["body", "x" * 63 + "…"]
    assert len(response.content) < 2_000


@pytest.mark.parametrize(("trusted", "scheme"), [(True, "https"), (False, "http")])
def test_redirects_keep_the_scheme_the_trusted_proxy_was_reached_by(serve, trusted, scheme):
    """Behind a TLS terminator, a trailing slash's redirect said http:// (the scheme between the proxy and us)."""
    with serve(limits={"trust_forwarded_for": trusted}) as client:
        answer = client.post("/api/probe/complaints/", json=SUBMISSION, follow_redirects=False,
                             headers=[("X-Forwarded-Proto", "http"), ("X-Forwarded-Proto", "https")])
    assert answer.status_code == 307
    assert answer.headers["location"] == f"{scheme}://testserver/api/probe/complaints"


# -- a shared rate-limit storage (Redis) ------------------------------------------------------------------------


class RedisServer:
    """A redis-server of this test's own, on a free port, that the test can stop and start again."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary, self.directory, self.port = binary, directory, free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: self._answers(), describe=f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def _answers(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, "redis-server exited"
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        backend_unavailable("redis", "no redis-server on PATH (Debian's redis-server; .ci/run installs it)")
    server = RedisServer(binary, tmp_path)
    server.start()
    yield server
    server.stop()


def _probe_submissions(client: TestClient, count: int) -> list[int]:
    return [client.post("/api/probe/complaints", json=SUBMISSION).status_code for _ in range(count)]


def _failures_counted(client: TestClient) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "lapor_rate_limit_storage_failures_total" and sample.labels == {"kind": "submission"}:
                return sample.value
    return 0.0


def test_processes_sharing_a_redis_storage_share_each_clients_budget(redis_server, serve):
    """Two apps (as two `lapor serve intake` processes) on one Redis: a client's third submission is refused by
    whichever process it reaches, where counters in memory would give it the limit in each."""
    limits = {"storage": redis_server.url, "submission_rate": "2/minute"}
    with serve(limits=limits) as first, serve(limits=limits) as second:
        statuses = [first.post("/api/probe/complaints", json=SUBMISSION).status_code,
                    second.post("/api/probe/complaints", json=SUBMISSION).status_code,
                    first.post("/api/probe/complaints", json=SUBMISSION).status_code,
                    second.post("/api/probe/complaints", json=SUBMISSION).status_code]
        assert statuses == [201, 201, 429, 429]
        assert _failures_counted(first) == _failures_counted(second) == 0


def test_an_unreachable_storage_counts_in_memory_instead_of_refusing_reports(redis_server, serve, caplog, monkeypatch):
    """Redis went away: submissions were a 500 each until it came back. Now the process counts in its own memory
    (the limit still holds per process), says so once in its log and in /metrics, and goes back to the shared
    counters once Redis answers again."""
    monkeypatch.setattr(RateLimits, "RETRY_SHARED_AFTER", 0.0, raising=False)  # ask Redis at every request
    redis_server.stop()
    with serve(limits={"storage": redis_server.url, "submission_rate": "2/minute"}) as client:
        with caplog.at_level(logging.WARNING, logger="lapor.limits"):
            assert _probe_submissions(client, 3) == [201, 201, 429]
        warnings = [r.getMessage() for r in caplog.records if "shared storage cannot be reached" in r.getMessage()]
        assert len(warnings) == 1
        assert _failures_counted(client) == 3
        refused = client.post("/api/probe/complaints", json=SUBMISSION)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1

        # Redis is back, its counters empty: they decide again, and nothing more is counted in memory.
        redis_server.start()
        assert _probe_submissions(client, 3) == [201, 201, 429]
        assert _failures_counted(client) == 4


def test_a_shared_storage_counts_sms_senders_by_a_keyed_hash_never_by_their_number(redis_server, serve, bearer):
    """The SMS limit is per sender (session 29), and a Redis shared by the processes (often run by another team,
    dumped, replicated) must not hold citizens' numbers: each sender is counted under a keyed hash."""
    limits = {"storage": redis_server.url, "sms_rate": "2/minute"}
    senders = ["081234567890", "081299990000", "085712340000"]
    with serve(services=load_services(["intake"]), limits=limits) as client:
        gateway = bearer(Role.integration, channel="sms")
        statuses = [
            client.post("/api/channels/sms", headers=gateway, json={
                "message_id": f"m-{sender}-{n}", "sender": sender, "text": "jalan rusak di Oebobo",
                "received_at": "2026-03-06T08:00:00+07:00",
            }).status_code
            for sender in senders for n in range(3)
        ]
    assert statuses == [201, 201, 429] * 3
    keys = [key.decode() for key in redis.Redis.from_url(redis_server.url).keys("*")]
    assert len([key for key in keys if "/sms/" in key]) == 3, keys  # one per sender
    for sender in senders:
        assert not any(sender.removeprefix("0") in key for key in keys), keys


def test_a_shared_storage_counts_clients_by_a_keyed_hash_never_by_their_address(redis_server, serve):
    """The per-client limits (submissions, statistics) were counted in Redis under the client's address in clear
    (`LIMITS:LIMITER/submission/203.0.113.7/...`), kept there for the rate's period: a Redis shared by the processes
    (often run by another team, dumped, replicated) then held who reported from where. Each client is counted under
    a keyed hash instead, as SMS senders are, and the budgets stay apart and shared between the processes."""
    limits = {"storage": redis_server.url, "submission_rate": "2/minute", "trust_forwarded_for": True}
    addresses = ["203.0.113.7", "2001:db8::1", "198.51.100.23"]
    with serve(limits=limits) as first, serve(limits=limits) as second:
        statuses = [
            process.post("/api/probe/complaints", json=SUBMISSION, headers={"X-Forwarded-For": address}).status_code
            for address in addresses for process in (first, second, first)
        ]
    assert statuses == [201, 201, 429] * 3
    keys = [key.decode() for key in redis.Redis.from_url(redis_server.url).keys("*")]
    assert len([key for key in keys if "/submission/" in key]) == 3, keys  # one per client
    for address in addresses:
        assert not any(address in key for key in keys), keys
