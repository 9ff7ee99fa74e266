"""Random but valid complaint histories, laid out in time and appended in time order.

`random_history` walks the SP4N process the way real reports go: most are verified, disposed, accepted,
followed up, resolved and closed; some are pended and archived, marked duplicate, returned as "bukan wewenang"
and disposed again, escalated for a missed follow-up, reopened after an unhappy answer, or still open when the
run ends. Deadlines come from the real policy and calendar, as the deciding services would put them in.
`append_in_time_order` writes many histories through the store with its clock set to each event's moment, so
`recorded_at` is the simulated time. The reporting tests and `benchmarks/bench_reporting.py` use both.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby

from lapor.clock import ManualClock
from lapor.policy import Sp4nPolicy
from lapor.store import EventStore, NewEvent
from schemas import events as ev

# (agency id, region code, name) of the regional governments the generated reports go to.
AGENCIES: tuple[tuple[str, str, str], ...] = (
    ("pemda-53.71", "53.71", "Pemerintah Kota Kupang"),
    ("pemda-82.71", "82.71", "Pemerintah Kota Ternate"),
    ("pemda-81.71", "81.71", "Pemerintah Kota Ambon"),
    ("pemda-35.73", "35.73", "Pemerintah Kota Malang"),
    ("pemda-36.71", "36.71", "Pemerintah Kota Tangerang"),
    ("pemda-35", "35", "Pemerintah Provinsi Jawa Timur"),
)
UNITS = ("dinkes", "disdik", "dpupr", "dishub", "dukcapil")
CATEGORIES = ("infrastruktur", "kesehatan", "pendidikan", "kependudukan", "perhubungan", "lingkungan")
CHANNELS = ("web", "web", "web", "mobile", "mobile", "sms", "social", "integration")
KINDS = ("pengaduan", "pengaduan", "pengaduan", "aspirasi", "permintaan_informasi")
TOKEN_HASH = "a" * 64

OFFICER = {"actor": "admin-nasional-1", "role": "admin_national", "agency": "kemenpanrb"}
SYSTEM = {"actor": "system", "role": "admin_national", "agency": "kemenpanrb"}


@dataclass(frozen=True)
class Step:
    at: datetime
    tracking_id: str
    event: NewEvent


def _agency_officer(agency_id: str) -> dict[str, str]:
    return {"actor": f"liaison-{agency_id}", "role": "liaison", "agency": agency_id}


def _reporter(tracking_id: str) -> dict[str, str]:
    return {"actor": f"reporter:{tracking_id}", "role": "reporter"}


def random_history(
    rng: random.Random, tracking_id: str, submitted_at: datetime, ends: datetime, policy: Sp4nPolicy
) -> list[Step]:
    """One complaint's events up to `ends` (the rest has not happened yet)."""
    steps: list[Step] = []
    now = submitted_at
    agency_id, region_code, _ = rng.choice(AGENCIES)

    def later(low_hours: float, high_hours: float) -> datetime:
        nonlocal now
        now = now + timedelta(hours=rng.uniform(low_hours, high_hours))
        return now

    def add(at: datetime, model: ev.EventData, metadata: dict[str, str]) -> bool:
        """False once the run is over: nothing after `ends` has happened."""
        if at > ends:
            return False
        steps.append(Step(at, tracking_id, model.to_new_event(metadata={**metadata, "correlation_id": tracking_id})))
        return True

    channel = rng.choice(CHANNELS)
    submitted = ev.ComplaintSubmitted(
        tracking_id=tracking_id,
        kind=rng.choice(KINDS),
        title=f"Laporan warga {tracking_id}",
        body="Mohon ditindaklanjuti, sudah berminggu-minggu tanpa perbaikan.",
        category=rng.choice((*CATEGORIES, None)),
        region_code=region_code,
        channel=channel,
        channel_ref=f"ref-{tracking_id}" if channel in ("sms", "integration") else None,
        anonymous=rng.random() < 0.2,
        confidential=rng.random() < 0.1,
        reporter_ref=f"pii_{tracking_id.replace('-', '_')}_ref",
        reporter_token_hash=TOKEN_HASH,
        verification_due=policy.verification_due(now),
    )
    if not add(now, submitted, _reporter(tracking_id)):
        return steps
    draw = rng.random()
    if draw < 0.12:
        at = later(4, 80)
        if not add(at, ev.ComplaintPended(information_requested="Mohon lengkapi lokasi.",
                                          archive_due=policy.archive_due(at)), OFFICER):
            return steps
        if rng.random() < 0.5:
            add(later(24, 24 * 50), ev.ComplaintArchived(reason="Tidak ada informasi tambahan.", automatic=True),
                SYSTEM)
            return steps
        at = later(4, 24 * 10)
        information = ev.InformationProvided(text="Di depan SD Negeri 3.", verification_due=policy.verification_due(at))
        if not add(at, information, _reporter(tracking_id)):
            return steps
    elif draw < 0.16:
        add(later(2, 100), ev.ComplaintArchived(reason="Bukan laporan pelayanan publik."), OFFICER)
        return steps
    elif draw < 0.19:
        add(later(2, 100), ev.DuplicateMarked(duplicate_of="LAP-DUPLICATE-1"), OFFICER)
        return steps
    category = submitted.category or rng.choice(CATEGORIES)
    if not add(later(2, 110), ev.ComplaintVerified(classification=submitted.kind, category=category), OFFICER):
        return steps
    bounces = 0
    while True:
        at = later(1, 48)
        if not add(at, ev.ComplaintDisposed(agency_id=agency_id, follow_up_due=policy.follow_up_due(at),
                                            ombudsman_offer_due=policy.ombudsman_offer_due(at)), OFFICER):
            return steps
        if bounces < 2 and rng.random() < 0.12:
            bounces += 1
            if not add(later(2, 72), ev.DispositionReturned(agency_id=agency_id, reason="Bukan wewenang kami."),
                       _agency_officer(agency_id)):
                return steps
            agency_id = rng.choice([a for a, _, _ in AGENCIES if a != agency_id])
            continue
        break
    if not add(later(1, 70), ev.DispositionAccepted(agency_id=agency_id), _agency_officer(agency_id)):
        return steps
    level = "agency"
    if rng.random() < 0.6:
        if not add(later(1, 24), ev.ComplaintAssigned(unit_id=f"{agency_id}/{rng.choice(UNITS)}"),
                   _agency_officer(agency_id)):
            return steps
        level = "unit"
    if rng.random() < 0.12:
        at = later(24 * 6, 24 * 9)
        # A city's missed follow-up goes up to its province's coordinator; a province's to the national admin.
        province = f"pemda-{region_code.split('.')[0]}"
        regional = province != agency_id
        escalation = ev.ComplaintEscalated(
            kind="follow_up_overdue", reason="Tidak ada tindak lanjut.", from_level=level,
            to_level="regional" if regional else "national", to_agency_id=province if regional else None,
            automatic=True, follow_up_due=policy.follow_up_due(at),
        )
        if not add(at, escalation, SYSTEM):
            return steps
    for reopened in range(2):
        for number in range(rng.randint(1, 3)):
            public = number > 0 or rng.random() < 0.9
            if not add(later(6, 24 * 8), ev.FollowUpPosted(follow_up_id=f"fu-{reopened}-{number}",
                                                           text="Sedang ditangani petugas.", public=public),
                       _agency_officer(agency_id)):
                return steps
        if rng.random() < 0.15:
            return steps  # still being handled when the run ends
        at = later(12, 24 * 10)
        if not add(at, ev.ComplaintResolved(resolution="Sudah diperbaiki.", feedback_due=policy.feedback_due(at)),
                   _agency_officer(agency_id)):
            return steps
        answer = rng.random()
        if answer < 0.45:
            add(later(24 * 10, 24 * 16), ev.ComplaintClosed(reason="no_response"), SYSTEM)
            return steps
        satisfied = answer < 0.85 or reopened == 1
        if not add(later(2, 24 * 9), ev.FeedbackGiven(satisfied=satisfied, rating=rng.randint(3, 5) if satisfied
                                                       else rng.randint(1, 2)), _reporter(tracking_id)):
            return steps
        if satisfied:
            add(later(0.01, 1), ev.ComplaintClosed(reason="satisfied"), SYSTEM)
            return steps
        at = later(0.01, 1)
        if not add(at, ev.ComplaintReopened(reason="Belum beres.", follow_up_due=policy.follow_up_due(at)), SYSTEM):
            return steps
    return steps


def directory_events() -> list[tuple[str, NewEvent]]:
    """(stream, event) registering the agencies the histories use, as routing seeds them."""
    events = []
    for agency_id, region_code, name in AGENCIES:
        kind = "pemerintah_provinsi" if "." not in region_code else "pemerintah_kabupaten_kota"
        parent = None if "." not in region_code else f"pemda-{region_code.split('.')[0]}"
        model = ev.AgencyRegistered(agency_id=agency_id, name=name, parent_id=parent, kind=kind,
                                    region_code=region_code)
        events.append((f"directory-{agency_id}", model.to_new_event(metadata=dict(SYSTEM))))
    return events


def histories(
    seed: int, count: int, start: datetime, days: float, ends: datetime, policy: Sp4nPolicy, prefix: str = "LAP"
) -> list[Step]:
    """`count` histories submitted evenly at random over `days` from `start`, every step in time order."""
    rng = random.Random(seed)
    steps: list[Step] = []
    for number in range(count):
        submitted_at = start + timedelta(seconds=rng.uniform(0, days * 86400))
        steps.extend(random_history(rng, f"{prefix}-{number:07d}", submitted_at, ends, policy))
    steps.sort(key=lambda step: step.at)
    return steps


def append_in_time_order(
    store: EventStore,
    clock: ManualClock,
    steps: Sequence[Step],
    *,
    tick: timedelta,
    threads: int = 1,
    versions: dict[str, int] | None = None,
) -> None:
    """Append `steps` with the store's `clock` at each tick's start: events of one tick are recorded at the
    same moment, several streams at once when `threads` > 1 (the group commit packs them). `versions` (stream ->
    last version) carries over between calls that continue the same histories."""
    versions = {} if versions is None else versions
    lock = threading.Lock()

    def tick_of(step: Step) -> int:
        return int(step.at.timestamp() // tick.total_seconds())

    def append(tracking_id: str, events: list[NewEvent]) -> None:
        stream = f"complaint-{tracking_id}"
        with lock:
            expected = versions.get(stream, -1)
            versions[stream] = expected + len(events)
        store.append(stream, events, expected_version=expected)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for number, in_tick in groupby(steps, key=tick_of):
            moment = datetime.fromtimestamp(number * tick.total_seconds(), steps[0].at.tzinfo)
            if moment > clock.now():
                clock.set(moment)
            per_stream: dict[str, list[NewEvent]] = {}
            for step in in_tick:
                per_stream.setdefault(step.tracking_id, []).append(step.event)
            if threads == 1:
                for tracking_id, events in per_stream.items():
                    append(tracking_id, events)
            else:
                list(pool.map(lambda item: append(*item), per_stream.items()))


def register_directory(store: EventStore, events: Iterable[tuple[str, NewEvent]] | None = None) -> None:
    for stream, event in events if events is not None else directory_events():
        store.append(stream, [event])
