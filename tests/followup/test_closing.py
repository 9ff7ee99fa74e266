"""Closing: after a resolution the reporter has 10 working days; silence closes the report exactly once (also
across restarts and with two closers at once), an answer closes or reopens it exactly once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from threading import Barrier

from lapor.clock import ManualClock
from lapor.commands import caused_event_id
from lapor.complaint import fold
from lapor.principal import NATIONAL_ADMIN_AGENCY
from lapor.settings import load_settings
from lapor.store import open_store
from lapor.subscriptions import SubscriptionRunner
from schemas.events import ComplaintEscalated, EscalationKind, FeedbackGiven, Level
from services.followup.handlers import Reactions, close_silent_reports
from tests.followup.conftest import KUPANG, MONDAY, later

NTT = "pemda-53"  # Kupang's province


def resolved(app, tracking_id: str) -> str:
    app.disposed(tracking_id)
    app.act(tracking_id, "accept", app.liaison())
    response = app.act(tracking_id, "resolve", app.liaison(), {"resolution": "Puskesmas sudah buka normal."})
    assert response.status_code == 200, response.text
    app.settle()
    return tracking_id


def test_silence_for_ten_working_days_closes_the_report(followup):
    tid = resolved(followup, "LAP-C-1")  # Monday 9 June: the reporter has until the end of Monday 23 June
    later(followup, days=14)  # Monday 23 June, still inside the window
    assert close_silent_reports(followup.ctx) == 0
    assert followup.types(tid)[-1] == "ComplaintResolved"

    later(followup, days=1)  # Tuesday 24 June
    assert close_silent_reports(followup.ctx) == 1
    closed = followup.events(tid)[-1]
    assert (closed.type, closed.data["reason"]) == ("ComplaintClosed", "no_response")
    assert closed.metadata["actor"] == "system"
    assert followup.queue(KUPANG, followup.liaison())["items"] == []


def test_the_closing_happens_once_across_a_restart(start):
    with start() as app:
        app.register_directory()
        resolved(app, "LAP-C-2")
        later(app, days=20)
        assert close_silent_reports(app.ctx) == 1
        at = app.clock.now()
        # The queue has not seen the closing yet when the next round looks (as after a crash right after the
        # append): the report is a candidate again, and the freshly folded stream says there is nothing to do.
        assert close_silent_reports(app.ctx) == 0
        assert app.types("LAP-C-2").count("ComplaintClosed") == 1
    with start(at=at + timedelta(days=1)) as app:
        assert close_silent_reports(app.ctx) == 0
        assert app.types("LAP-C-2").count("ComplaintClosed") == 1


def test_two_closers_at_once_close_it_once(start):
    with start() as app, start() as other:  # two processes on one data directory
        app.register_directory()
        resolved(app, "LAP-C-3")
        other.settle()
        for each in (app, other):
            each.clock.set(MONDAY + timedelta(days=20))
        barrier = Barrier(2)

        def close(each) -> int:
            barrier.wait()
            return close_silent_reports(each.ctx)

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(close, [app, other]))
        assert app.types("LAP-C-3").count("ComplaintClosed") == 1


def test_a_closing_decided_twice_on_the_same_version_appends_one_event(followup):
    """The deterministic id: the same decision appended again is the same event, not a second one."""
    tid = resolved(followup, "LAP-C-4")
    version = followup.version(tid)
    later(followup, days=20)
    close_silent_reports(followup.ctx)
    [closed] = [event for event in followup.events(tid) if event.type == "ComplaintClosed"]
    assert closed.event_id == caused_event_id(f"complaint-{tid}:{version}:closed-in-silence")


def test_an_answer_before_the_window_ends_is_never_overruled_by_silence(followup):
    tid = resolved(followup, "LAP-C-5")
    later(followup, days=3)
    followup.feedback(tid, satisfied=False, comment="Masih tutup sore hari.")
    followup.settle()
    later(followup, days=30)
    close_silent_reports(followup.ctx)
    assert followup.types(tid)[-2:] == ["FeedbackGiven", "ComplaintReopened"]


def test_the_answer_is_acted_on_once_even_when_it_is_handled_again(followup):
    """A restart between the reaction's append and its checkpoint hands the same FeedbackGiven over again."""
    tid = resolved(followup, "LAP-C-6")
    followup.feedback(tid, satisfied=False, comment="Belum beres.")
    followup.settle()
    feedback = followup.events(tid)[-2]
    assert feedback.type == "FeedbackGiven"
    Reactions(followup.ctx).answer_feedback(feedback)
    assert followup.types(tid).count("ComplaintReopened") == 1


def test_an_earlier_answer_handled_late_does_not_act_on_a_later_resolution(followup):
    tid = resolved(followup, "LAP-C-7")
    followup.feedback(tid, satisfied=False, comment="Belum beres.")
    followup.settle()
    first_answer = followup.events(tid)[-2]
    followup.act(tid, "resolve", followup.liaison(), {"resolution": "Sekarang sudah beres."})
    followup.feedback(tid, satisfied=True)
    followup.settle()
    Reactions(followup.ctx).answer_feedback(first_answer)  # the old dissatisfied answer, handled again
    assert followup.types(tid)[-1] == "ComplaintClosed"
    assert followup.types(tid).count("ComplaintReopened") == 1


def test_a_fresh_reaction_subscription_replaying_the_whole_log_decides_nothing_new(followup):
    tid = resolved(followup, "LAP-C-8")
    followup.feedback(tid, satisfied=True)
    followup.settle()
    before = followup.ctx.store.head_position()
    replaying = Reactions(followup.ctx).subscription()
    runner = SubscriptionRunner(followup.ctx.store, followup.ctx.db, replace(replaying, name="followup.replay"))
    runner.run_until_caught_up()
    assert followup.ctx.store.head_position() == before


def test_an_answer_acted_on_after_an_outage_gives_the_agency_its_follow_up_days_from_the_reopening(start, data_dir):
    """The reporter answers while followup is down (intake runs on its own); followup, back six working days
    later, reopens the report to the agency. The agency's five working days run from then: counted from the answer
    they had passed before the report was back in its queue, and routing escalated it at once (a red mark)."""
    with start() as app:
        app.register_directory()
        tid = resolved(app, "LAP-C-9")
        answered_at = later(app, days=1)  # Tuesday 10 June
    settings = load_settings(data=data_dir, training=True)
    store = open_store(settings.store, clock=ManualClock(answered_at))
    answer = FeedbackGiven(satisfied=False, rating=1, comment="Masih tutup.")
    store.append(f"complaint-{tid}", [answer.to_new_event(metadata={"actor": "pelapor", "role": "reporter"})],
                 store.stream_version(f"complaint-{tid}"))
    store.close()
    back = answered_at + timedelta(days=8)  # Wednesday 18 June
    with start(at=back) as app:
        app.settle()
        reopened = app.events(tid)[-1]
        assert reopened.type == "ComplaintReopened"
        due = app.ctx.policy.follow_up_due(reopened.recorded_at)  # end of Wednesday 25 June
        assert datetime.fromisoformat(reopened.data["follow_up_due"]) == due
        assert app.ctx.calendar.working_days_between(back, due) == 5


# -- a late answer is closed only once routing has red-marked it (session 30) -----------------------------------


def resolved_late(app, tracking_id: str) -> str:
    """Kupang accepts and resolves a minute after its follow-up deadline (before routing's scheduler looked)."""
    app.disposed(tracking_id)
    app.act(tracking_id, "accept", app.liaison())
    due = fold_state(app, tracking_id).follow_up_due
    app.clock.set(due + timedelta(minutes=1))
    response = app.act(tracking_id, "resolve", app.liaison(), {"resolution": "Puskesmas sudah buka normal."})
    assert response.status_code == 200, response.text
    app.settle()
    return tracking_id


def fold_state(app, tracking_id: str):
    state = fold(app.events(tracking_id))
    assert state is not None
    return state


def red_marked_by_routing(app, tracking_id: str, *, to_level: Level = Level.regional, to: str = NTT) -> None:
    """Routing's red mark of the deadline answered late (no new deadline: nothing is left to answer)."""
    state = fold_state(app, tracking_id)
    app.decide(tracking_id, ComplaintEscalated(
        kind=EscalationKind.follow_up_overdue, reason="Tindak lanjut melewati batas waktu: ditanggapi setelah batas "
        "waktu", from_level=state.level, to_level=to_level, to_agency_id=to, automatic=True), role="system")


def test_a_satisfied_answer_to_a_late_resolution_closes_the_report_once_routing_has_red_marked_it(followup):
    """Closed before routing looked, the report took no more events and the agency's red mark was lost (a satisfied
    reporter answering within seconds, or routing down). The closing waits for the mark, then follows it."""
    tid = resolved_late(followup, "LAP-C-LATE-1")
    followup.feedback(tid, satisfied=True)
    followup.settle()
    assert followup.types(tid)[-1] == "FeedbackGiven"  # not closed yet: the red mark is still to come
    red_marked_by_routing(followup, tid)
    followup.settle()
    assert followup.types(tid)[-2:] == ["ComplaintEscalated", "ComplaintClosed"]
    assert followup.events(tid)[-1].data["reason"] == "satisfied"
    assert followup.events(tid)[-1].metadata["actor"] == "system"


def test_silence_after_a_late_resolution_closes_the_report_once_routing_has_red_marked_it(followup):
    tid = resolved_late(followup, "LAP-C-LATE-2")
    later(followup, days=30)
    assert close_silent_reports(followup.ctx) == 0
    assert followup.types(tid)[-1] == "ComplaintResolved"
    red_marked_by_routing(followup, tid)
    followup.settle()
    assert close_silent_reports(followup.ctx) == 1
    assert followup.types(tid)[-2:] == ["ComplaintEscalated", "ComplaintClosed"]


def test_a_late_answer_routing_never_marks_does_not_hold_the_closing(followup):
    """At the national level nothing is above to escalate to: routing never marks such a late answer, so the
    satisfied reporter's answer closes the report at once, as before."""
    tid = followup.disposed("LAP-C-LATE-3")
    followup.act(tid, "accept", followup.liaison())
    state = fold_state(followup, tid)
    followup.clock.set(state.follow_up_due + timedelta(minutes=1))
    followup.decide(tid, ComplaintEscalated(
        kind=EscalationKind.follow_up_overdue, reason="Tindak lanjut melewati batas waktu.", from_level=Level.agency,
        to_level=Level.national, to_agency_id=NATIONAL_ADMIN_AGENCY, automatic=True,
        follow_up_due=followup.clock.now() + timedelta(days=7)), role="system")
    followup.clock.set(followup.clock.now() + timedelta(days=8))  # the national admin's deadline passed too
    assert followup.act(tid, "resolve", followup.liaison(), {"resolution": "Sudah."}).status_code == 200
    followup.feedback(tid, satisfied=True)
    followup.settle()
    assert followup.types(tid)[-1] == "ComplaintClosed"


def test_reports_waiting_for_their_red_mark_do_not_hold_up_the_closing_of_the_others(start, monkeypatch):
    """While routing is down, late answers wait for their red mark at the head of the closing loop's candidates
    (the oldest feedback windows). A round of `limit` reads on past them: a report resolved in time whose window
    passed later still closes (session 30: one page of `limit` waiting reports held up every other closing)."""
    monkeypatch.setattr("services.followup.handlers.CLOSING_INTERVAL", 3600.0)  # only the test's rounds close
    with start() as app:
        app.register_directory()
        waiting = [resolved_late(app, "LAP-C-HOLD-1"), resolved_late(app, "LAP-C-HOLD-2")]
        in_time = [resolved(app, "LAP-C-HOLD-3"), resolved(app, "LAP-C-HOLD-4"), resolved(app, "LAP-C-HOLD-5")]
        later(app, days=30)
        assert close_silent_reports(app.ctx, limit=2) == 2  # at most `limit` closings a round
        app.settle()
        assert close_silent_reports(app.ctx, limit=2) == 1
        for tid in waiting:
            assert app.types(tid)[-1] == "ComplaintResolved"
        for tid in in_time:
            assert app.types(tid)[-1] == "ComplaintClosed"
        for tid in waiting:  # routing back: the marked reports close in the next round
            red_marked_by_routing(app, tid)
        app.settle()
        assert close_silent_reports(app.ctx, limit=2) == 2
        assert all(app.types(tid)[-1] == "ComplaintClosed" for tid in waiting)
