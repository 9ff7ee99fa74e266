"""The envelope every stored event travels in: the shape of `lapor.store.RecordedEvent` as a contract for
auditors, the Kafka relay and the audit API."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from lapor.store.model import STREAM_MAX_LENGTH, STREAM_PATTERN
from schemas.events import EventData, Sha256Hex, parse_event_data
from schemas.upcasters import upcast

if TYPE_CHECKING:
    from lapor.store.model import RecordedEvent


class EventMetadata(BaseModel):
    """Who decided, in answer to what. Services may add their own keys (e.g. `agency`)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    actor: str | None = None  # principal subject, or "system" for timers
    role: str | None = None
    correlation_id: str | None = None  # the request (or timer run) that caused it
    causation_id: str | None = None  # the event or command it answers


class EventEnvelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: uuid.UUID
    stream: Annotated[str, StringConstraints(pattern=STREAM_PATTERN, max_length=STREAM_MAX_LENGTH)]
    version: int = Field(ge=0)  # 0-based, gapless per stream
    position: int = Field(ge=1)  # global commit order; opaque, not a count
    type: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    schema_version: int = Field(ge=1)
    data: dict[str, Any]
    metadata: EventMetadata
    recorded_at: AwareDatetime
    prev_hash: Sha256Hex
    hash: Sha256Hex  # SHA-256 over prev_hash and the canonical JSON of the event

    @classmethod
    def from_recorded(cls, event: RecordedEvent) -> EventEnvelope:
        return cls(
            event_id=event.event_id,
            stream=event.stream,
            version=event.version,
            position=event.position,
            type=event.type,
            schema_version=event.schema_version,
            data=event.data,
            metadata=EventMetadata.model_validate(event.metadata),
            recorded_at=event.recorded_at,
            prev_hash=event.prev_hash,
            hash=event.hash,
        )

    def event_data(self) -> EventData:
        """The data validated as the current version of its type (upcast first when it is older)."""
        data, _ = upcast(self.type, self.schema_version, self.data)
        return parse_event_data(self.type, data)
