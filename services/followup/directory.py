"""The agency directory as the followup service needs it: whether an agency or unit exists and is active.

Routing keeps the directory in the log, one stream per agency (`directory-{agency_id}`: AgencyRegistered, then
AgencyUpdated with the whole record). The followup service reads the one stream it asks about (`lapor.directory`)
instead of keeping a projection: a few events, always current, so an assignment made the moment routing registers a
unit is not refused by a projection that has not caught up yet.
"""

from __future__ import annotations

from lapor.directory import AgencyRecord, directory_is_empty, read_record
from lapor.store import EventStore


class Directory:
    def __init__(self, store: EventStore) -> None:
        self._store = store

    def record(self, agency_id: str) -> AgencyRecord | None:
        """The agency's current record, None when it was never registered."""
        return read_record(self._store, agency_id)

    def is_active(self, agency_id: str) -> bool:
        record = self.record(agency_id)
        return record is not None and record.active

    def knows(self, agency_id: str) -> bool:
        """True for a registered agency, and for any id while there is no directory at all (routing has not
        seeded it: the followup service alone on a fresh store)."""
        return self.record(agency_id) is not None or directory_is_empty(self._store)
