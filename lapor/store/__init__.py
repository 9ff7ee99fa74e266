"""The event store port, with the semantics of EventStoreDB/KurrentDB.

```python
from lapor.store import open_store, NewEvent, NO_STREAM, ANY, EXISTS, WrongExpectedVersion
store = open_store("sqlite:///var/events.db")        # or "postgresql://..."
store.append("complaint-ABC", [NewEvent(type="ComplaintSubmitted", data={...})], expected_version=NO_STREAM)
store.read_stream("complaint-ABC")                   # versions 0..n
store.read_all(from_position=0, category="complaint", limit=1000)
```

Streams are named ``{category}-{id}``; a stream's version is 0-based and gapless. Positions are global and
increase in commit order (a reader that has seen position p never later meets a smaller one), but they are
opaque: not a count of events.
"""

from __future__ import annotations

from lapor.store.model import (
    ANY,
    EXISTS,
    GENESIS_HASH,
    NO_STREAM,
    AppendNotRecorded,
    AppendResult,
    DuplicateEventId,
    EventStore,
    ExpectedVersion,
    LockWaitExpired,
    NewEvent,
    RecordedEvent,
    StoreError,
    StreamShare,
    UnreadableEvent,
    WrongExpectedVersion,
    category_of,
    error_kind,
    read_readable,
)
from lapor.store.open import open_store

__all__ = [
    "ANY",
    "EXISTS",
    "GENESIS_HASH",
    "NO_STREAM",
    "AppendNotRecorded",
    "AppendResult",
    "DuplicateEventId",
    "EventStore",
    "ExpectedVersion",
    "LockWaitExpired",
    "NewEvent",
    "RecordedEvent",
    "StoreError",
    "StreamShare",
    "UnreadableEvent",
    "WrongExpectedVersion",
    "category_of",
    "error_kind",
    "open_store",
    "read_readable",
]
