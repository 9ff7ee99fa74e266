"""How the KurrentDB adapter decodes what its server returns, without a server: the events are kurrentdbclient's own
`RecordedEvent`s, made as the client makes them from the server's answer, with the fields a KurrentDB holds. What a
running KurrentDB does is the contract suite's part (test_store_contract.py, with Docker)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from kurrentdbclient import RecordedEvent as KurrentRecordedEvent

from lapor.store import GENESIS_HASH, NewEvent, UnreadableEvent
from lapor.store.kurrent import chain_end, decoded_kurrent, to_kurrent
from lapor.store.model import link_events

RECORDED_AT = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)


def recorded(stream: str, version: int, commit_position: int, *, data: bytes | None = None,
             metadata: bytes | None = None) -> KurrentRecordedEvent:
    """A LAPOR event as KurrentDB returns it (`to_kurrent`'s data and envelope), or with `data` or `metadata` as
    another writer might have appended them."""
    event = NewEvent("Noted", {"n": version}, {"actor": "tester"})
    [linked] = link_events(stream, [event], current_version=version - 1, prev_hash=GENESIS_HASH, first_position=0,
                           recorded_at=RECORDED_AT)
    sent = to_kurrent(linked)
    return KurrentRecordedEvent(
        type=sent.type, data=sent.data if data is None else data,
        metadata=sent.metadata if metadata is None else metadata,
        content_type="application/json", id=sent.id, stream_name=stream, stream_position=version,
        commit_position=commit_position, prepare_position=commit_position, recorded_at=RECORDED_AT,
    )


def test_kurrentdb_events_of_lapor_decode_with_their_envelope():
    [event] = decoded_kurrent([recorded("complaint-K1", 0, 101)])
    assert (event.stream, event.version, event.position, event.type) == ("complaint-K1", 0, 101, "Noted")
    assert (event.data, event.metadata, event.recorded_at) == ({"n": 0}, {"actor": "tester"}, RECORDED_AT)
    assert event.hash == event.expected_hash()  # the envelope carried the chain across


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("data", b"{bukan json"),  # another client's bytes
        ("metadata", b"{}"),  # no LAPOR envelope: a KeyError before session 30
        ("metadata", orjson.dumps({"schema_version": "satu", "metadata": "{}", "recorded_at": "2026-12-07",
                                   "prev_hash": GENESIS_HASH, "hash": GENESIS_HASH})),
    ],
)
def test_a_kurrentdb_event_that_does_not_decode_is_named_as_the_sql_adapters_name_it(field: str, value: bytes):
    """Until session 30 such an event failed every read of its batch with orjson's error or a KeyError, and a
    subscription tried again from its checkpoint for ever, where SQLite and PostgreSQL name it (`UnreadableEvent`)
    and the runner parks it and goes on."""
    events = [recorded("complaint-K1", 0, 101), recorded("complaint-K2", 0, 102, **{field: value}),
              recorded("complaint-K1", 1, 103)]
    with pytest.raises(UnreadableEvent) as raised:
        decoded_kurrent(events)
    unreadable = raised.value
    assert (unreadable.stream, unreadable.version, unreadable.position, unreadable.type) == (
        "complaint-K2", 0, 102, "Noted")
    assert [(event.stream, event.version) for event in unreadable.readable] == [("complaint-K1", 0)]
    assert unreadable.reason.startswith(f"cannot be read: its {field} does not decode (")



def test_an_append_continues_the_hash_chain_from_the_last_event_of_lapor():
    last = recorded("complaint-K1", 0, 101)
    [event] = decoded_kurrent([last])
    assert chain_end(last) == event.hash


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("data", b"{bukan json"),  # orjson's JSONDecodeError before session 30
        ("metadata", b"{}"),  # a KeyError before session 30
        ("metadata", b"[1, 2]"),  # JSON, but no envelope at all
        ("metadata", orjson.dumps({"schema_version": "1", "metadata": "{}", "recorded_at": "2026-12-07T00:00:00+00:00",
                                   "prev_hash": GENESIS_HASH, "hash": 7})),  # a hash that is no text
    ],
)
def test_an_append_to_a_stream_whose_last_event_is_another_writer_s_is_refused_naming_it(field: str, value: bytes):
    """KurrentDB lets any client append to a LAPOR stream. The next LAPOR event links to the last one's hash, which
    such an event does not carry: the append is refused with an `UnreadableEvent` (a ValueError, never tried again as
    a `StoreError` is) that names the event and says the chain cannot be continued, where it failed with orjson's
    error or a KeyError, saying nothing of why."""
    with pytest.raises(UnreadableEvent) as raised:
        chain_end(recorded("complaint-K2", 3, 104, **{field: value}))
    unreadable = raised.value
    assert (unreadable.stream, unreadable.version, unreadable.position, unreadable.type) == (
        "complaint-K2", 3, 104, "Noted")
    assert unreadable.readable == []
    assert "hash chain cannot be continued" in str(unreadable)
    assert unreadable.reason.startswith(f"cannot be read: its {field} does not decode (")
    assert unreadable.reason.endswith("hash chain cannot be continued and nothing can be appended to it")
