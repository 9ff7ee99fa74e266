"""Demo seeding: the agencies act on a good part of their disposed reports, legally, and a second run adds
nothing."""

from __future__ import annotations

from collections import Counter

from lapor.complaint import Status, fold
from services.followup.demo import seed_demo
from tests.followup.conftest import DINKES, KUPANG


def test_agencies_act_on_their_queues_and_seeding_again_adds_nothing(followup):
    for n in range(40):
        followup.disposed(f"LAP-DEMO-{n:02d}")
    seed_demo(followup.ctx)
    head = followup.ctx.store.head_position()
    seed_demo(followup.ctx)
    assert followup.ctx.store.head_position() == head

    states = [fold(followup.events(f"LAP-DEMO-{n:02d}")) for n in range(40)]
    statuses = Counter(state.status for state in states if state is not None)
    assert statuses[Status.disposed] > 0  # some still wait
    assert statuses[Status.in_progress] > 0
    assert statuses[Status.resolved] > 0
    assert statuses[Status.returned] > 0
    assigned = [state for state in states if state is not None and state.unit_id]
    assert assigned
    assert {state.unit_id for state in assigned} == {DINKES}  # the demo unit officer has a queue
    officer_queue = followup.queue(DINKES, followup.unit_officer())
    assert len(officer_queue["items"]) == len(assigned)
    assert followup.queue(KUPANG, followup.liaison(), limit=200)["items"]
