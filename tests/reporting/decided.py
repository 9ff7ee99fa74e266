"""Complaint histories drawn through the real decisions, for the figures' oracle (test_figures_oracle.py).

Unlike `lifecycles.random_history`, which writes the events itself, every event here comes from the deciding
services' own pure decisions (`services.intake.decide`, `services.routing.decide`, `services.followup.decide`) on
the report's folded state at the simulated moment, so each history is one the system can produce. Each report is a
little race between its actors: the routing officer, the agency holding it (at its own pace, sometimes silent or
stuck), the reporter, and the schedulers (routing's deadlines, followup's closing in silence and its reaction to
feedback), which look a while after a deadline passes (minutes, sometimes days: the agency may answer late before
they look). The earliest of their next moves happens; then each draws again. That gives returns (to the bounce
limit), red marks up the levels (unit, agency, province, national), late answers before and after a red mark,
reassignments, reopenings, pends answered or archived, duplicates, Ombudsman offers, consents and takeovers.

Moments are whole seconds, so hours between them are exact.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from lapor.complaint import ComplaintState, PendingEvent, Status, evolve, initial_state
from lapor.policy import Sp4nPolicy
from lapor.principal import OMBUDSMAN_AGENCY
from schemas.events import Channel, ComplaintKind, EventData
from services.followup import decide as followup
from services.intake import decide as intake
from services.routing import decide as routing
from tests.reporting.scenario import OFFICER, SYSTEM, Report, reporter, staff

# (region code, weight): cities, a kecamatan inside one (finer than a city), a regency, province-level reports,
# and reports without a region.
REGIONS: tuple[tuple[str | None, int], ...] = (
    ("53.71", 6), ("53.71.01", 2), ("35.73", 5), ("35.07", 3), ("35", 2), ("82.71", 3), ("53.02", 1), (None, 1),
)
# The agency a report of a region goes to first; a report without a region goes to a ministry.
MINISTRY = "kementerian-kesehatan"
OTHERS = ("pemda-53.71", "pemda-35.73", "pemda-35", "pemda-82.71", MINISTRY, "pemda-53")
UNITS = ("dinkes", "disdik", "dpupr")
CATEGORIES = ("infrastruktur", "kesehatan", "pendidikan", "kependudukan", None)
CHANNELS = tuple(Channel)
KINDS = (ComplaintKind.pengaduan, ComplaintKind.pengaduan, ComplaintKind.aspirasi, ComplaintKind.permintaan_informasi)
# An agency's regional coordinator: the province of a regency/city government (routing's `coordinator`).
COORDINATORS = {"pemda-53.71": "pemda-53", "pemda-35.73": "pemda-35", "pemda-35.07": "pemda-35",
                "pemda-82.71": "pemda-82", "pemda-53.02": "pemda-53"}

TOKEN_HASH = "c" * 64


class _Everyone:
    """followup's directory: every unit asked for is active."""

    def is_active(self, agency_id: str) -> bool:
        return True


Move = Callable[[datetime], tuple[Sequence[EventData], dict[str, str]]]


@dataclass
class _Report:
    rng: random.Random
    policy: Sp4nPolicy
    state: ComplaintState
    steps: list[tuple[datetime, EventData, dict[str, str]]] = field(default_factory=list)
    settled: set[tuple[str, datetime | None]] = field(default_factory=set)
    lags: dict[tuple[str, datetime | None], timedelta] = field(default_factory=dict)
    began: dict[tuple[str, datetime | None], datetime] = field(default_factory=dict)  # when a "due at once" ran
    outages: Sequence[tuple[datetime, datetime]] = ()  # when routing (its scheduler) was down
    pace: float | None = 1.0  # the present holder's; None: silent until red-marked
    stuck: bool = False  # the present holder answers but takes months to resolve
    posted: int = 0  # public follow-ups in this round (since reaching the holder, or the reopening)
    assigned: int = 0  # assignments in this holding

    @property
    def now(self) -> datetime:
        assert self.state.last_event_at is not None
        return self.state.last_event_at

    def apply(self, at: datetime, events: Sequence[EventData], metadata: dict[str, str]) -> None:
        before = self.state
        for event in events:
            self.state = evolve(self.state, PendingEvent.from_model(event, self.state.version + 1, at))
            self.steps.append((at, event, metadata))
        after = self.state
        if (after.agency_id, after.disposed_at) != (before.agency_id, before.disposed_at) and after.agency_id:
            self._new_holder()
        elif after.status is Status.in_progress and before.status is Status.resolved:
            self.posted = 0  # reopened: a new round
        if before.level != after.level and self.pace is None:
            self.pace = 1.5  # red-marked: the silent holder wakes up

    def _new_holder(self) -> None:
        draw = self.rng.random()
        self.pace = 0.4 if draw < 0.4 else 1.0 if draw < 0.72 else 3.0 if draw < 0.88 else None
        self.stuck = self.rng.random() < 0.12
        self.posted = self.assigned = 0

    def later(self, low_hours: float, high_hours: float, pace: float = 1.0) -> datetime:
        return self.now + timedelta(seconds=int(self.rng.uniform(low_hours, high_hours) * 3600 * pace) + 1)

    def lag(self, key: tuple[str, datetime | None]) -> timedelta:
        """How long after a deadline its scheduler looks: seconds to hours."""
        if key not in self.lags:
            self.lags[key] = timedelta(seconds=int(self.rng.uniform(0.001, 3) * 3600) + 1)
        return self.lags[key]

    def routing_up(self, moment: datetime) -> datetime:
        """`moment`, or when routing came back if it was down then (to the whole second)."""
        for down, up in self.outages:
            if down <= moment < up:
                return up
        return moment.replace(microsecond=0) + timedelta(seconds=1)


def _scheduled(report: _Report) -> list[tuple[datetime, float, Move]]:
    """Routing's deadline scheduler and followup's closing in silence and reaction to feedback."""
    state, policy = report.state, report.policy
    moves: list[tuple[datetime, float, Move]] = []
    for kind, due in routing.running_deadlines(state).items():
        key = (kind.value, due)
        if key in report.settled:
            continue
        # A deadline that only now runs again (an Ombudsman offer due while the report was resolved, and reopened
        # since) is seen at the scheduler's next look, never in the past.
        since = due or report.began.setdefault(key, report.now)  # a consent is due when given
        seen = report.routing_up(max(since, report.now) + report.lag(key))

        def deadline(at: datetime, kind: routing.DeadlineKind = kind, due: datetime | None = due,
                     key: tuple[str, datetime | None] = key) -> tuple[Sequence[EventData], dict[str, str]]:
            report.settled.add(key)
            coordinator = COORDINATORS.get(report.state.agency_id or "")
            decided = routing.decide_deadline(report.state, kind, due or at, at, policy, coordinator_id=coordinator)
            return decided, SYSTEM

        # Back after an outage, routing handles what fell due meanwhile oldest first.
        moves.append((seen, since.timestamp(), deadline))
    if state.status is Status.resolved and state.feedback is None and state.feedback_due is not None:
        key = ("closing", state.feedback_due)
        moves.append((state.feedback_due.replace(microsecond=0) + report.lag(key), 0.0,
                      lambda at: (followup.decide_close_in_silence(report.state, at), SYSTEM)))
    if state.status is Status.resolved and state.feedback is not None:
        feedback = state.feedback
        moves.append((report.later(0.001, 0.05), 0.0, lambda at: (followup.decide_on_feedback(
            report.state, satisfied=feedback.satisfied, comment=None, now=at, policy=policy), SYSTEM)))
    return moves


def _routing_officer(report: _Report, originals: Sequence[ComplaintState]) -> list[tuple[datetime, Move]]:
    state, rng, policy = report.state, report.rng, report.policy
    if state.status is Status.submitted:
        draw = rng.random()
        at = report.later(1, 110)
        if draw < 0.1:
            command = routing.PendCommand(information_requested="Mohon lengkapi lokasinya.")
            return [(at, lambda at: (routing.decide_pend(report.state, command, at, policy), OFFICER))]
        if draw < 0.15:
            archive = routing.ArchiveCommand(reason="Bukan laporan pelayanan publik.")
            return [(at, lambda at: (routing.decide_archive(report.state, archive, at), OFFICER))]
        if draw < 0.2 and originals:
            original = rng.choice(originals)
            duplicate = routing.MarkDuplicateCommand(duplicate_of=original.tracking_id)
            return [(at, lambda at: (routing.decide_mark_duplicate(report.state, duplicate, original, at), OFFICER))]
        verify = routing.VerifyCommand(category=None if state.category else rng.choice(CATEGORIES[:-1]))
        return [(at, lambda at: (routing.decide_verify(report.state, verify, at), OFFICER))]
    if state.status is Status.verified and rng.random() < 0.04 and originals:
        original = rng.choice(originals)
        duplicate = routing.MarkDuplicateCommand(duplicate_of=original.tracking_id)
        return [(report.later(1, 30), lambda at: (routing.decide_mark_duplicate(report.state, duplicate, original, at),
                                                  OFFICER))]
    if state.status in (Status.verified, Status.returned):
        first = routing.region_agency_id(state.region_code) if state.region_code else MINISTRY
        if state.status is Status.returned:
            suggested = state.suggested_agency_id
            choices = [a for a in OTHERS if a != state.returned_from]
            agency_id = suggested if suggested and rng.random() < 0.5 else rng.choice(choices)
        else:
            draw = rng.random()
            # Now and then the admin disposes a report to the Ombudsman itself (maladministration by an office).
            agency_id = first if draw < 0.83 else OMBUDSMAN_AGENCY if draw < 0.86 else rng.choice(OTHERS)
        return [(report.later(1, 48), lambda at: (routing.decide_dispose(report.state, agency_id, at, policy),
                                                  OFFICER))]
    return []


def _holder(report: _Report) -> list[tuple[datetime, Move]]:
    """The agency holding the report (or the Ombudsman, having taken it over), at its pace."""
    state, rng, policy, pace = report.state, report.rng, report.policy, report.pace
    if pace is None or state.status not in (Status.disposed, Status.in_progress):
        return []
    holder = state.owner
    officer = staff(holder)
    may_return = holder != OMBUDSMAN_AGENCY and state.bounce_count < 4 and report.posted == 0
    bouncy = 0.3 if state.bounce_count else 0.1
    if state.status is Status.disposed:
        if may_return and rng.random() < bouncy:
            command = followup.Return(reason="Bukan wewenang kami.",
                                      suggested_agency_id=rng.choice([a for a in OTHERS if a != holder]))
            return [(report.later(2, 72, pace), lambda at: (followup.decide_return(
                report.state, command, at, _Everyone()), officer))]
        return [(report.later(1, 60, pace), lambda at: (followup.decide_accept(report.state, followup.Accept(), at),
                                                        officer))]
    draw = rng.random()
    if holder != OMBUDSMAN_AGENCY and report.assigned < 2 and (
        (state.unit_id is None and report.assigned == 0 and draw < 0.5) or (state.unit_id and draw < 0.06)
    ):
        unit = f"{holder}/{rng.choice([u for u in UNITS if f'{holder}/{u}' != state.unit_id])}"
        assign = followup.Assign(unit_id=unit)

        def assigned(at: datetime) -> tuple[Sequence[EventData], dict[str, str]]:
            report.assigned += 1
            return followup.decide_assign(report.state, assign, at, _Everyone()), officer

        return [(report.later(1, 30, pace), assigned)]
    if may_return and rng.random() < 0.04:
        command = followup.Return(reason="Kewenangan instansi lain.")
        return [(report.later(2, 72, pace), lambda at: (followup.decide_return(
            report.state, command, at, _Everyone()), officer))]
    if (report.posted == 0 and draw > 0.08) or (report.posted < 4 and draw < 0.75) or (report.stuck and draw < 0.97):
        public = rng.random() < 0.85
        post = followup.PostFollowUp(text="Sedang ditangani petugas.", public=public)
        number = state.follow_up_count

        def posted(at: datetime) -> tuple[Sequence[EventData], dict[str, str]]:
            report.posted += 1 if public else 0
            return followup.decide_follow_up(report.state, post, at, follow_up_id=f"fu-{number}"), officer

        return [(report.later(3, 24 * 6, pace * (4 if report.stuck else 1)), posted)]
    resolve = followup.Resolve(resolution="Sudah diperbaiki.")
    return [(report.later(12, 24 * 8, pace), lambda at: (followup.decide_resolve(report.state, resolve, at, policy),
                                                         officer))]


def _reporter_moves(report: _Report) -> list[tuple[datetime, Move]]:
    state, rng, policy = report.state, report.rng, report.policy
    me = reporter(state.tracking_id)
    if state.status is Status.pended and rng.random() < 0.55:
        at = report.later(4, 24 * 25)
        if state.archive_due is not None and at <= state.archive_due:
            return [(at, lambda at: ([intake.decide_information(report.state, "Di depan SD Negeri 3.", (), at,
                                                                policy)], me))]
    if state.status is Status.resolved and state.feedback is None and rng.random() < 0.6:
        at = report.later(2, 24 * 12)
        satisfied = rng.random() < 0.7
        rating = rng.randint(3, 5) if satisfied else rng.randint(1, 2)
        if state.feedback_due is not None and at <= state.feedback_due:
            return [(at, lambda at: ([intake.decide_feedback(report.state, satisfied, rating, None, at)], me))]
    unresolved = state.is_open and state.status is not Status.resolved
    if state.ombudsman_offered and not state.ombudsman_consent and unresolved:
        # Readier while the agency keeps it waiting past its deadline.
        waiting = state.follow_up_due is not None and state.follow_up_due < report.now + timedelta(days=1)
        if rng.random() < (0.8 if waiting else 0.3):
            at = report.later(0.5, 24) if waiting else report.later(1, 24 * 6)
            return [(at, lambda at: ([intake.decide_ombudsman_consent(report.state, at)], me))]
    return []


def draw_history(rng: random.Random, tracking_id: str, submitted_at: datetime, ends: datetime, policy: Sp4nPolicy,
                 originals: Sequence[ComplaintState],
                 outages: Sequence[tuple[datetime, datetime]] = ()) -> tuple[Report, ComplaintState]:
    """One report's history up to `ends`, every event decided by its service on the state it then had; its final
    state too. `originals`: earlier reports never marked duplicate, which this one may duplicate; `outages`: when
    routing was down."""
    regions, weights = zip(*REGIONS, strict=True)
    command = intake.SubmitComplaint(
        tracking_id=tracking_id,
        kind=rng.choice(KINDS),
        title=f"Laporan warga {tracking_id}",
        body="Mohon ditindaklanjuti, sudah berminggu-minggu tanpa perbaikan.",
        region_code=rng.choices(regions, weights)[0],
        channel=rng.choice(CHANNELS),
        reporter_token_hash=TOKEN_HASH,
        category=rng.choice(CATEGORIES),
        channel_ref=f"ref-{tracking_id}",
        anonymous=rng.random() < 0.15,
        confidential=rng.random() < 0.12,
        reporter_ref=f"pii_{tracking_id.replace('-', '_')}_ref",
    )
    report = _Report(rng, policy, initial_state(tracking_id), outages=outages)
    report.apply(submitted_at, [intake.decide_submission(None, command, submitted_at, policy)], reporter(tracking_id))
    while report.state.is_open:
        acting = [*_routing_officer(report, originals), *_holder(report), *_reporter_moves(report)]
        moves = [*_scheduled(report), *((at, 0.0, move) for at, move in acting)]
        if not moves:
            break
        at, _, move = min(moves, key=lambda triple: triple[:2])
        if at > ends:
            break
        events, metadata = move(at)
        report.apply(at, events, metadata)
    played = Report(tracking_id)
    played.steps.extend(report.steps)
    return played, report.state


def draw_histories(seed: int, count: int, start: datetime, days: float, ends: datetime,
                   policy: Sp4nPolicy) -> list[Report]:
    """`count` reports submitted in order over `days` from `start` (whole seconds), each drawn up to `ends`, with
    routing down now and then (for six hours to three days, every week or two)."""
    rng = random.Random(seed)
    outages: list[tuple[datetime, datetime]] = []
    down = start
    while down < ends:
        down += timedelta(seconds=int(rng.uniform(5, 15) * 86400))
        outages.append((down, down + timedelta(seconds=int(rng.uniform(6, 72) * 3600))))
    moments = sorted(int(rng.uniform(0, days * 86400)) for _ in range(count))
    reports: list[Report] = []
    originals: list[ComplaintState] = []
    for number, offset in enumerate(moments):
        played, final = draw_history(rng, f"LAP-OR-{number:04d}", start + timedelta(seconds=offset), ends, policy,
                                     originals[-20:], outages)
        reports.append(played)
        if final.status is not Status.duplicate:
            originals.append(final)
    return reports
