"""Demo data (`lapor up --demo`): after intake has submitted and routing disposed, the agencies act on a good part of
their queues — most accept, some return a report as "bukan wewenang", many assign it to a unit, post a follow-up,
and some resolve it.

Which report gets what is a hash of its tracking id, every decision goes through the service's own decisions and
the fold, and the events of one report are appended together with its expected version and deterministic ids:
running the seeding again finds the reports moved on and adds nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

from lapor.auth import within
from lapor.commands import caused_event_id, command_metadata
from lapor.complaint import ComplaintState, PendingEvent, Status, evolve, replay
from lapor.context import ServiceContext
from lapor.directory import DIRECTORY_CATEGORY, carried_record
from lapor.principal import Principal, Role
from lapor.store import NewEvent, WrongExpectedVersion
from schemas.events import EventData
from services.followup.decide import (
    Accept,
    Assign,
    PostFollowUp,
    Resolve,
    Return,
    decide_accept,
    decide_assign,
    decide_follow_up,
    decide_resolve,
    decide_return,
)

log = logging.getLogger("lapor.followup.demo")

FOLLOW_UPS = (
    "Laporan sudah kami terima dan diteruskan ke petugas lapangan untuk pengecekan lokasi.",
    "Petugas telah meninjau lokasi; penanganan dijadwalkan dalam minggu ini.",
    "Kami sudah berkoordinasi dengan unit terkait; perkembangan akan kami sampaikan kembali.",
)
RESOLUTIONS = (
    "Perbaikan telah selesai dikerjakan. Terima kasih atas laporan Anda.",
    "Petugas telah menangani permasalahan di lokasi dan layanan sudah berjalan normal kembali.",
)
RETURN_REASON = "Permasalahan ini berada di luar kewenangan instansi kami; mohon didisposisikan ulang."


class _KnownUnits:
    """The directory as the demo needs it: which active units sit directly under an agency."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._units: dict[str, list[str]] = {}
        self._active: dict[str, bool] = {}
        position = 0
        while batch := ctx.store.read_all(position, DIRECTORY_CATEGORY, 5000):
            for event in batch:
                if (record := carried_record(event)) is not None:
                    data = record.data
                    self._active[data["agency_id"]] = record.active
                    if data.get("parent_id"):
                        self._units.setdefault(data["parent_id"], [])
                        if data["agency_id"] not in self._units[data["parent_id"]]:
                            self._units[data["parent_id"]].append(data["agency_id"])
            position = batch[-1].position + 1

    def is_active(self, agency_id: str) -> bool:
        return self._active.get(agency_id, False)

    def units_of(self, agency_id: str) -> list[str]:
        """Active units inside `agency_id` (`<agency_id>/<unit>`; a regency's parent is its province, but it is
        no unit of it)."""
        return sorted(
            unit for unit in self._units.get(agency_id, []) if self.is_active(unit) and within(unit, agency_id)
        )


def _share(tracking_id: str) -> int:
    """0..99, fixed per report."""
    return int.from_bytes(hashlib.sha256(tracking_id.encode()).digest()[:4], "big") % 100


def seed_demo(ctx: ServiceContext) -> None:
    directory = _KnownUnits(ctx)
    states: dict[str, ComplaintState] = {}
    position = 0
    while batch := ctx.store.read_all(position, "complaint", 5000):
        states.update(replay(batch, states))
        position = batch[-1].position + 1
    acted = 0
    for tracking_id in sorted(states):
        state = states[tracking_id]
        if state.status is not Status.disposed:
            continue
        events = _work(state, directory, ctx)
        if not events:
            continue
        stream = f"complaint-{tracking_id}"
        try:
            ctx.store.append(stream, events, expected_version=state.version)
        except WrongExpectedVersion:
            continue  # someone acted on it meanwhile: theirs stands
        acted += 1
    log.info("demo: agencies acted on %d reports", acted)


def _work(state: ComplaintState, directory: _KnownUnits, ctx: ServiceContext) -> list[NewEvent]:
    """What the agency does with one disposed report, as events ready to append."""
    share = _share(state.tracking_id)
    agency_id = state.owner
    officer = Principal(subject=f"demo-liaison@{agency_id}", role=Role.liaison, agency_id=agency_id)
    now = ctx.clock.now()
    decided: list[EventData] = []
    current = state

    def take(events: Sequence[EventData]) -> None:
        nonlocal current
        for event in events:
            current = evolve(current, PendingEvent.from_model(event, current.version + 1, now))
            decided.append(event)

    if share < 6 and state.bounce_count == 0:
        take(decide_return(current, Return(reason=RETURN_REASON), now, directory))
    elif share < 80:
        take(decide_accept(current, Accept(), now))
        units = directory.units_of(agency_id)
        if units and share % 3 != 0:
            preferred = ctx.settings.demo_unit if ctx.settings.demo_unit in units else units[share % len(units)]
            take(decide_assign(current, Assign(unit_id=preferred), now, directory))
        if share < 60:
            text = FOLLOW_UPS[share % len(FOLLOW_UPS)]
            take(decide_follow_up(current, PostFollowUp(text=text), now, follow_up_id=f"fu-demo-{state.tracking_id}"))
        if share < 35:
            take(decide_resolve(current, Resolve(resolution=RESOLUTIONS[share % len(RESOLUTIONS)]), now, ctx.policy))
    metadata = command_metadata(officer, None)
    stream = f"complaint-{state.tracking_id}"
    return [
        event.to_new_event(
            metadata=metadata, event_id=caused_event_id(f"demo:{stream}:{state.version + 1 + offset}")
        )
        for offset, event in enumerate(decided)
    ]
