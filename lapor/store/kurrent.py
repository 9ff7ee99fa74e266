"""KurrentDB adapter (kurrentdbclient), opened by `open_store("kurrentdb://host:2113?tls=false")`.

KurrentDB is an event store already, so this adapter mostly translates:
- A LAPOR stream is a KurrentDB stream of the same name, its version the stream position, its position the
  event's commit position in `$all`; a category is a stream-name prefix (`complaint-`).
- `data` is the event's JSON. `metadata` holds LAPOR's envelope with string values only (KurrentDB may refuse
  anything else): the event's own metadata as JSON text, recorded_at (from the injected clock), schema_version,
  prev_hash and hash.
- The hash chain continues from the stream's last event, read at append time; the append then expects exactly
  that version, so no other event can slip between the link and ours. When another writer wins the race,
  KurrentDB refuses, the adapter reads again and re-checks the caller's expectation: ANY or EXISTS are tried
  again, an exact version or NO_STREAM becomes WrongExpectedVersion with the actual version.
- Idempotency: the ids of an append are looked up in its own stream (KurrentDB keeps no index by event id, so
  an id already used in *another* stream is not detected, unlike SQLite and PostgreSQL).
- `read_all` can only start at a recorded position: `from_position` must be 0, a position this store returned, or
  one past one (the way subscriptions checkpoint). One past is tried first (reading starts at the event before
  and drops it); when KurrentDB says that is not a recorded position, `from_position` itself is.
- Only LAPOR's streams are read from `$all` (names like `complaint-...`, `STREAM_PATTERN`'s shape): other
  applications' events on the same server, and KurrentDB's own, are never decoded as LAPOR's.
- An event of a LAPOR stream that does not decode as LAPOR's (another writer's data or metadata) is an
  `UnreadableEvent` (`decoded_kurrent`), as on the SQL adapters. An append to a stream whose last event is such an
  event is refused with an `UnreadableEvent` naming it (`chain_end`): the hash chain cannot be continued from it.
- Every call has a deadline (the store's `deadline`, `LAPOR_STORE_TIMEOUT`, by default `DEADLINE`; or what is left
  of `wait_for_events`' timeout), and the client's failures (server away, deadline passed) are `StoreError`s; a
  failed append may or may not have been recorded, which appending the same event ids again settles.
- The PII vault is a SQLite file, named by the URL's `vault` query parameter (default `var/kurrentdb-vault.db`):
  deleting from KurrentDB is final only after a scavenge, and the vault must forget at once (UU PDP).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
from kurrentdbclient import KurrentDBClient, StreamState
from kurrentdbclient import NewEvent as KurrentNewEvent
from kurrentdbclient import RecordedEvent as KurrentRecordedEvent
from kurrentdbclient.exceptions import (
    DeadlineExceededError,
    InvalidCommitPositionError,
    KurrentDBClientError,
    NotFoundError,
    WrongCurrentVersionError,
)

from lapor.clock import Clock, SystemClock
from lapor.store.model import (
    ANY,
    GENESIS_HASH,
    AppendResult,
    EventStore,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StoreError,
    StreamShare,
    UndecodableField,
    UnreadableEvent,
    check_expected,
    decoded,
    decoded_events,
    link_events,
    read_window,
    replayed_result,
    validate_append,
)
from lapor.store.vault import SqliteVault

DEFAULT_VAULT = "var/kurrentdb-vault.db"
DEADLINE = 30.0  # seconds any one call to the server may take (reads included: the client sets none for them)
# `$all` as LAPOR sees it: its streams only (the client wraps the pattern in ^...$).
LAPOR_STREAMS: dict[str, Any] = {"filter_include": (r"[A-Za-z0-9]+-.+",), "filter_by_stream_name": True}


@contextmanager
def _server_errors(what: str) -> Iterator[None]:
    """The client's own failures as the port's `StoreError`, saying what was being done."""
    try:
        yield
    except (WrongCurrentVersionError, NotFoundError, InvalidCommitPositionError):
        raise  # the callers handle these
    except KurrentDBClientError as error:
        raise StoreError(f"KurrentDB: {what} failed: {type(error).__name__}: {error}") from error


def split_vault(url: str) -> tuple[str, Path]:
    """The client's URL without LAPOR's `vault` parameter (kurrentdbclient refuses unknown ones), and the
    vault's path."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    vault = [value for key, value in query if key == "vault"]
    client_query = urlencode([(key, value) for key, value in query if key != "vault"])
    return urlunsplit(parts._replace(query=client_query)), Path(vault[-1] if vault else DEFAULT_VAULT)


def to_kurrent(event: RecordedEvent) -> KurrentNewEvent:
    envelope = {
        "metadata": orjson.dumps(event.metadata).decode(),
        "recorded_at": event.recorded_at.isoformat(),
        "schema_version": str(event.schema_version),
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }
    return KurrentNewEvent(
        type=event.type, data=orjson.dumps(event.data), metadata=orjson.dumps(envelope), id=event.event_id
    )


def _row(recorded: KurrentRecordedEvent) -> tuple[Any, ...]:
    """The fields of a KurrentDB event in the order `UnreadableEvent` reads a row by (`lapor.store.model`): id,
    stream, version, position, type; then the data and LAPOR's envelope as the server keeps them."""
    return (
        recorded.id, recorded.stream_name, recorded.stream_position, recorded.commit_position, recorded.type,
        recorded.data, recorded.metadata,
    )


def _from_row(row: Sequence[Any]) -> RecordedEvent:
    try:
        event_id, stream, version, position, event_type, data, metadata = row
        envelope = decoded("metadata", orjson.loads, metadata)
        return RecordedEvent(
            event_id, stream, version, position, event_type,
            decoded("metadata", int, envelope["schema_version"]),
            decoded("data", orjson.loads, data),
            decoded("metadata", orjson.loads, envelope["metadata"]),
            decoded("recorded_at", datetime.fromisoformat, envelope["recorded_at"]),
            envelope["prev_hash"],
            envelope["hash"],
        )
    except (KeyError, TypeError) as missing:  # an envelope without one of LAPOR's fields, or not an object at all
        raise UndecodableField("metadata", ValueError(f"not LAPOR's envelope ({missing!r})")) from None


def decoded_kurrent(recorded: Iterable[KurrentRecordedEvent]) -> list[RecordedEvent]:
    """The LAPOR events of what KurrentDB returned, up to the first that does not decode: `UnreadableEvent` then, as
    the SQL adapters raise, naming its stream, version, position and type and carrying the events before it (a
    subscription parks it and goes on, the integrity walk names it). KurrentDB's events cannot be changed in place,
    but another writer may append to a LAPOR stream what is not LAPOR's event (data that is not JSON, no envelope):
    until session 30 that failed every read of the batch holding it with orjson's or a KeyError, for good."""
    return decoded_events((_row(event) for event in recorded), _from_row)


def chain_end(last: KurrentRecordedEvent) -> str:
    """The hash a stream's next event links to: that of its last event, which must be LAPOR's. One another writer
    appended (not LAPOR's envelope, data that is not JSON) is an `UnreadableEvent` naming it: the chain cannot be
    continued from it, so nothing can be appended to the stream. Until session 30 the append failed with orjson's
    error or a KeyError (a reaction's event retried and parked as a handler's bug, saying nothing of why)."""
    row = _row(last)
    try:
        event = _from_row(row)
        if not isinstance(event.hash, str):
            raise UndecodableField("metadata", TypeError(f"its hash is {type(event.hash).__name__}, not text"))
    except (ValueError, TypeError) as error:
        raise UnreadableEvent([], row, error, "it is the stream's last event, so its hash chain cannot be continued "
                              "and nothing can be appended to it") from error
    return event.hash


class KurrentEventStore(EventStore):
    def __init__(self, url: str, *, clock: Clock | None = None, deadline: float | None = None) -> None:
        """`deadline`: seconds any one call to the server may take (`LAPOR_STORE_TIMEOUT`); None is `DEADLINE`."""
        self.url = url
        self._deadline = DEADLINE if deadline is None else deadline
        self.clock = clock or SystemClock()
        client_url, vault_path = split_vault(url)
        self._client = KurrentDBClient(client_url)
        vault_path.parent.mkdir(parents=True, exist_ok=True)
        self.vault = SqliteVault(vault_path, clock=self.clock)
        self._closed = False

    def append(self, stream: str, events: Sequence[NewEvent], expected_version: ExpectedVersion = ANY) -> AppendResult:
        validate_append(stream, events, expected_version)
        if self._closed:
            raise StoreError("the store is closed")
        ids = {event.event_id for event in events}
        while True:
            recorded = self._whole_stream(stream)
            replayed = [r for r in recorded if r.id in ids]
            if replayed:
                rows = [(r.id, r.stream_name, r.stream_position, r.commit_position) for r in replayed]
                return replayed_result(stream, events, rows)
            current = recorded[-1].stream_position if recorded else -1
            check_expected(stream, expected_version, current)
            prev_hash = chain_end(recorded[-1]) if recorded else GENESIS_HASH
            linked = link_events(
                stream,
                events,
                current_version=current,
                prev_hash=prev_hash,
                first_position=0,  # KurrentDB assigns positions; only the versions and hashes are used here
                recorded_at=self.clock.now().astimezone(UTC),
            )
            try:
                with _server_errors(f"appending to {stream} (it may or may not be recorded: append its ids again)"):
                    self._client.append_to_stream(
                        stream,
                        events=[to_kurrent(event) for event in linked],
                        current_version=current if current >= 0 else StreamState.NO_STREAM,
                        timeout=self._deadline,
                    )
            except WrongCurrentVersionError:
                continue  # another writer appended since we read: look again
            with _server_errors(f"reading back what was appended to {stream}"):
                written = self._client.get_stream(
                    stream, stream_position=current + 1, limit=len(events), timeout=self._deadline
                )
            return AppendResult(
                stream, current + 1, current + len(events), written[0].commit_position, written[-1].commit_position
            )

    def _whole_stream(self, stream: str) -> tuple[KurrentRecordedEvent, ...]:
        try:
            with _server_errors(f"reading {stream}"):
                return self._client.get_stream(stream, timeout=self._deadline)
        except NotFoundError:
            return ()

    def read_stream(self, stream: str, from_version: int = 0, limit: int | None = None) -> list[RecordedEvent]:
        from_version, limit = read_window(from_version, limit)
        try:
            with _server_errors(f"reading {stream}"):
                found = self._client.get_stream(
                    stream, stream_position=from_version, limit=limit, timeout=self._deadline
                )
        except NotFoundError:
            return []
        return decoded_kurrent(found)

    def read_all(
        self, from_position: int = 0, category: str | None = None, limit: int = 1000, share: StreamShare | None = None
    ) -> list[RecordedEvent]:
        from_position, limit = read_window(from_position, limit)
        if share is None:
            return decoded_kurrent(self._read_all(from_position, category, limit))
        # KurrentDB cannot filter by a hash of the stream name: read on until `limit` of the share are found. Only
        # they are decoded, as the SQL adapters decode only the share's rows.
        found: list[KurrentRecordedEvent] = []
        while len(found) < limit:
            page = self._read_all(from_position, category, limit)
            found += [event for event in page if share.holds(event.stream_name)]
            if len(page) < limit:
                break
            from_position = page[-1].commit_position + 1
        return decoded_kurrent(found[:limit])

    def _read_all(self, from_position: int, category: str | None, limit: int) -> list[KurrentRecordedEvent]:
        """Up to `limit` of LAPOR's events (of `category` when given) from `from_position` on, as KurrentDB returns
        them: `decoded_kurrent` decodes them."""
        streams: dict[str, Any] = (
            LAPOR_STREAMS
            if category is None
            else {"filter_include": (f"{category}-",), "filter_by_stream_name": True, "filter_by_prefix": True}
        )
        # One past a recorded position (a checkpoint) first: the event before it is where the read may start. Else
        # the position of an event itself.
        starts = [None] if from_position <= 1 else [from_position - 1, from_position]
        for start in starts:
            try:
                with _server_errors("reading $all"):
                    response = self._client.read_all(
                        commit_position=start, limit=limit + 1, timeout=self._deadline, **streams
                    )
                    events = [event for event in response if event.commit_position >= from_position]
            except InvalidCommitPositionError:
                continue
            return events[:limit]
        raise ValueError(
            f"KurrentDB reads from recorded positions only; {from_position} is neither such a position nor one past one"
        )

    def head_position(self, *, wait: float | None = None) -> int:
        return self._head(self._deadline if wait is None else wait)

    def _head(self, deadline: float) -> int:
        with _server_errors("reading the head of $all"):
            return self._client.get_commit_position(timeout=deadline, **LAPOR_STREAMS)

    def stream_version(self, stream: str) -> int:
        with _server_errors(f"reading the version of {stream}"):
            version = self._client.get_current_version(stream, timeout=self._deadline)
        return -1 if version is StreamState.NO_STREAM else version

    def wait_for_events(self, after_position: int, timeout: float) -> bool:
        """True when the log has (or gets, within `timeout`) an event past `after_position`; False when the time
        runs out first, or the server does not answer within it."""
        ends = time.monotonic() + max(timeout, 0.0)
        subscription = None
        try:
            head = self._head(self._deadline if timeout <= 0 else max(timeout, 0.001))
            if head > after_position:
                return True
            left = ends - time.monotonic()
            if left <= 0:
                return False
            # A catch-up subscription from the head (a recorded position, as KurrentDB requires) delivers whatever
            # commits next; its deadline is what is left of our timeout. Creating it waits for the server's
            # confirmation under that deadline too.
            with _server_errors("waiting for new events"):
                subscription = self._client.subscribe_to_all(
                    commit_position=head or None, timeout=left, **LAPOR_STREAMS
                )
                return any(event.commit_position > after_position for event in subscription)
        except StoreError as error:
            if isinstance(error.__cause__, DeadlineExceededError):
                return False  # the time ran out, in the head's read or the wait
            raise
        finally:
            if subscription is not None:
                subscription.stop()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._client.close()
        self.vault.close()
