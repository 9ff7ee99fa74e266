"""The agency directory as the log holds it: the one reader of its streams (session 28).

Routing keeps the directory (`services.routing.directory`): one stream per agency and per unit,
`directory-{agency_id}`, opened by AgencyRegistered and changed by AgencyUpdated, each carrying the whole record
(schemas.events), in category `directory`. Whoever asks about one agency reads its stream here instead of a
projection: a few events, always current, so an agency is known the moment routing registers it, even while no
server runs (`lapor token create`). Routing (`read_agency`, `fold_agency`), followup (`Directory`) and the CLI had
each read the streams their own way until session 28.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lapor.store import EventStore

DIRECTORY_CATEGORY = "directory"
AGENCY_EVENTS = frozenset({"AgencyRegistered", "AgencyUpdated"})  # each carries the agency's whole record


def agency_stream(agency_id: str) -> str:
    return f"{DIRECTORY_CATEGORY}-{agency_id}"


@dataclass(frozen=True)
class AgencyRecord:
    """An agency's (or unit's) record as its stream says now: the last record wins."""

    data: Mapping[str, Any]  # the event's data: schemas.events.AgencyRegistered / AgencyUpdated
    version: int  # the stream version of the event that carried it

    @property
    def active(self) -> bool:
        """AgencyUpdated may switch an agency off; AgencyRegistered has no flag, and registers it active."""
        return bool(self.data.get("active", True))


def carried_record(event: Any) -> AgencyRecord | None:
    """The record an AgencyRegistered or AgencyUpdated event carries; None for any other event of the category. What
    a projection of the directory, which sees one event at a time, applies."""
    return AgencyRecord(event.data, event.version) if event.type in AGENCY_EVENTS else None


def fold_record(events: Iterable[Any]) -> AgencyRecord | None:
    """An agency stream's events -> its current record (None for a stream without one)."""
    record = None
    for event in events:
        if (carried := carried_record(event)) is not None:
            record = carried
    return record


def read_record(store: EventStore, agency_id: str) -> AgencyRecord | None:
    """The agency's current record; None when it was never registered."""
    return fold_record(store.read_stream(agency_stream(agency_id)))


def directory_is_empty(store: EventStore) -> bool:
    """Whether routing has registered nothing yet (it seeds the directory at its first start)."""
    return not store.read_all(0, DIRECTORY_CATEGORY, 1)
