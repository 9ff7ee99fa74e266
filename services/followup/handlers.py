"""What the followup service does on its own: react to the reporter's answer, close reports left unanswered, warn
of deadlines, and deliver notifications.

- `Reactions` (subscription `followup.reactions`): a FeedbackGiven (decided by intake) closes the report
  (satisfied) or reopens it to the agency (dissatisfied, with the reporter's reason and a new follow-up deadline
  counted from the reopening). A satisfied answer to a late answer that routing has still to red-mark closes the
  report when the mark comes (session 30: closed first, the report lost its red mark).
- `close_silent_reports` (loop `followup.closing`): resolved reports whose reporter stayed silent for the
  feedback window (10 working days) are closed, reason no_response (not before routing's red mark of a late
  answer: the next round closes them).
- `warn_of_deadlines` (loop `followup.deadline-warnings`): an outbox record for each agency deadline that is about
  to pass (`Sp4nPolicy.deadline_approaching`).
- `Notifier` (loop `followup.notifications`): new queue items into the outbox, then delivery
  (`notifications.Deliverer`).

Exactly once, also across restarts and with several processes: every decision is made on the freshly folded
stream and appended with its expected version, so a reaction or closing that already happened finds the report
moved on and decides nothing; the events carry deterministic ids (`lapor.commands.caused_event_id`), so even two
runs deciding on the same version append one event. The actor of these events is `system`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from lapor.commands import caused_event_id, run_command
from lapor.complaint import STREAM_PREFIX, ComplaintState, fold
from lapor.context import BackgroundLoop, ServiceContext
from lapor.correlation import correlation_scope
from lapor.db import Tx
from lapor.principal import SYSTEM
from lapor.problems import Conflict
from lapor.store import NewEvent, RecordedEvent
from lapor.subscriptions import Subscription
from schemas.events import EscalationKind
from services.followup.decide import decide_close_in_silence, decide_on_feedback
from services.followup.notifications import (
    DEADLINE_APPROACHING,
    WEBHOOK,
    Adapter,
    Deliverer,
    Notification,
    WebhookAdapter,
    notification_id,
    post_arrivals,
    record_notification,
    webhook_policy,
)
from services.followup.projections import deadline_of, deadlines_until, feedback_windows_passed
from services.followup.storage import install_service_tables, moment

log = logging.getLogger("lapor.followup")

CLOSING_INTERVAL = 10.0  # seconds between looks for unanswered resolutions (a training clock moves in jumps)
WARNING_INTERVAL = 300.0  # deadlines are counted in days: a look every five minutes is plenty
NOTIFY_INTERVAL = 2.0
CLOSING_BATCH = 200


def stream_of(tracking_id: str) -> str:
    return f"{STREAM_PREFIX}{tracking_id}"


# -- the reporter's answer ----------------------------------------------------------------------------------


def _last_feedback(events: Sequence[RecordedEvent]) -> RecordedEvent | None:
    return next((event for event in reversed(events) if event.type == "FeedbackGiven"), None)


def _with_last_feedback(events: Sequence[RecordedEvent]) -> tuple[ComplaintState | None, int | None]:
    """The folded state, and the version of the latest FeedbackGiven (the answer to the current resolution)."""
    last = _last_feedback(events)
    return fold(events), None if last is None else last.version


class Reactions:
    """Handler of the `followup.reactions` subscription. It writes to the event store, not to read models, so it
    is a process manager rather than a projection: replaying it (a rebuild) decides nothing new."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def subscription(self) -> Subscription:
        return Subscription("followup.reactions", self.handle, category="complaint", projection=False)

    def handle(self, event: RecordedEvent, tx: Tx) -> None:
        if event.type == "FeedbackGiven":
            self.answer_feedback(event)
        elif event.type == "ComplaintEscalated" and event.data["kind"] == EscalationKind.follow_up_overdue:
            # A satisfied answer waits for the red mark of a late answer (`decide_on_feedback`): act on it now.
            feedback = _last_feedback(self._ctx.store.read_stream(event.stream))
            if feedback is not None:
                self.answer_feedback(feedback)

    def answer_feedback(self, feedback: RecordedEvent) -> None:
        policy = self._ctx.policy

        def decide(folded: tuple[ComplaintState | None, int | None], now: datetime) -> list[NewEvent]:
            state, last_feedback = folded
            # An older answer (its resolution was reopened and resolved again) is not this resolution's answer.
            if state is None or last_feedback != feedback.version:
                return []
            decided = decide_on_feedback(
                state,
                satisfied=feedback.data["satisfied"],
                comment=feedback.data.get("comment"),
                now=now,
                policy=policy,
            )
            cause = f"{feedback.stream}:{feedback.version}:feedback-answered"
            return [event.to_new_event(event_id=caused_event_id(cause)) for event in decided]

        with correlation_scope(feedback.metadata.get("correlation_id")):
            run_command(
                self._ctx,
                feedback.stream,
                decide,
                principal=SYSTEM,
                fold=_with_last_feedback,
                causation_id=str(feedback.event_id),
            )


# -- closing in silence -------------------------------------------------------------------------------------


def close_silent_reports(ctx: ServiceContext, *, limit: int = CLOSING_BATCH) -> int:
    """Close the resolved reports whose feedback window has passed without an answer, at most `limit` a round;
    returns how many closings it appended (one appended by another process at the same moment, under the same event
    id, counts in both). The queue projection says where to look; the folded stream decides.

    Candidates the stream says not to close yet (a late answer routing has still to red-mark, a report that kept
    changing) stay candidates, at the head of the order: the round reads on past them, page after page, until it
    has closed `limit` reports or seen every candidate (session 30: it read one page, so `limit` reports waiting for
    their red mark, while routing was down, kept every other report from closing)."""
    now = ctx.clock.now()
    closed = 0
    after: tuple[str, str] | None = None
    while closed < limit:
        wanted = limit - closed
        with ctx.db.read() as tx:
            page = feedback_windows_passed(tx, now, wanted, after)
        for _, tracking_id in page:
            closed += _close_in_silence(ctx, tracking_id)
        if len(page) < wanted:
            break
        after = page[-1]
    return closed


def _close_in_silence(ctx: ServiceContext, tracking_id: str) -> bool:
    """Close one report if its folded stream says so; whether a closing was appended."""
    stream = stream_of(tracking_id)

    def decide(state: ComplaintState, now: datetime) -> list[NewEvent]:
        event_id = caused_event_id(f"{stream}:{state.version}:closed-in-silence")
        return [event.to_new_event(event_id=event_id) for event in decide_close_in_silence(state, now)]

    try:
        result = run_command(ctx, stream, decide, principal=SYSTEM)
    except Conflict:
        log.warning("closing %s: the report kept changing; trying again next round", tracking_id)
        return False
    return bool(result.events)


# -- deadline warnings --------------------------------------------------------------------------------------


def warned(agency_id: str | None, unit_id: str | None) -> str | None:
    """Whom a deadline warning is for: the unit that holds the report, else its agency (the fan-out adds the agencies
    above it)."""
    return unit_id or agency_id


def warn_of_deadlines(ctx: ServiceContext) -> int:
    """Record a `deadline.approaching` notification for each agency deadline within the policy's warning days;
    once per deadline and holder: a new deadline (an escalation, a reopening) is warned of again, and so is the
    same deadline once another unit or agency holds the report (session 28: the warning's id named the deadline
    alone, so the new holder was never warned, and `outdated_warning` let the former holder's go out)."""
    policy = ctx.policy
    now = ctx.clock.now()
    # Calendar days enough to cover `warning_days` working days across weekends and the longest cuti bersama.
    horizon = timedelta(days=2 * policy.warning_days + 21)
    recorded = 0
    with ctx.db.transaction() as tx:
        for tracking_id, agency_id, unit_id, kind, deadline_text in deadlines_until(tx, now, horizon):
            deadline = moment(deadline_text)
            assert deadline is not None
            if not policy.deadline_approaching(deadline, now):
                continue
            payload: dict[str, Any] = {
                "deadline_kind": kind,
                "deadline": deadline.isoformat(),
                "working_days_left": policy.working_days_left(deadline, now),
            }
            holder = warned(agency_id, unit_id)
            assert holder is not None  # an agency deadline runs only while an agency holds the report
            recorded += record_notification(
                tx,
                Notification(
                    notification_id=notification_id(
                        f"{tracking_id}:{kind}:{deadline_text}:{holder}:{DEADLINE_APPROACHING}"
                    ),
                    kind=DEADLINE_APPROACHING,
                    agency_id=holder,
                    tracking_id=tracking_id,
                    payload=payload,
                    created_at=now,
                ),
            )
    return recorded


def outdated_warning(ctx: ServiceContext) -> Callable[[Notification, datetime], str | None]:
    """Why a `deadline.approaching` warning must not be sent now, judged on the freshly folded report: the
    deadline it names was answered, replaced (a re-disposition, an escalation, a reopening) or has passed, the
    report left the queue, or another unit or agency holds it now (a reassignment, a re-disposition, a takeover:
    the scan warns that one instead; session 28). A warning waits in the outbox (the scan every five minutes,
    retries for hours behind a failing receiver), and one that arrives after the agency answered, names the old
    deadline, or goes to whoever held the report before, misleads them."""

    def outdated(notification: Notification, now: datetime) -> str | None:
        if notification.kind != DEADLINE_APPROACHING:
            return None
        state = fold(ctx.store.read_stream(stream_of(notification.tracking_id)))
        running = deadline_of(state) if state is not None else None
        said = notification.payload
        if (
            state is None
            or running is None
            or running.due is None
            or running.kind != said.get("deadline_kind")
            or running.due != datetime.fromisoformat(said["deadline"])
        ):
            return "not sent: the deadline it warns of no longer runs (answered, replaced, or out of the queue)"
        if warned(state.agency_id, state.unit_id) != notification.agency_id:
            return "not sent: another unit or agency holds the report now, and is warned instead"
        if now > running.due:
            return "not sent: the deadline it warns of has passed"
        return None

    return outdated


# -- the loops ----------------------------------------------------------------------------------------------


class Notifier:
    """The notification loop's tick: post new queue items to the outbox, then deliver what is due."""

    def __init__(self, ctx: ServiceContext, adapters: Mapping[str, Adapter]) -> None:
        self._ctx = ctx
        self._deliverer = Deliverer(ctx.db, ctx.clock, adapters, outdated=outdated_warning(ctx))

    def run_once(self) -> int:
        with self._ctx.db.transaction() as tx:
            post_arrivals(tx, self._ctx.clock.now())
        return self._deliverer.run_once()


def background_loops(ctx: ServiceContext) -> list[BackgroundLoop]:
    install_service_tables(ctx.db)
    notifier = Notifier(ctx, {WEBHOOK: WebhookAdapter(webhook_policy(ctx.settings))})
    return [
        BackgroundLoop.every("followup.closing", CLOSING_INTERVAL, lambda: close_silent_reports(ctx)),
        BackgroundLoop.every("followup.deadline-warnings", WARNING_INTERVAL, lambda: warn_of_deadlines(ctx)),
        BackgroundLoop.every("followup.notifications", NOTIFY_INTERVAL, notifier.run_once),
    ]
