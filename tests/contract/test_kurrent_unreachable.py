"""The KurrentDB adapter when its server does not answer: every call ends within its deadline as the port's
`StoreError`, and `wait_for_events` returns False. No KurrentDB is needed: the "server" is a real socket that
accepts connections and never answers (a stalled server), or a port nothing listens on (a server that is gone).
What a running KurrentDB does is the contract suite's part (test_store_contract.py, with Docker)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from lapor.settings import load_settings
from lapor.store import StoreError, kurrent, open_store
from lapor.store.model import NewEvent


@pytest.fixture
def stalled() -> Iterator[int]:
    """A port whose listener takes every connection and says nothing."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[Any] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept())
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    for connection, _ in held:
        connection.close()
    server.close()


@pytest.fixture
def gone() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again: nothing listens there


HANG = 10.0  # seconds: a bound only a call that waits out the 30 s default reaches, not a claim about its speed


def _store(port: int, tmp_path: Path) -> kurrent.KurrentEventStore:
    return kurrent.KurrentEventStore(f"kurrentdb://127.0.0.1:{port}?tls=false&vault={tmp_path / 'vault.db'}")


CALLS: dict[str, Callable[[kurrent.KurrentEventStore], Any]] = {
    "append": lambda store: store.append("complaint-LAP-1", [NewEvent(type="Noted", data={"n": 1})]),
    "read_stream": lambda store: store.read_stream("complaint-LAP-1"),
    "read_all": lambda store: store.read_all(0),
    "head_position": lambda store: store.head_position(),
    "stream_version": lambda store: store.stream_version("complaint-LAP-1"),
}


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("server", ["stalled", "gone"])
def test_a_server_that_does_not_answer_is_a_store_error(
    call: str, server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setattr(kurrent, "DEADLINE", 0.3)  # without it, a stalled server's reads would wait for ever
    store = _store(request.getfixturevalue(server), tmp_path)
    try:
        with pytest.raises(StoreError, match=r"^KurrentDB: .* failed: "):
            CALLS[call](store)
    finally:
        store.close()


def test_waiting_on_a_stalled_server_runs_out_as_nothing_new(
    stalled: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kurrent, "DEADLINE", 0.3)
    store = _store(stalled, tmp_path)
    try:
        assert store.wait_for_events(0, 0.2) is False
    finally:
        store.close()


def test_the_store_timeout_setting_bounds_every_call_to_a_stalled_kurrentdb(stalled: int, tmp_path: Path) -> None:
    """`LAPOR_STORE_TIMEOUT` reaches KurrentDB's calls as their deadline (session 30: only PostgreSQL's statements
    took it, KurrentDB kept its 30 s). The stalled server never answers: the read ends as a `StoreError` once the
    deadline given passed, well within `HANG`, a bound only a call keeping the 30 s default reaches."""
    url = f"kurrentdb://127.0.0.1:{stalled}?tls=false&vault={tmp_path / 'vault.db'}"
    settings = load_settings(data=tmp_path, store=url, store_timeout=0.3)
    store = open_store(settings.store, answer_timeout=settings.store_timeout)
    try:
        with ThreadPoolExecutor(1) as caller:
            reading = caller.submit(store.read_stream, "complaint-LAP-1")
            with pytest.raises(StoreError, match=r"^KurrentDB: .* failed: "):
                reading.result(timeout=HANG)
    finally:
        store.close()
