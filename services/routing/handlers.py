"""The deadline scheduler: a background loop over the projection of open deadlines (`routing_deadlines`).

Each tick takes the deadlines due by the clock's now, oldest first, and for each runs `decide_deadline` on the
report's current state through the command runner (which reads and folds the stream afresh, so a projection
row that lags behind the log can never cause a wrong event). Exactly once, whatever happens:

- the events get deterministic ids, `caused_event_id(f"{stream}:{cause_version}:{kind}")`, where
  `cause_version` is the version of the event that started the deadline: deciding the same deadline again
  (after a crash, a restart, a rebuilt read model, or in a second process) re-appends recorded ids, which the
  store answers with the original append;
- the decision itself refuses a deadline that is no longer running or has moved;
- a deadline once handled is marked in `routing_deadline_settled` (the scheduler's own table, not a
  projection: `lapor rebuild` does not compare it), so it is not looked at again.

A consenting reporter's hand-over waits while the directory has no active Ombudsman office (`ombudsman-ri`
retired, or never registered): it stays open, a warning is logged each tick, and it is handed over on the first
tick after the office is active again (session 29).

The clock is the context's: in training mode a ManualClock, whose moves wake the loop at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from lapor.clock import ManualClock
from lapor.commands import caused_event_id, run_command
from lapor.complaint import ComplaintState
from lapor.context import BackgroundLoop, ServiceContext
from lapor.correlation import correlation_scope
from lapor.observability import TickRecord
from lapor.principal import OMBUDSMAN_AGENCY, SYSTEM
from lapor.store import NewEvent
from schemas.events import AgencyKind
from services.routing.decide import DeadlineKind, decide_deadline
from services.routing.directory import active_agency, read_agency
from services.routing.projections import OpenDeadline, moment

log = logging.getLogger("lapor.routing.scheduler")

INTERVAL = 30.0  # seconds between ticks on the system clock
TRAINING_INTERVAL = 5.0  # a training clock also wakes the loop whenever it moves
STOP_POLL = 0.05  # how soon a waiting loop notices that it must stop (a shutdown waits for it)
BATCH = 200
WORKERS = 8  # concurrent decisions per tick (two deadlines of one report just retry on the version conflict)

SETTLED_TABLE = """
CREATE TABLE IF NOT EXISTS routing_deadline_settled (
    tracking_id   TEXT NOT NULL,
    kind          TEXT NOT NULL,
    cause_version BIGINT NOT NULL,
    settled_at    TEXT NOT NULL,
    PRIMARY KEY (tracking_id, kind)
)
"""

_DUE = (
    "SELECT d.tracking_id, d.kind, d.due, d.cause_version, d.cause_event_id, d.correlation_id "
    "FROM routing_deadlines d LEFT JOIN routing_deadline_settled s "
    "ON s.tracking_id = d.tracking_id AND s.kind = d.kind "
    "WHERE d.due <= ? AND (s.cause_version IS NULL OR s.cause_version <> d.cause_version) "
)
_ORDER = "ORDER BY d.due, d.tracking_id, d.kind LIMIT ?"


class DeadlineScheduler:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self._wake = threading.Event()
        self.ticks = TickRecord()  # /metrics: how its ticks went
        self._tick_lock = threading.Lock()
        ctx.db.executescript(SETTLED_TABLE)
        self.training = isinstance(ctx.clock, ManualClock)
        if isinstance(ctx.clock, ManualClock):
            ctx.clock.on_move(lambda now: self._wake.set())

    def due(
        self, now: datetime, *, after: tuple[str, str, str] | None = None, limit: int = BATCH
    ) -> list[OpenDeadline]:
        """Deadlines due by `now` and not yet handled, oldest first (after the key `after`)."""
        with self.ctx.db.read() as tx:
            if after is None:
                rows = tx.fetchall(_DUE + _ORDER, (moment(now), limit))
            else:
                rows = tx.fetchall(_DUE + "AND (d.due, d.tracking_id, d.kind) > (?, ?, ?) " + _ORDER,
                                   (moment(now), *after, limit))
        return [
            OpenDeadline(row[0], DeadlineKind(row[1]), datetime.fromisoformat(row[2]), row[3], row[4], row[5])
            for row in rows
        ]

    def tick(self) -> int:
        """Handle every deadline due now; returns how many events were appended. One tick at a time; within it
        a batch is handled by a few threads, whose appends share the store's commits (group commit)."""
        with self._tick_lock, ThreadPoolExecutor(WORKERS, thread_name_prefix="routing-deadline") as pool:
            now = self.ctx.clock.now()
            appended = 0
            after = None
            held: list[str] = []
            while True:
                due = self.due(now, after=after)
                batch = self._not_held(due, held)
                outcomes = list(pool.map(self._handle_logged, batch))
                self.settle([deadline for deadline, new in zip(batch, outcomes, strict=True) if new is not None])
                appended += sum(new or 0 for new in outcomes)
                if len(due) < BATCH:
                    break
                after = due[-1].key
            if held:
                log.warning(
                    "Ombudsman hand-over of %d report(s) held (%s): %s is not an active agency of the directory; "
                    "they are handed over once it is", len(held), ", ".join(held[:10]), OMBUDSMAN_AGENCY,
                )
            return appended

    def _not_held(self, due: list[OpenDeadline], held: list[str]) -> list[OpenDeadline]:
        """`due` without the Ombudsman hand-overs while the directory has no active Ombudsman office (retired, or not
        registered): handed over then, the report went to an office that takes no reports. They stay open, not
        settled, and are added to `held`."""
        handovers = [deadline for deadline in due if deadline.kind is DeadlineKind.ombudsman]
        if not handovers or active_agency(self.ctx.store, OMBUDSMAN_AGENCY) is not None:
            return due
        held += [deadline.tracking_id for deadline in handovers]
        return [deadline for deadline in due if deadline.kind is not DeadlineKind.ombudsman]

    def _handle_logged(self, deadline: OpenDeadline) -> int | None:
        """`handle` (None: not due yet by the decision's clock), or None after a failure, logged: one bad report must
        not hold up every other deadline. A deadline answered None stays open."""
        try:
            return self.handle(deadline)
        except Exception:
            log.exception("deadline %s of %s failed; tried again next tick", deadline.kind, deadline.tracking_id)
            return None

    def settle(self, deadlines: Sequence[OpenDeadline]) -> None:
        """Mark deadlines handled, in one transaction. A crash before this only makes the next tick decide them
        again, which appends nothing new."""
        if not deadlines:
            return
        settled_at = moment(self.ctx.clock.now())
        with self.ctx.db.transaction() as tx:
            tx.executemany(
                "INSERT INTO routing_deadline_settled (tracking_id, kind, cause_version, settled_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (tracking_id, kind) DO UPDATE SET "
                "cause_version = excluded.cause_version, settled_at = excluded.settled_at",
                [(d.tracking_id, d.kind.value, d.cause_version, settled_at) for d in deadlines],
            )

    def handle(self, deadline: OpenDeadline) -> int | None:
        """Decide and append what the passing of `deadline` calls for. Returns how many events were new (a
        reaction decided before is found recorded and not counted), or None when the clock, read again for the
        decision, has not reached the deadline: the tick found it due, and the clock stepped back since (a system
        clock set back by NTP). It stays open for a later tick; settled, it was never decided (session 32: a
        verification escalation, a red mark or an automatic archive was lost that way)."""
        stream = f"complaint-{deadline.tracking_id}"
        cause = f"{stream}:{deadline.cause_version}:{deadline.kind.value}"
        read_version = -1
        early = False

        def decide(state: ComplaintState, now: datetime) -> list[NewEvent]:
            nonlocal read_version, early
            read_version = state.version
            early = now < deadline.due
            if early:
                return []
            # A hand-over red-marks a passed follow-up deadline first, one level up as the follow-up's own would.
            marks = deadline.kind in (DeadlineKind.follow_up, DeadlineKind.ombudsman)
            coordinator = self.coordinator(state.agency_id) if marks else None
            events = decide_deadline(state, deadline.kind, deadline.due, now, self.ctx.policy,
                                     coordinator_id=coordinator)
            return [
                event.to_new_event(event_id=caused_event_id(cause if n == 0 else f"{cause}.{n}"))
                for n, event in enumerate(events)
            ]

        with correlation_scope(deadline.correlation_id):
            result = run_command(self.ctx, stream, decide, principal=SYSTEM, causation_id=deadline.cause_event_id)
        if early:
            return None
        # The store answers a re-append of recorded ids with the original append, which ends at or before
        # the version this decision read.
        if not result.events or result.version <= read_version:
            return 0
        log.info("%s: %s after the %s deadline", deadline.tracking_id,
                 ", ".join(event.type for event in result.events), deadline.kind.value)
        return len(result.events)

    def coordinator(self, agency_id: str | None) -> str | None:
        """The regional coordinator of an agency: the province a regency/city government belongs to."""
        if agency_id is None:
            return None
        agency = read_agency(self.ctx.store, agency_id)
        if agency is None or agency.parent_id is None:
            return None
        parent = read_agency(self.ctx.store, agency.parent_id)
        if parent is None or parent.kind is not AgencyKind.pemerintah_provinsi or not parent.active:
            return None
        return parent.agency_id

    def prune(self) -> None:
        """Forget handled deadlines that are no longer running (the report moved on or was closed)."""
        with self.ctx.db.transaction() as tx:
            tx.execute(
                "DELETE FROM routing_deadline_settled WHERE NOT EXISTS (SELECT 1 FROM routing_deadlines d "
                "WHERE d.tracking_id = routing_deadline_settled.tracking_id "
                "AND d.kind = routing_deadline_settled.kind)"
            )

    def run(self, stop: threading.Event) -> None:
        self.prune()
        interval = TRAINING_INTERVAL if self.training else INTERVAL
        while not stop.is_set():
            try:
                self.tick()
            except Exception as error:
                self.ticks.record(error)
                log.exception("deadline scheduler tick failed; trying again in %.0f s", interval)
            else:
                self.ticks.record(None)
            self._sleep(stop, interval)

    def _sleep(self, stop: threading.Event, interval: float) -> None:
        until = time.monotonic() + interval
        while not stop.is_set() and not self._wake.is_set():
            left = until - time.monotonic()
            if left <= 0:
                break
            self._wake.wait(min(left, STOP_POLL))
        self._wake.clear()

    def loop(self) -> BackgroundLoop:
        return BackgroundLoop("routing.deadlines", self.run, ticks=self.ticks)
