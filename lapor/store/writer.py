"""A writer process for the SQLite store: one process owns the write connection, every other appends through it.

```
lapor writer --data var                                   # or: python -m lapor.store.writer --store var/events.db
LAPOR_STORE="sqlite:///var/events.db?writer=var/events.db-writer.sock" lapor up --workers 4
```

Why: in-process group commit lets the threads of one process share a durable commit, but the thread that leads a
group has to win the GIL back from every other thread for each SQLite call it makes (docs/performance.md), and
processes writing the same file take turns on its writer lock, each committing its own groups. A writer process
does the checking, hash-linking, inserting and committing for everybody, on its own core and with no other thread
in its way, and groups appends from every process into one commit.

The protocol, over a Unix socket (mode 0600: anyone who may write the store file may append; nobody else): a
frame is a 4-byte big-endian length and a JSON body. An appender sends `{stream, expected, recorded_at, events:
[{event_id, type, data, metadata, schema_version}]}` and waits for one answer, `{ok: [first_version,
last_version, first_position, last_position]}` or `{error: kind, ...}`, before sending its next append on that
connection. `recorded_at` is the appender's clock, so a store behaves the same wherever its appends are written.

Nothing acknowledged is lost: the writer answers an append only after its group committed (SQLite WAL,
`synchronous=FULL`). If the writer dies first, the appender's connection breaks; it tries once more on a new
connection (appending the same event ids again is a no-op that returns the original result, so an append that did
commit is not doubled) and otherwise raises `StoreError`. Reads do not go through the writer: every store reads
the file directly, as WAL readers never wait for a writer.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import selectors
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from lapor.clock import SystemClock
from lapor.logs import configure_logging
from lapor.orphans import stop_when_orphaned
from lapor.per_thread import PerThread
from lapor.store.group_commit import MAX_GROUP, PendingAppend, commit_group
from lapor.store.model import (
    AppendNotRecorded,
    AppendResult,
    DuplicateEventId,
    ExpectedVersion,
    NewEvent,
    StoreError,
    WrongExpectedVersion,
    error_kind,
    validate_append,
)
from lapor.store.open import sqlite_url
from lapor.store.sqlite import SCHEMA, SqliteGroup, connect

log = logging.getLogger("lapor.store.writer")

_LENGTH = struct.Struct(">I")
MAX_FRAME = 64 * 2**20  # one append's JSON; far above any real one, low enough that a bad length is refused
SEND_TIMEOUT = 10.0  # seconds the writer waits for an appender that does not read its answer
CONNECT_TIMEOUT = 10.0
# Seconds an appender waits for a writer to listen on the socket (none there, or one that died and is starting
# again: `lapor up --store-writer` restarts it within a second), trying every WRITER_POLL seconds, before its
# append fails with StoreError. Without it every append in the gap failed, though the next writer was moments away.
WRITER_RETURN = 5.0
WRITER_POLL = 0.05
RESTART_DELAY = 1.0  # seconds between attempts to start a writer again after one failed to start
ANSWER_READ = 4096
STOP_TIMEOUT = 60.0  # seconds a writer may take to commit what is queued once told to stop


def default_socket(store_path: str | Path) -> Path:
    return Path(f"{store_path}-writer.sock")


def _frame(body: Any) -> bytes:
    payload = orjson.dumps(body)
    return _LENGTH.pack(len(payload)) + payload


# -- the writer process -----------------------------------------------------------------------------------


class _Connection:
    """One appender's socket and the bytes received from it that do not yet make a whole frame."""

    __slots__ = ("buffer", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()


class _Request(PendingAppend):
    __slots__ = ("connection",)

    def __init__(self, connection: _Connection, stream: str, events: Sequence[NewEvent], expected: ExpectedVersion,
                 recorded_at: datetime) -> None:
        super().__init__(stream, events, expected, recorded_at)
        self.connection = connection


def _answer(request: PendingAppend) -> dict[str, Any]:
    error = request.error
    if error is None:
        result = request.outcome()
        return {"ok": [result.first_version, result.last_version, result.first_position, result.last_position]}
    if isinstance(error, WrongExpectedVersion):
        return {"error": "wrong_expected_version", "stream": error.stream, "expected": error.expected_version,
                "actual": error.actual_version}
    if isinstance(error, DuplicateEventId):
        return {"error": "duplicate_event_id", "message": str(error)}
    if isinstance(error, ValueError):
        return {"error": "invalid", "message": str(error)}
    # What caused it, by kind only (`error_kind`): the client raises its own error, which /readyz names.
    cause = None if error.__cause__ is None else error_kind(error.__cause__)
    if isinstance(error, AppendNotRecorded):
        return {"error": "not_recorded", "message": str(error), "cause": cause}
    return {"error": "store", "message": str(error), "cause": cause}


def _decode(connection: _Connection, body: bytes) -> _Request:
    """An append from its JSON; raises ValueError (or KeyError/TypeError, or `validate_append`'s DuplicateEventId)
    for one that is not well formed."""
    message = orjson.loads(body)
    events = [_event(e) for e in message["events"]]
    stream, expected = message["stream"], message["expected"]
    recorded_at = datetime.fromisoformat(message["recorded_at"])
    if recorded_at.tzinfo is None:
        raise ValueError("recorded_at needs a UTC offset")
    validate_append(stream, events, expected)
    return _Request(connection, stream, events, expected, recorded_at)


def _event(fields: dict[str, Any]) -> NewEvent:
    """Its shape is checked by `validate_append`, like any other append's."""
    event_id = fields["event_id"]
    if not isinstance(event_id, str):  # uuid.UUID would raise AttributeError
        raise ValueError(f"event_id {event_id!r} is not a UUID in text")
    return NewEvent(fields["type"], fields["data"], fields["metadata"], uuid.UUID(event_id), fields["schema_version"])


class StoreWriter:
    """Serves appends to the SQLite store at `path` on a Unix socket, committing whatever arrived together as one
    group. Single-threaded: `serve` runs until `stop` is set."""

    def __init__(self, path: str | Path, socket_path: str | Path | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.socket_path = Path(socket_path) if socket_path else default_socket(self.path)
        self._selector = selectors.DefaultSelector()
        self._listener = self._listen()  # first: a second writer for this socket touches nothing
        conn = None
        try:
            conn = self._conn = connect(self.path)
            self._conn.executescript(SCHEMA)
            # The same lock file as in-process writers: a store without `writer=` may still write the file meanwhile.
            self._group = SqliteGroup(self._conn, SystemClock(), lock_path=f"{self.path}-writer.lock")
        except BaseException:
            # A store it cannot keep (a file that is not a database): refused with no socket left behind, as a writer
            # that stops leaves none (session 31: lapor writer and lapor up --store-writer left theirs).
            if conn is not None:
                conn.close()
            self._stop_listening()
            raise
        self._queue: deque[_Request] = deque()
        self.groups = 0  # groups committed (for the benchmark and the tests)
        self.appends = 0

    def _listen(self) -> socket.socket:
        """The socket, once this writer holds the lock beside it: one writer per socket, and a socket left by a
        writer that died (its lock went with it) is taken over."""
        path = self.socket_path
        self._socket_lock = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._socket_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._socket_lock)
            raise StoreError(f"another writer already serves {path}") from None
        path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX)
        old_umask = os.umask(0o177)
        try:
            listener.bind(str(path))
        finally:
            os.umask(old_umask)
        listener.listen(256)
        listener.setblocking(False)
        self._selector.register(listener, selectors.EVENT_READ)
        return listener

    def serve(self, stop: threading.Event) -> None:
        """Serve until `stop` is set, then commit and answer what is queued."""
        log.info("store writer serving %s on %s", self.path, self.socket_path)
        while not stop.is_set():
            for key, _ in self._selector.select(timeout=0.0 if self._queue else 0.2):
                if key.fileobj is self._listener:
                    self._accept()
                else:
                    self._receive(key.data)
            if self._queue:
                self._commit_next_group()
        while self._queue:
            self._commit_next_group()

    def _accept(self) -> None:
        with contextlib.suppress(BlockingIOError):
            sock, _ = self._listener.accept()
            sock.settimeout(SEND_TIMEOUT)
            self._selector.register(sock, selectors.EVENT_READ, _Connection(sock))

    def _drop(self, connection: _Connection) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(connection.sock)
        connection.sock.close()

    def _receive(self, connection: _Connection) -> None:
        try:
            chunk = connection.sock.recv(1 << 16)
        except OSError:
            chunk = b""
        if not chunk:  # the appender went away; what it sent and is queued is still committed
            self._drop(connection)
            return
        buffer = connection.buffer
        buffer += chunk
        while len(buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buffer)
            if length > MAX_FRAME:
                log.warning("store writer: dropped an appender that sent a %d-byte frame", length)
                self._drop(connection)
                return
            if len(buffer) < _LENGTH.size + length:
                break
            body = bytes(buffer[_LENGTH.size : _LENGTH.size + length])
            del buffer[: _LENGTH.size + length]
            try:
                self._queue.append(_decode(connection, body))
            except (ValueError, KeyError, TypeError, StoreError) as error:  # StoreError: an event id given twice
                self._send(connection, {"error": "invalid", "message": f"not a well-formed append: {error}"})

    def _commit_next_group(self) -> None:
        queue = self._queue
        batch = [queue.popleft() for _ in range(min(MAX_GROUP, len(queue)))]
        self._group.acquire()
        commit_group(self._group, batch)  # decides every request; gives the lock up before we answer
        self.groups += 1
        self.appends += len(batch)
        for request in batch:
            self._send(request.connection, _answer(request))

    def _send(self, connection: _Connection, answer: dict[str, Any]) -> None:
        try:
            connection.sock.sendall(_frame(answer))
        except OSError:  # gone, or not reading: it will find its connection broken and retry
            self._drop(connection)

    def close(self) -> None:
        for key in list(self._selector.get_map().values()):
            if key.fileobj is not self._listener:
                self._drop(key.data)
        self._stop_listening()
        self._group.close()
        self._conn.close()

    def _stop_listening(self) -> None:
        self._selector.close()
        self._listener.close()
        self.socket_path.unlink(missing_ok=True)
        os.close(self._socket_lock)  # after the unlink: a writer taking over finds no socket of ours


# -- the appenders' side ----------------------------------------------------------------------------------


class RemoteWriter:
    """Sends one store's appends to a writer process: one connection per thread, each waiting for its answer.
    Fits where `GroupCommitWriter` does (`submit`, `close`)."""

    def __init__(self, socket_path: str | Path, now: Callable[[], datetime], on_commit: Callable[[int], None]) -> None:
        self.socket_path = str(socket_path)
        self._now = now
        self._on_commit = on_commit
        self._sockets = PerThread(self._connect, socket.socket.close)
        self._closed = False

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + WRITER_RETURN
        while True:
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(CONNECT_TIMEOUT)
            try:
                sock.connect(self.socket_path)
                break
            except OSError as error:
                sock.close()
                # No socket, or nobody listening on it: no writer yet, or one starting again after its predecessor
                # died. Anything else (no permission, a timeout) will not pass by itself.
                waiting = isinstance(error, FileNotFoundError | ConnectionRefusedError)
                if not waiting or self._closed or time.monotonic() + WRITER_POLL > deadline:
                    # Nothing was sent: not recorded (`submit`'s second try turns this into "may or may not").
                    raise AppendNotRecorded(
                        f"the store writer at {self.socket_path} does not answer: {error}"
                    ) from None
            time.sleep(WRITER_POLL)
        sock.settimeout(None)  # an answer comes after the group's commit, however long the disk takes
        return sock

    def submit(self, stream: str, events: Sequence[NewEvent], expected: ExpectedVersion) -> AppendResult:
        if self._closed:
            raise AppendNotRecorded("the store is closed")
        try:
            frame = _frame({
                "stream": stream,
                "expected": expected,
                "recorded_at": self._now().isoformat(),
                "events": [
                    {"event_id": str(e.event_id), "type": e.type, "data": e.data, "metadata": e.metadata,
                     "schema_version": e.schema_version}
                    for e in events
                ],
            })
        except orjson.JSONEncodeError as error:  # as link_events refuses it in-process: this append alone
            raise ValueError(f"{stream}: an event's data or metadata is not JSON: {error}") from None
        try:
            answer = self._exchange(frame)
        except (OSError, EOFError):
            # The writer went away (restarted, or died) before answering. Once more on a new connection: the same
            # event ids make the retry a no-op if the append had committed.
            try:
                answer = self._exchange(frame)
            except (OSError, EOFError, StoreError) as error:  # StoreError: no writer answers a new connection
                raise StoreError(
                    f"the store writer at {self.socket_path} went away before answering ({error}); the append may "
                    "or may not be recorded: retry it with the same event ids"
                ) from None
        if "ok" in answer:
            result = AppendResult(stream, *answer["ok"])
            self._on_commit(result.last_position)
            return result
        kind = answer["error"]
        if kind == "wrong_expected_version":
            raise WrongExpectedVersion(answer["stream"], answer["expected"], answer["actual"])
        if kind == "duplicate_event_id":
            raise DuplicateEventId(answer["message"])
        if kind == "invalid":
            raise ValueError(answer["message"])
        failed = (AppendNotRecorded if kind == "not_recorded" else StoreError)(answer["message"])
        failed.remote_cause = answer.get("cause")
        raise failed

    def _exchange(self, frame: bytes) -> dict[str, Any]:
        sock = self._sockets.get()
        try:
            sock.sendall(frame)
            return orjson.loads(_read_answer(sock))
        except (OSError, EOFError):
            self._sockets.discard()
            raise

    def close(self) -> None:
        self._closed = True
        self._sockets.close()


def _read_answer(sock: socket.socket) -> bytes:
    """One answer frame's body. Answers are small and the writer sends each whole, so this is nearly always one
    `recv`: every call gives up the GIL and, among busy threads, waits to win it back."""
    received = bytearray()
    while True:
        chunk = sock.recv(ANSWER_READ)
        if not chunk:
            raise EOFError("the store writer closed the connection")
        received += chunk
        if len(received) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(received)
            if len(received) >= _LENGTH.size + length:
                return bytes(received[_LENGTH.size : _LENGTH.size + length])


# -- running it -------------------------------------------------------------------------------------------


# What stops a writer that serves a parent (`--parent`; `WriterProcess(stop_with_us=True)`): its parent's word. Not
# SIGTERM or SIGINT, which the parent's whole process group gets at once when the service is stopped (systemd's
# control group, a terminal's Ctrl-C, `kill -- -PGID`): the writer stopped at once, while the parent was still
# finishing its requests, and `lapor up` logged an ERROR, "exited with code 0; starting a new one", and started
# another for the appends still coming (session 32). It now serves until its parent stops it, or is gone.
PARENT_SAYS_STOP = signal.SIGUSR1


def run(path: str | Path, socket_path: str | Path | None = None, parent: int | None = None) -> int:
    """Serve until SIGTERM or SIGINT; with `parent`, until that process says so (PARENT_SAYS_STOP) or is gone.
    Queued appends are committed and answered first."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT) if parent is None else (PARENT_SAYS_STOP,):
        signal.signal(signum, lambda *_: stop.set())
    if parent is not None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)
        stop_when_orphaned(parent, stop.set, stop.is_set)
    try:
        writer = StoreWriter(path, socket_path)
    except StoreError as error:
        print(f"store writer: not started: {error}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error) as error:  # the data directory a file, unwritable; a socket path too long
        reason = getattr(error, "strerror", None) or " ".join(str(error).split())
        print(f"store writer: not started: cannot keep the store {path} there ({reason}); check --data",
              file=sys.stderr)
        return 2
    print(f"store writer: {writer.path} on {writer.socket_path}", flush=True)
    try:
        writer.serve(stop)
    finally:
        writer.close()
    print(f"store writer: stopped after {writer.appends} appends in {writer.groups} groups", flush=True)
    return 0


class WriterProcess:
    """`python -m lapor.store.writer` for the store at `path`, returned once it serves (StoreError if it did not
    start, e.g. another writer serves that socket; its log, on our stderr, says why). `stop_with_us`: it also stops
    when this process is gone, even killed. `restart`: one that exits before `stop` (killed, out of memory) is
    started again, since every append of every process waits on it (`lapor up --store-writer`); appenders wait for
    the new one (WRITER_RETURN), and what the dead one had committed is answered from the store. A context manager
    that stops it on exit."""

    def __init__(self, path: str | Path, *, stop_with_us: bool = False, restart: bool = False) -> None:
        self.path = Path(path)
        self.socket = default_socket(self.path)
        self.url = sqlite_url(self.path, self.socket)
        self._command = [sys.executable, "-m", "lapor.store.writer", "--store", str(path)]
        self._stop_signal = PARENT_SAYS_STOP if stop_with_us else signal.SIGTERM
        if stop_with_us:
            self._command += ["--parent", str(os.getpid())]
        self._stopping = False
        self._lock = threading.Lock()  # `process` is replaced by the watcher and stopped by `stop`
        self.process = self._start()
        if restart:
            threading.Thread(target=self._restart_when_gone, name="store-writer-watch", daemon=True).start()

    def _start(self) -> subprocess.Popen[str]:
        process = subprocess.Popen(self._command, stdout=subprocess.PIPE, text=True)  # its log goes where ours goes
        assert process.stdout is not None
        if not process.stdout.readline().startswith("store writer:"):
            exit_code = process.wait(STOP_TIMEOUT)
            raise StoreError(f"the store writer for {self.path} did not start (exit {exit_code}; its log says why)")
        return process

    def _restart_when_gone(self) -> None:
        while True:
            exit_code = self.process.wait()
            with self._lock:
                if self._stopping:
                    return
                log.error("the store writer for %s exited with code %s; starting a new one", self.path, exit_code)
                try:
                    self.process = self._start()
                    continue
                except (OSError, StoreError) as error:
                    log.error("the store writer for %s could not be started again: %s", self.path, error)
            time.sleep(RESTART_DELAY)

    def stop(self) -> str:
        """SIGTERM, or PARENT_SAYS_STOP to one that serves us (queued appends are committed and answered first), and
        what it said last: how many appends it committed in how many groups."""
        with self._lock:
            self._stopping = True
            process = self.process
        process.send_signal(self._stop_signal)
        said, _ = process.communicate(timeout=STOP_TIMEOUT)
        return said.strip().splitlines()[-1] if said.strip() else f"store writer: exit {process.returncode}"

    def kill(self) -> None:
        """SIGKILL: no chance to finish what it was doing (for the tests of what that loses: nothing)."""
        self.process.kill()
        self.process.wait(STOP_TIMEOUT)

    def __enter__(self) -> WriterProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve appends to a SQLite event store (see lapor.store.writer).")
    parser.add_argument("--store", required=True, help="the SQLite file, e.g. var/events.db")
    parser.add_argument("--socket", help="default: <store>-writer.sock")
    parser.add_argument("--parent", type=int, help="stop when the process with this id is gone")
    args = parser.parse_args(argv)
    configure_logging()
    return run(args.store, args.socket, args.parent)


if __name__ == "__main__":
    raise SystemExit(main())
