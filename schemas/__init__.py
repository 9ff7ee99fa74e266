"""Event contracts of LAPOR: one pydantic model per event type (`schemas.events`), the envelope
(`schemas.envelope`), upcasters for older schema versions (`schemas.upcasters`), and the exported JSON Schema
of each in `schemas/json/` (`python -m schemas.export`, or `make schemas`)."""

from __future__ import annotations

from schemas.envelope import EventEnvelope, EventMetadata
from schemas.events import (
    COMPLAINT_EVENTS,
    DIRECTORY_EVENTS,
    EVENT_TYPES,
    KEYWORD_EVENTS,
    EventData,
    UnknownEventType,
    parse_event_data,
)
from schemas.upcasters import UpcasterRegistry, UpcastError, upcast

__all__ = [
    "COMPLAINT_EVENTS",
    "DIRECTORY_EVENTS",
    "EVENT_TYPES",
    "KEYWORD_EVENTS",
    "EventData",
    "EventEnvelope",
    "EventMetadata",
    "UnknownEventType",
    "UpcastError",
    "UpcasterRegistry",
    "parse_event_data",
    "upcast",
]
