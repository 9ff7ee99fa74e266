"""The platform on PostgreSQL: the store and the read models share the one database."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit

import httpx2
import psycopg
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from lapor import db as lapor_db
from lapor.app import create_app
from lapor.db import PostgresDatabase
from lapor.lease import KEEPALIVE
from lapor.observability import check_readiness
from lapor.rebuild import fresh_tables
from lapor.settings import load_settings
from lapor.store import AppendNotRecorded, LockWaitExpired, NewEvent, StoreError
from lapor.store.postgres import DDL_LOCK_CLASS, PostgresEventStore, network_timeouts
from lapor.subscriptions import Subscription, SubscriptionRunner
from tests.platform import probe
from tests.platform._servers import lapor, wait_until

SUBMISSION = {"title": "Banjir", "body": "Air masuk rumah."}

pytestmark = pytest.mark.postgres


def test_an_app_on_postgresql_keeps_projections_beside_the_log_and_gets_ready(postgres_url, tmp_path):
    settings = load_settings(store=postgres_url, data=tmp_path)
    assert settings.readmodels == postgres_url
    with TestClient(create_app(settings, [probe.SERVICE])) as client:
        for _ in range(3):
            assert client.post("/api/probe/complaints", json={"title": "Banjir", "body": "Air masuk rumah."}
                               ).status_code == 201
        deadline = time.monotonic() + 20
        while client.get("/api/probe/handled").json()["events"] < 3:
            assert time.monotonic() < deadline, "the subscription did not catch up"
            time.sleep(0.05)
        assert client.get("/api/probe/handled").json() == {"events": 3, "handled_twice": 0}
        assert client.get("/readyz").status_code == 200


def test_two_replicas_of_a_service_on_postgresql_run_its_subscription_once_and_one_takes_over_when_the_other_dies(
    postgres_url, tmp_path
):
    environment = {"LAPOR_STORE": postgres_url, "LAPOR_SECRET": secrets.token_urlsafe(48)}
    with lapor(tmp_path, "serve", "probe", "--data", str(tmp_path / "a"), name="a", env=environment) as a, \
            lapor(tmp_path, "serve", "probe", "--data", str(tmp_path / "b"), name="b", env=environment) as b:
        for server in (a, b) * 5:
            assert server.post("/api/probe/complaints", json=SUBMISSION).status_code == 201
        wait_until(lambda: a.get("/api/probe/handled").json()["events"] == 10, describe="10 reports handled")
        assert b.get("/api/probe/handled").json() == {"events": 10, "handled_twice": 0}
        assert (a.metric("lapor_subscription_leased", "probe.events"),
                b.metric("lapor_subscription_leased", "probe.events")) == (1, 0)
        assert b.get("/readyz").json() == {"status": "ready", "standby": ["probe.events"]}

        a.process.kill()  # no clean stop: the server ends its session, and the advisory lock with it
        a.process.wait()
        wait_until(lambda: b.metric("lapor_subscription_leased", "probe.events") == 1, describe="b took over")
        for _ in range(5):
            assert b.post("/api/probe/complaints", json=SUBMISSION).status_code == 201
        wait_until(lambda: b.get("/api/probe/handled").json()["events"] == 15, describe="5 more handled by b")
        assert b.get("/api/probe/handled").json() == {"events": 15, "handled_twice": 0}
        assert b.get("/readyz").json() == {"status": "ready"}


class Relay:
    """A TCP relay in front of the PostgreSQL server, on a port of its own. `cut()` is the database going away as
    the app sees it: the relayed connections end and nothing listens on the port any more (a connection is
    refused); `restore()` listens there again. `blackhole()` is a server gone silent (a partition, a hung server):
    the connections stay open but no byte goes through, and a new one is accepted but never answered; `forward()`
    passes the held bytes on again. `blackhole_at(marker)` does so as a statement holding `marker` is sent: the
    network goes silent while it is under way (the store's check of a connection has passed)."""

    def __init__(self, server: tuple[str, int]) -> None:
        self._server = server
        self._lock = threading.Lock()
        self._relayed: list[socket.socket] = []
        self._held: list[socket.socket] = []  # accepted in a blackhole, never answered
        self._flowing = threading.Event()
        self._flowing.set()
        self._marker: bytes | None = None  # see `blackhole_at`
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._listen()

    def url(self, url: str) -> str:
        """`url` (its user, database and options) with the relay's address instead of the server's."""
        parts = urlsplit(url)
        user = parts.netloc.rpartition("@")[0]
        return parts._replace(netloc=f"{user}@127.0.0.1:{self.port}" if user else f"127.0.0.1:{self.port}").geturl()

    def _listen(self) -> None:
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # cut
                return
            if not self._flowing.is_set():
                with self._lock:
                    self._held.append(client)
                continue
            server = socket.create_connection(self._server)
            with self._lock:
                self._relayed += [client, server]
            for source, sink, upstream in ((client, server, True), (server, client, False)):
                threading.Thread(target=self._pipe, args=(source, sink, upstream), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        try:
            while data := source.recv(65536):
                marker = self._marker
                if upstream and marker is not None and marker in data:
                    self._marker = None
                    self._flowing.clear()
                self._flowing.wait()  # a blackhole holds it
                sink.sendall(data)
        except OSError:
            pass  # cut

    def cut(self) -> None:
        if self._listener.fileno() != -1:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread, which close() alone does not
            self._listener.close()
        with self._lock:
            relayed, self._relayed = self._relayed, []
        for sock in relayed:
            with suppress(OSError):  # the other end went first
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restore(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listen()

    def blackhole(self) -> None:
        self._flowing.clear()

    def blackhole_at(self, marker: bytes) -> None:
        self._marker = marker

    def forward(self) -> None:
        with self._lock:
            held, self._held = self._held, []
        for sock in held:  # their connection attempts are over; a new one is relayed
            sock.close()
        self._flowing.set()


@contextmanager
def relayed(postgres_url: str) -> Iterator[Relay]:
    parts = urlsplit(postgres_url)
    relay = Relay((parts.hostname or "127.0.0.1", parts.port or 5432))
    try:
        yield relay
    finally:
        relay.cut()


def behind(relay: Relay, postgres_url: str, dependency: str) -> dict[str, str]:
    """The settings' URLs with `dependency` ("event store" or "read models") reached through `relay` and the other
    straight from the server."""
    relayed = relay.url(postgres_url)
    if dependency == "event store":
        return {"store": relayed, "readmodels": postgres_url}
    return {"store": postgres_url, "readmodels": relayed}


# A bound on the probe's answer that only a hang reaches, not a claim about its speed: a third of the psycopg pool's
# 30 s (what the probe waited before session 28), 20 times `readiness_wait` (0.5 s), which bounds each wait for a
# database now; a probe that works answers in a fraction of a second even on a busy machine.
HANG = 10.0


def get_while_cut(client: TestClient, relay: Relay, path: str) -> httpx2.Response:
    """The app's answer to GET `path` with the relay cut, within `HANG`; the relay listens again afterwards."""
    with ThreadPoolExecutor(1) as asker:
        relay.cut()
        try:
            return asker.submit(client.get, path).result(timeout=HANG)
        finally:
            relay.restore()  # also when it hangs: the app closes its pools on the way out


@pytest.mark.parametrize(
    ("dependency", "background"),
    [
        ("event store", True),
        # The app a worker of `lapor up --workers` serves: it runs no subscription, so every probe reads the
        # checkpoints. Where the subscription runs, it may notice the outage first and be reported as retrying,
        # without a read (now and then, when it reads or commits just then).
        ("read models", False),
    ],
)
def test_readyz_answers_not_ready_at_once_when_a_postgresql_database_goes_away(
    postgres_url, tmp_path, dependency, background
):
    """Until session 28 the probe waited 30 s for a pooled connection to a database that did not answer, while
    orchestrators give a probe a second or a few. The store's head is read first, the subscription's checkpoint
    (read models) next."""
    with relayed(postgres_url) as relay:
        urls = behind(relay, postgres_url, dependency)
        app = create_app(load_settings(data=tmp_path, **urls), [probe.SERVICE], background=background)
        with TestClient(app) as client:
            assert client.post("/api/probe/complaints", json=SUBMISSION).status_code == 201
            wait_until(lambda: client.get("/readyz").status_code == 200, describe="ready")
            response = get_while_cut(client, relay, "/readyz")
            assert response.status_code == 503
            body = response.json()
            assert (body["type"], body["unreachable"], body["store_ok"]) == ("/problems/not-ready", dependency, False)
            wait_until(lambda: client.get("/readyz").status_code == 200, describe="ready again")


@pytest.mark.parametrize(("dependency", "background"), [("event store", True), ("read models", False)])
def test_readyz_answers_not_ready_when_a_postgresql_database_goes_silent_and_ready_when_it_answers_again(
    postgres_url, tmp_path, dependency, background
):
    """A partition or a hung server: connections stay open and new ones are accepted, but nothing answers. Until
    session 28 the pool's check of an idle connection waited for ever for the server's answer, and /readyz with it.
    `HANG` is a bound only a hang reaches, not a claim about the probe's speed: the check gives up after
    `CHECK_TIMEOUT` (2 s), the probe's wait for another connection after `readiness_wait` (0.5 s)."""
    with relayed(postgres_url) as relay:
        urls = behind(relay, postgres_url, dependency)
        app = create_app(load_settings(data=tmp_path, **urls), [probe.SERVICE], background=background)
        with TestClient(app) as client, ThreadPoolExecutor(1) as asker:
            assert client.post("/api/probe/complaints", json=SUBMISSION).status_code == 201
            wait_until(lambda: client.get("/readyz").status_code == 200, describe="ready")
            relay.blackhole()
            try:
                response = asker.submit(client.get, "/readyz").result(timeout=HANG)
            finally:
                relay.forward()  # also when it hangs: the app closes its pools on the way out
            assert response.status_code == 503
            body = response.json()
            assert (body["type"], body["unreachable"], body["store_ok"]) == ("/problems/not-ready", dependency, False)
            wait_until(lambda: client.get("/readyz").status_code == 200, describe="ready again")


def test_opening_a_postgresql_store_on_a_server_gone_silent_fails_instead_of_waiting_for_ever(postgres_url):
    """A server that accepts a connection and never answers. Until session 28 libpq waited for ever (no
    `connect_timeout`); the store now gives up after `KEEPALIVE`'s 10 s. Three times that is a bound only a hang
    reaches, not a claim about the attempt's speed."""
    with relayed(postgres_url) as relay, ThreadPoolExecutor(1) as opener:
        relay.blackhole()
        try:
            opening = opener.submit(PostgresEventStore, relay.url(postgres_url))
            with pytest.raises(psycopg.OperationalError):
                opening.result(timeout=3 * KEEPALIVE["connect_timeout"])
        finally:
            relay.forward()  # also when it hangs, for the attempt to end


def test_a_rebuild_on_a_postgresql_server_gone_silent_fails_instead_of_waiting_for_ever(postgres_url):
    """`lapor rebuild` connects on its own to make, compare and drop its schemas. Until session 28 those connections
    had no `connect_timeout`, so a rebuild started on a server gone silent waited for ever; they now take the
    store's bounds. Three times `connect_timeout` is a bound only a hang reaches, not a claim about its speed."""
    with relayed(postgres_url) as relay, ThreadPoolExecutor(1) as rebuilder:
        live = PostgresDatabase(relay.url(postgres_url))
        try:
            relay.blackhole()
            try:
                making = rebuilder.submit(fresh_tables, live, "gone-silent")
                with pytest.raises(psycopg.OperationalError):
                    making.result(timeout=3 * KEEPALIVE["connect_timeout"])
            finally:
                relay.forward()  # also when it hangs, for the attempt to end
        finally:
            live.close()


# The store's answer timeout in these tests: short, so that a test ends soon; what is checked is that the statement
# ends at all (a bound only a hang reaches, `HANG`), and with what.
ANSWER = 1.0


def fails_after_the_answer_timeout(relay: Relay, statement: bytes, call: Callable[[], object]) -> None:
    """`call` fails with the answer timeout's `StoreError` when the network goes silent as `statement` is sent."""
    relay.blackhole_at(statement)
    with ThreadPoolExecutor(1) as caller:
        under_way = caller.submit(call)
        try:
            with pytest.raises(StoreError, match=r"did not answer within 1 s \(LAPOR_STORE_TIMEOUT\)"):
                under_way.result(timeout=HANG)
        finally:
            relay.forward()  # also when it hangs, for the statement to end


def test_a_statement_under_way_when_postgresql_goes_silent_fails_after_the_store_s_timeout(postgres_url):
    """A partition, or a hung server or proxy, while a statement is under way: the network acknowledges what is sent
    and nothing comes back, so no TCP timeout fires (`tcp_user_timeout` counts unacknowledged data). Until session 30
    the statement waited for ever: a read, and an append holding the store's write connection, so every command
    after it too. Now it fails after the store's answer timeout with a `StoreError` saying so, the connection is
    closed, and the store works again once the server answers."""
    with relayed(postgres_url) as relay:
        store = PostgresEventStore(relay.url(postgres_url) + "&connect_timeout=2", answer_timeout=ANSWER)
        try:
            store.append("complaint-S", [NewEvent("Noted", {"n": 0})])
            fails_after_the_answer_timeout(relay, b"FROM events WHERE stream", lambda: store.read_stream("complaint-S"))
            fails_after_the_answer_timeout(
                relay, b"FROM lapor_head FOR UPDATE", lambda: store.append("complaint-S", [NewEvent("Noted", {"n": 1})])
            )
            assert store.append("complaint-S", [NewEvent("Noted", {"n": 1})]).last_version == 1
            assert [event.data for event in store.read_stream("complaint-S")] == [{"n": 0}, {"n": 1}]
        finally:
            store.close()


def test_a_command_whose_append_meets_a_postgresql_gone_silent_is_a_503_problem(postgres_url, tmp_path):
    """Until session 30 the request waited for ever (and every command after it, queued behind the store's write
    connection). The answer is the outage's problem, which a client may retry."""
    with relayed(postgres_url) as relay:
        app = create_app(load_settings(data=tmp_path, store=relay.url(postgres_url) + "&connect_timeout=2",
                                       readmodels=postgres_url, store_timeout=ANSWER), [probe.SERVICE])
        with TestClient(app) as client, ThreadPoolExecutor(1) as asker:
            assert client.post("/api/probe/complaints", json=SUBMISSION).status_code == 201
            relay.blackhole_at(b"FROM lapor_head FOR UPDATE")
            try:
                response = asker.submit(client.post, "/api/probe/complaints", json=SUBMISSION).result(timeout=HANG)
            finally:
                relay.forward()
            assert (response.status_code, response.headers["content-type"]) == (503, "application/problem+json")
            assert response.json()["type"] == "/problems/unavailable"
            assert client.post("/api/probe/complaints", json=SUBMISSION).status_code == 201


def test_a_read_model_statement_under_way_when_postgresql_goes_silent_fails_after_the_answer_timeout(postgres_url):
    """The read models' connections (views, projections' writes, queues) waited for ever for an answer that never
    came until session 30, as the store's did: a read holding its request's thread, a write its subscription. Now a
    read and a transaction fail after the answer timeout with a `StoreError`, and the database works again once the
    server answers."""
    with relayed(postgres_url) as relay:
        db = PostgresDatabase(relay.url(postgres_url) + "&connect_timeout=2", answer_timeout=ANSWER)
        try:
            db.executescript("CREATE TABLE IF NOT EXISTS silent_rows (n INTEGER PRIMARY KEY)")

            def write() -> None:
                with db.transaction(durable=False) as tx:
                    tx.execute("INSERT INTO silent_rows (n) VALUES (1)")

            def read() -> list[tuple]:
                with db.read() as tx:
                    return tx.fetchall("SELECT n FROM silent_rows")

            fails_after_the_answer_timeout(relay, b"INSERT INTO silent_rows", write)
            fails_after_the_answer_timeout(relay, b"FROM silent_rows", read)
            write()  # the INSERT above may or may not have been committed: the answer never came
            assert read() == [(1,)]
        finally:
            db.close()


def test_a_read_model_transaction_that_changes_the_schema_may_take_longer_than_the_answer_timeout(postgres_url):
    """CREATE INDEX on a table of millions of rows, or the wait for another process's schema changes, may rightly
    outlast the answer timeout: a transaction that locked the schema (`Tx.lock_schema_changes`: every DDL of the
    read models) waits `SCHEMA_CHANGE_TIMEOUT` instead, and the next transaction on the pooled connection is bounded
    again. A statement that takes two seconds stands for the long one."""
    db = PostgresDatabase(postgres_url, max_size=1, answer_timeout=ANSWER)
    try:
        with db.transaction() as tx:
            tx.lock_schema_changes()
            assert tx.scalar("SELECT 1 FROM pg_sleep(2)") == 1
        with pytest.raises(StoreError, match="did not answer within 1 s"), db.transaction() as tx:
            tx.execute("SELECT pg_sleep(2)")
    finally:
        db.close()


def test_a_schema_change_that_outlasts_its_own_bound_names_that_bound_not_the_store_s(postgres_url, monkeypatch):
    """Session 31: the timeout's message always said "(LAPOR_STORE_TIMEOUT)", also when the bound that ran out was a
    schema change's own. Here SCHEMA_CHANGE_TIMEOUT is made short, and another session holds the schema's lock."""
    monkeypatch.setattr(lapor_db, "SCHEMA_CHANGE_TIMEOUT", ANSWER)
    db = PostgresDatabase(postgres_url, max_size=1, answer_timeout=30.0)
    try:
        with psycopg.connect(postgres_url) as holder:
            holder.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (DDL_LOCK_CLASS,))
            with pytest.raises(StoreError) as raised, db.transaction() as tx:
                tx.lock_schema_changes()
    finally:
        db.close()
    # the bound's source, whether the answer or (since session 31) the lock wait a little below it ran out
    assert "s (lapor.db.SCHEMA_CHANGE_TIMEOUT, a schema change)" in str(raised.value)
    assert "LAPOR_STORE_TIMEOUT" not in str(raised.value)


def test_a_read_of_the_read_models_that_meets_a_postgresql_gone_silent_is_a_503_problem(postgres_url, tmp_path):
    """Until session 30 the request waited for ever, holding a worker thread. The answer is the outage's problem."""
    with relayed(postgres_url) as relay:
        app = create_app(load_settings(data=tmp_path, store=postgres_url, store_timeout=ANSWER,
                                       readmodels=relay.url(postgres_url) + "&connect_timeout=2"),
                         [probe.SERVICE], background=False)
        with TestClient(app) as client, ThreadPoolExecutor(1) as asker:
            assert client.get("/api/probe/handled").status_code == 200
            relay.blackhole_at(b"FROM probe_handled")
            try:
                response = asker.submit(client.get, "/api/probe/handled").result(timeout=HANG)
            finally:
                relay.forward()
            assert (response.status_code, response.headers["content-type"]) == (503, "application/problem+json")
            assert response.json()["type"] == "/problems/unavailable"
            assert client.get("/api/probe/handled").status_code == 200


def test_a_subscription_whose_write_meets_a_postgresql_gone_silent_tries_again_and_goes_on(postgres_url):
    """A projection's write under way when the read models' server went silent held the subscription for ever until
    session 30. Now the write fails after the answer timeout, the runner reports it (`failure`, which /readyz shows)
    and tries again from its checkpoint: every event is handled once the server answers, none twice."""
    store = PostgresEventStore(postgres_url)
    with relayed(postgres_url) as relay:
        db = PostgresDatabase(relay.url(postgres_url) + "&connect_timeout=2", answer_timeout=ANSWER)
        runner = SubscriptionRunner(store, db, probe.SUBSCRIPTION, backoff=0.05, idle_wait=0.1)
        try:
            relay.blackhole_at(b"INSERT INTO probe_handled")
            store.append("complaint-G", [NewEvent("Noted", {"n": 0})])
            runner.start()
            try:
                wait_until(lambda: isinstance(runner.failure, StoreError), timeout=HANG, describe="a failure")
            finally:
                relay.forward()
            store.append("complaint-H", [NewEvent("Noted", {"n": 0})])
            wait_until(lambda: runner.caught_up(), timeout=HANG, describe="caught up")
            with db.read() as tx:
                assert tx.fetchall("SELECT stream, times FROM probe_handled ORDER BY stream") == [
                    ("complaint-G", 1), ("complaint-H", 1)
                ]
        finally:
            runner.stop()
            db.close()
            store.close()


def test_readyz_names_the_cause_of_the_failure_a_subscription_tries_again_after(postgres_url):
    """A reaction's append that failed was named on /readyz by its outer class alone ("AppendNotRecorded"), whatever
    caused it (a lock, a lost connection, a full disk: the group's failure was only in its words). Now the causes'
    kinds follow, by class name only: /readyz is public, and the words (host names, users, paths) stay in the log.
    Here another session holds the store's head, so the append's statement waits out its lock timeout (session 31:
    a little below the answer timeout, which it used to run into)."""
    store = PostgresEventStore(postgres_url, answer_timeout=ANSWER)
    db = PostgresDatabase(postgres_url)

    def react(event, tx) -> None:
        store.append(f"reaction-{event.stream.partition('-')[2]}", [NewEvent("Reacted", {})])

    runner = SubscriptionRunner(store, db, Subscription("test.reaction", react, projection=False), backoff=0.05)
    try:
        store.append("complaint-R", [NewEvent("Noted", {"n": 0})])
        with psycopg.connect(postgres_url) as holder:
            holder.execute("SELECT position FROM lapor_head FOR UPDATE")  # held until the rollback
            runner.start()
            # the server's answer last; "waited 0.9 s for a lock" and the rest of the words are the log's
            expected = "subscription test.reaction: AppendNotRecorded from LockWaitExpired from LockNotAvailable"
            wait_until(lambda: runner.failure is not None, timeout=HANG, describe="a failure")
            retrying = check_readiness(store, [runner], [], max_lag=1000, wait=0.5).retrying
            holder.rollback()
        assert retrying == [expected], retrying
        wait_until(lambda: runner.caught_up() and runner.failure is None, timeout=HANG, describe="caught up")
        assert [event.type for event in store.read_stream("reaction-R")] == ["Reacted"]
    finally:
        runner.stop()
        db.close()
        store.close()


def test_an_append_that_waits_for_the_head_another_session_holds_fails_on_the_server_and_keeps_its_connection(
    postgres_url,
):
    """Session 31: a statement waiting for a lock another session holds ran into the answer timeout as if the server
    had gone silent: its connection closed, the message guessing between the two. The store's sessions now have a
    `lock_timeout` a little below the answer timeout: the server gives up the wait (LockNotAvailable), the append is
    not recorded (its transaction rolled back), the message says it waited for a lock, and the group's connection
    goes on writing once the lock is released."""
    store = PostgresEventStore(postgres_url, answer_timeout=ANSWER)
    try:
        store.append("complaint-L", [NewEvent("Noted", {"n": 0})])
        backend = store._group.conn.info.backend_pid
        with psycopg.connect(postgres_url) as holder:
            holder.execute("SELECT position FROM lapor_head FOR UPDATE")  # held until the end of this block
            with pytest.raises(AppendNotRecorded) as raised:
                store.append("complaint-L", [NewEvent("Noted", {"n": 1})])
        waited = raised.value.__cause__
        assert isinstance(waited, LockWaitExpired), repr(waited)
        assert isinstance(waited.__cause__, psycopg.errors.LockNotAvailable)
        assert "waited 0.9 s (LAPOR_STORE_TIMEOUT) for a lock another session holds" in str(waited)
        assert [event.data["n"] for event in store.read_stream("complaint-L")] == [0]
        store.append("complaint-L", [NewEvent("Noted", {"n": 2})], 0)
        assert not store._group.conn.closed
        assert store._group.conn.info.backend_pid == backend  # the same session, not a new connection
    finally:
        store.close()


def test_a_read_model_write_that_waits_for_a_row_another_session_holds_fails_on_the_server(postgres_url):
    """As the store's: a read model's statement waiting for a row lock another session holds fails on the server a
    little before the answer timeout, with a `LockWaitExpired` saying so, and the pooled connection is kept."""
    db = PostgresDatabase(postgres_url, max_size=1, answer_timeout=ANSWER)
    try:
        with db.transaction() as tx:
            tx.execute("CREATE TABLE counts (id integer PRIMARY KEY, n integer NOT NULL)")
            tx.execute("INSERT INTO counts VALUES (1, 0)")
            backend = tx.scalar("SELECT pg_backend_pid()")
        with psycopg.connect(postgres_url) as holder:
            holder.execute("UPDATE counts SET n = 1 WHERE id = 1")  # the row locked until the end of this block
            with pytest.raises(LockWaitExpired) as raised, db.transaction() as tx:
                tx.execute("UPDATE counts SET n = 2 WHERE id = 1")
        assert isinstance(raised.value.__cause__, psycopg.errors.LockNotAvailable)
        assert "waited 0.9 s (LAPOR_STORE_TIMEOUT) for a lock another session holds" in str(raised.value)
        with db.transaction() as tx:
            assert tx.scalar("SELECT pg_backend_pid()") == backend
            assert tx.scalar("SELECT n FROM counts WHERE id = 1") == 1  # the holder's, committed as it left
    finally:
        db.close()


def test_readyz_names_a_statement_that_got_no_answer_in_time_a_timeout_not_by_psycopg_s_private_class(postgres_url):
    """Session 31: a subscription trying again after a statement that got no answer within the answer timeout was
    listed as "StoreError from _WaitTimeout", psycopg's private class. A statement that runs twice the timeout
    stands for a server gone silent."""
    store = PostgresEventStore(postgres_url, answer_timeout=ANSWER)
    db = PostgresDatabase(postgres_url, answer_timeout=ANSWER)
    slow = threading.Event()
    slow.set()

    def handle(event, tx) -> None:
        tx.execute(f"SELECT pg_sleep({2 * ANSWER if slow.is_set() else 0})")

    runner = SubscriptionRunner(store, db, Subscription("test.slow", handle, projection=False), backoff=0.05)
    try:
        store.append("complaint-S", [NewEvent("Noted", {"n": 0})])
        runner.start()
        wait_until(lambda: runner.failure is not None, timeout=HANG, describe="a failure")
        retrying = check_readiness(store, [runner], [], max_lag=1000, wait=0.5).retrying
        slow.clear()
        assert retrying == ["subscription test.slow: StoreError from timeout"], retrying
        wait_until(lambda: runner.caught_up() and runner.failure is None, timeout=HANG, describe="caught up")
    finally:
        runner.stop()
        db.close()
        store.close()


def test_the_network_bounds_a_postgresql_url_sets_itself_win(postgres_url):
    """An operator's `connect_timeout`, keepalives or `tcp_user_timeout` in the URL are kept; the others are added."""
    with psycopg.connect(network_timeouts(f"{postgres_url}&connect_timeout=3&tcp_user_timeout=5000")) as conn:
        parameters = conn.info.get_parameters()
    assert (parameters["connect_timeout"], parameters["tcp_user_timeout"]) == ("3", "5000")
    assert parameters["keepalives_idle"] == str(KEEPALIVE["keepalives_idle"])


def test_the_server_watches_the_store_s_write_connection_as_it_watches_a_lease_s(postgres_url):
    """The write connection holds `lapor_head`'s lock while a group is written: when its host or network vanishes,
    the server must notice within its keepalives (`SERVER_KEEPALIVE`), not after the kernel's two hours, or every
    other process's appends fail until then. The settings are read on that connection, as the server applies them
    (over TCP: `postgres_url` is 127.0.0.1)."""
    with PostgresEventStore(postgres_url) as store:
        store.append("complaint-K1", [NewEvent("ComplaintSubmitted", {"n": 1})], expected_version=-1)
        writer = store._group.conn
        shown = dict(writer.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('tcp_keepalives_idle', 'tcp_keepalives_interval', 'tcp_keepalives_count', 'tcp_user_timeout')"
        ).fetchall())
        writer.rollback()
    # In pg_settings' units: seconds, and milliseconds for tcp_user_timeout.
    assert shown == {
        "tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "4",
        "tcp_user_timeout": "30000",
    }


def test_a_postgresql_store_closes_during_an_outage_without_waiting_for_the_server(postgres_url, caplog):
    """A service stopping while its database is out of reach. Until session 28 closing waited the pool's 30 s for a
    connection to stop its listener on. `HANG` is a bound only a hang reaches, not a claim about closing's speed: it
    gives up on the listener after `LISTENER_STOP_WAIT` (1 s)."""
    with relayed(postgres_url) as relay, ThreadPoolExecutor(1) as closer:
        store = PostgresEventStore(relay.url(postgres_url))
        store.append("complaint-1", [NewEvent("ComplaintSubmitted", {"title": "Banjir"})])
        relay.cut()
        try:
            closer.submit(store.close).result(timeout=HANG)
        finally:
            relay.restore()  # also when it hangs, for the close to end
    assert "closing the store without stopping its listener" in caplog.text


def samples(exposition: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A scrape's samples by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


@pytest.mark.parametrize(
    ("dependency", "unreadable", "readable"),
    [
        # The store's head cannot be read: no head, no lag; the checkpoints are read from the read models.
        ("event store", {"lapor_store_head_position", "lapor_subscription_lag_positions"},
         {"lapor_subscription_checkpoint_position", "lapor_subscription_handled_events"}),
        # The checkpoints cannot be read: no checkpoint, handled or parked count, no lag; the head is read.
        ("read models", {"lapor_subscription_checkpoint_position", "lapor_subscription_handled_events",
                         "lapor_subscription_parked_events", "lapor_subscription_lag_positions"},
         {"lapor_store_head_position"}),
    ],
    ids=["event store", "read models"],
)
def test_metrics_answer_with_what_they_can_read_at_once_when_a_postgresql_database_goes_away(
    postgres_url, tmp_path, dependency, unreadable, readable
):
    """Until session 28 a scrape waited the pool's 30 s for a connection to a database that did not answer (longer
    than Prometheus's own 10 s scrape timeout, so the outage's request counts were lost with it). The gauges of the
    database it cannot read are left out and `lapor_dependency_up` says which; the rest, the request counts and what
    the process knows itself (retrying, leased), are there. The subscription runs (`background`), so its checkpoint
    is read at each scrape. `HANG` is a bound only a hang reaches, not a claim about the scrape's speed."""
    with relayed(postgres_url) as relay:
        urls = behind(relay, postgres_url, dependency)
        app = create_app(load_settings(data=tmp_path, **urls), [probe.SERVICE])
        with TestClient(app) as client:
            assert client.post("/api/probe/complaints", json=SUBMISSION).status_code == 201
            wait_until(lambda: client.get("/readyz").status_code == 200, describe="ready")
            before = samples(client.get("/metrics").text)
            assert {name for name, _ in before} >= unreadable | readable
            response = get_while_cut(client, relay, "/metrics")
            assert response.status_code == 200
            scraped = samples(response.text)
            names = {name for name, _ in scraped}
            assert scraped[("lapor_http_requests_total",
                            (("method", "POST"), ("route", "/api/probe/complaints"), ("status", "201")))] == 1
            assert scraped[("lapor_dependency_up", (("dependency", dependency),))] == 0
            other = "read models" if dependency == "event store" else "event store"
            assert scraped[("lapor_dependency_up", (("dependency", other),))] == 1
            assert not names & unreadable  # left out, not made up
            assert names >= readable | {"lapor_subscription_retrying", "lapor_subscription_leased"}
            wait_until(lambda: samples(client.get("/metrics").text).keys() >= before.keys(), describe="all back")
