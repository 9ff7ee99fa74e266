"""Training mode (`lapor up --training`): a national admin advances the simulated clock with an ISO-8601 duration
and the deadline scheduler wakes at once, so a bimtek class sees an overdue report escalate; outside training mode
the clock route does not exist."""

from __future__ import annotations

import time
from datetime import datetime

from tests.routing.conftest import caught_up
from tests.routing.harness import submit_report

WAIT = 15.0


def escalations(client, tracking_id: str) -> list[dict]:
    events = client.app.state.context.store.read_stream(f"complaint-{tracking_id}")
    return [event.data for event in events if event.type == "ComplaintEscalated"]


def test_advancing_the_training_clock_wakes_the_scheduler_which_escalates_the_overdue_report(serve, admin):
    with serve(training=True) as client:
        submit_report(client.app.state.context, "LAP-1")
        caught_up(client)
        assert escalations(client, "LAP-1") == []
        # a month: past three working days whatever holidays come (Lebaran's cuti bersama included)
        moved = client.post("/api/training/clock", json={"advance": "P30D"}, headers=admin)
        assert moved.status_code == 200
        deadline = time.monotonic() + WAIT
        while not escalations(client, "LAP-1"):
            assert time.monotonic() < deadline, "the scheduler did not react to the moved clock"
            time.sleep(0.05)
        [escalation] = escalations(client, "LAP-1")
        assert escalation["kind"] == "verification_overdue"
        recorded = client.app.state.context.store.read_stream("complaint-LAP-1")[-1].recorded_at
        assert recorded >= datetime.fromisoformat(moved.json()["now"])


def test_the_queue_shows_the_training_clocks_time(serve, admin):
    with serve(training=True) as client:
        submit_report(client.app.state.context, "LAP-1")
        caught_up(client)
        before = client.get("/api/verification-queue", headers=admin).json()["items"][0]["verification"]
        client.post("/api/training/clock", json={"advance": "P30D"}, headers=admin)
        after = client.get("/api/verification-queue", headers=admin).json()["items"][0]["verification"]
    assert before["overdue"] is False
    assert after["overdue"] is True
    assert after["working_days_left"] < 0


def test_outside_training_mode_the_clock_cannot_be_moved(serve, admin):
    with serve() as client:
        response = client.post("/api/training/clock", json={"advance": "P3D"}, headers=admin)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
