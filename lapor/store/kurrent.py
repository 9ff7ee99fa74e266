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
- `read_all` can only start at a recorded position: `from_position` must be 0 or one past a position this store
  returned (the way subscriptions checkpoint); reading starts at that event and drops it.
- The PII vault is a SQLite file, named by the URL's `vault` query parameter (default `var/kurrentdb-vault.db`):
  deleting from KurrentDB is final only after a scavenge, and the vault must forget at once (UU PDP).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
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
    check_expected,
    link_events,
    replayed_result,
    validate_append,
)
from lapor.store.vault import SqliteVault

DEFAULT_VAULT = "var/kurrentdb-vault.db"


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


def from_kurrent(recorded: KurrentRecordedEvent) -> RecordedEvent:
    envelope = orjson.loads(recorded.metadata)
    return RecordedEvent(
        recorded.id,
        recorded.stream_name,
        recorded.stream_position,
        recorded.commit_position,
        recorded.type,
        int(envelope["schema_version"]),
        orjson.loads(recorded.data),
        orjson.loads(envelope["metadata"]),
        datetime.fromisoformat(envelope["recorded_at"]),
        envelope["prev_hash"],
        envelope["hash"],
    )


class KurrentEventStore(EventStore):
    def __init__(self, url: str, *, clock: Clock | None = None) -> None:
        self.url = url
        self.clock = clock or SystemClock()
        client_url, vault_path = split_vault(url)
        self._client = KurrentDBClient(client_url)
        vault_path.parent.mkdir(parents=True, exist_ok=True)
        self.vault = SqliteVault(vault_path, clock=self.clock)
        self._closed = False

    def append(self, stream: str, events: Sequence[NewEvent], expected_version: ExpectedVersion = ANY) -> AppendResult:
        validate_append(stream, events)
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
            prev_hash = orjson.loads(recorded[-1].metadata)["hash"] if recorded else GENESIS_HASH
            linked = link_events(
                stream,
                events,
                current_version=current,
                prev_hash=prev_hash,
                first_position=0,  # KurrentDB assigns positions; only the versions and hashes are used here
                recorded_at=self.clock.now().astimezone(UTC),
            )
            try:
                self._client.append_to_stream(
                    stream,
                    events=[to_kurrent(event) for event in linked],
                    current_version=current if current >= 0 else StreamState.NO_STREAM,
                )
            except WrongCurrentVersionError:
                continue  # another writer appended since we read: look again
            written = self._client.get_stream(stream, stream_position=current + 1, limit=len(events))
            return AppendResult(
                stream, current + 1, current + len(events), written[0].commit_position, written[-1].commit_position
            )

    def _whole_stream(self, stream: str) -> tuple[KurrentRecordedEvent, ...]:
        try:
            return self._client.get_stream(stream)
        except NotFoundError:
            return ()

    def read_stream(self, stream: str, from_version: int = 0, limit: int | None = None) -> list[RecordedEvent]:
        try:
            found = self._client.get_stream(
                stream, stream_position=from_version, limit=sys.maxsize if limit is None else limit
            )
        except NotFoundError:
            return []
        return [from_kurrent(event) for event in found]

    def read_all(
        self, from_position: int = 0, category: str | None = None, limit: int = 1000, share: StreamShare | None = None
    ) -> list[RecordedEvent]:
        if share is None:
            return self._read_all(from_position, category, limit)
        # KurrentDB cannot filter by a hash of the stream name: read on until `limit` of the share are found.
        found: list[RecordedEvent] = []
        while len(found) < limit:
            page = self._read_all(from_position, category, limit)
            found += [event for event in page if share.holds(event.stream)]
            if len(page) < limit:
                break
            from_position = page[-1].position + 1
        return found[:limit]

    def _read_all(self, from_position: int, category: str | None, limit: int) -> list[RecordedEvent]:
        start = None if from_position <= 1 else from_position - 1
        by_category: dict[str, Any] = (
            {}
            if category is None
            else {"filter_include": (f"{category}-",), "filter_by_stream_name": True, "filter_by_prefix": True}
        )
        try:
            response = self._client.read_all(commit_position=start, limit=limit + 1, **by_category)
            events = [from_kurrent(event) for event in response if event.commit_position >= from_position]
        except InvalidCommitPositionError as error:
            raise ValueError(
                f"KurrentDB reads from recorded positions only; {from_position} is not one past such a position"
            ) from error
        return events[:limit]

    def head_position(self) -> int:
        return self._client.get_commit_position()

    def stream_version(self, stream: str) -> int:
        version = self._client.get_current_version(stream)
        return -1 if version is StreamState.NO_STREAM else version

    def wait_for_events(self, after_position: int, timeout: float) -> bool:
        head = self.head_position()
        if head > after_position:
            return True
        if timeout <= 0:
            return False
        # A catch-up subscription from the head (a recorded position, as KurrentDB requires) delivers whatever
        # commits next; its deadline is our timeout.
        subscription = self._client.subscribe_to_all(commit_position=head or None, timeout=timeout)
        try:
            return any(event.commit_position > after_position for event in subscription)
        except DeadlineExceededError:
            return False
        finally:
            subscription.stop()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._client.close()
        self.vault.close()
