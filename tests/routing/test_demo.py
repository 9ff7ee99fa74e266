"""`lapor up --demo`: after intake's sample reports, routing verifies and disposes a good part of them (most of
Kota Kupang's, where the demo tokens belong), pends, archives and marks a few as duplicates, and a second run
changes nothing."""

from __future__ import annotations

from collections import Counter

from lapor.complaint import replay
from services.routing.seed import seed_demo
from tests.routing.harness import wib

REGIONS = ("53.71", "53.71.04", "82.71", "81.71", "35.73", "35", "36.03")


def test_demo_routing_acts_on_most_reports_and_is_idempotent(routing_at):
    routing = routing_at(wib(2026, 3, 2, 10))
    for n in range(140):
        routing.submit(f"LAP-DEMO-{n:04d}", region_code=REGIONS[n % len(REGIONS)])
    acted = seed_demo(routing.ctx)
    states = replay(routing.store.read_all(0, "complaint", 100_000))
    statuses = Counter(state.status.value for state in states.values())
    assert acted == 140 - statuses["submitted"]
    assert statuses["disposed"] > 140 * 0.4
    assert {"verified", "pended", "archived", "duplicate"} <= statuses.keys()
    kupang = [s for s in states.values() if s.agency_id == "pemda-53.71"]
    assert len(kupang) >= 20  # the demo tokens' agency has a queue to work on
    head = routing.store.head_position()
    assert seed_demo(routing.ctx) == 0
    assert routing.store.head_position() == head
