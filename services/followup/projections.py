"""The followup service's read model: the agency queues.

**Queue** (`followup_queue`): one row per report that has reached an agency, computed from the folded complaint
state (`lapor.complaint`, the one fold, through the process's shared `lapor.states.ComplaintStates`, which folds
the stream from the store only when nobody holds the previous state, e.g. after a restart). Rows are idempotent
by version. The same handler records each new item in a queue (`followup_queue_arrivals`) in the same
transaction, so each is recorded exactly once; the notification loop turns recent ones into notifications.

Queue order is "overdue first": the agency's running deadline (follow-up, else resolution) ascending — an overdue
item has the earliest deadline — then reports waiting for the reporter's answer, then those with no deadline;
ties by tracking id. Pages are cut by keyset on that order, so inserting items never shifts a page a client is
reading. The cursor is opaque (base64 of the last row's key).

**Escalations watched** (`followup_escalations`, session 29): per report and agency it was escalated to above its
holder (a regency's missed follow-up to its province, the province's to the national admin), the latest such
escalation, and whether that agency still watches it: from the escalation while the follow-up deadline it left
runs unanswered, until the holder answers (a public follow-up, a resolution) or the holding ends (returned, disposed
again, taken over by the Ombudsman, closed). Only escalation events and the events that end a watch cost a
write; a report never escalated costs nothing more. Rows are idempotent by version like the queue's. The
watcher's worklist reads them with the queue rows (`read_escalated`).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import orjson

from lapor.auth import within
from lapor.complaint import ComplaintState, EscalationKind, Status, ombudsman_offer_running
from lapor.db import Tx
from lapor.principal import NATIONAL_ADMIN_AGENCY
from lapor.privacy import agencies_above, ancestors_and_self, present_escalations
from lapor.problems import BadRequest
from lapor.states import ComplaintStates
from lapor.store import RecordedEvent
from lapor.subscriptions import Subscription, holding_subscription
from schemas.events import TRACKING_ID_PATTERN
from services.followup import storage
from services.followup.approval import PRESENT_HOLDING_SQL
from services.followup.notifications import ESCALATION_WATCHED, ITEM_ADDED, notification_id
from services.followup.storage import NEVER, instant

# 2: the row keeps the report's `reporter_ref`, so its identity is scrubbed from a title the national admin
# corrected. (Arrivals are rebuilt with their deterministic ids: the outbox posts none of them again.)
# 3: the escalations each agency watches (`followup_escalations`), read from the log again (session 29).
# 4: an arrival has its notification's kind, and a new watch of an escalation is one: `escalation.watched` for the
# watcher (session 29). Rebuilt with their deterministic ids: the outbox posts none of the old ones again, and of
# the watches only those of the last day (`notifications.STALE_AFTER`), which nobody was told of.
# 5 (session 30): the "resolution" deadline only while the Ombudsman offer runs (`ombudsman_offer_running`): not
# after the offer was made (a disposition after it set the deadline again), nor in the Ombudsman's own queue.
# 6 (session 31): `category_key`, the category casefolded, which the queue's `category` filter compares: routing
# rules compare categories ignoring case, and a liaison officer filtering "Jalan Rusak" missed "jalan rusak".
# 7 (session 32): a reopening of an assigned report is one arrival, the unit's (`innermost`), not one for the unit
# and one for its agency, whose webhooks heard of it twice. Rebuilt with their deterministic ids: posted once.
QUEUE_VERSION = 7
# Statuses in which a report sits in its agency's queue.
QUEUE_STATUSES = (Status.disposed, Status.in_progress, Status.resolved)
# Urgency buckets, the first key of the queue order.
AGENCY_DEADLINE, AWAITING_REPORTER, NO_DEADLINE = 0, 1, 2
URGENCIES = (AGENCY_DEADLINE, AWAITING_REPORTER, NO_DEADLINE)
# Statuses in which an agency must still follow the report up: an escalation is watched only there.
HELD_STATUSES = (Status.disposed, Status.in_progress)
# The escalations that name an agency to watch the holder: a missed follow-up deadline one level up, a missed
# verification and a thrice-bounced report to the national admin, a person's. Not the Ombudsman's offer (it names
# nobody) nor its takeover (the Ombudsman holds the report then, in its own queue).
WATCHED_KINDS = frozenset(
    {
        EscalationKind.follow_up_overdue,
        EscalationKind.verification_overdue,
        EscalationKind.bounce_limit,
        EscalationKind.manual,
    }
)


@dataclass(frozen=True)
class Deadline:
    kind: str | None  # follow_up, resolution (the Ombudsman offer if unresolved), feedback (the reporter's)
    due: datetime | None
    urgency: int


def deadline_of(state: ComplaintState) -> Deadline:
    """The deadline the queue shows: the agency's while it must act, the reporter's once it resolved."""
    if state.status is Status.resolved:
        return Deadline("feedback", state.feedback_due, AWAITING_REPORTER)
    if state.status not in QUEUE_STATUSES:
        return Deadline(None, None, NO_DEADLINE)
    if state.follow_up_due is not None:
        return Deadline("follow_up", state.follow_up_due, AGENCY_DEADLINE)
    offer = ombudsman_offer_running(state)  # not once offered, nor on a report the Ombudsman holds (session 30)
    if offer is not None:
        return Deadline("resolution", offer, AGENCY_DEADLINE)
    return Deadline(None, None, NO_DEADLINE)


def category_key(category: str | None) -> str | None:
    """What the queue's `category` filter compares: the category casefolded in Python, as the routing rules compare
    categories (`services.routing.decide`), not SQL's lower(), which SQLite applies to ASCII letters only."""
    return None if category is None else category.casefold()


def holders(state: ComplaintState) -> set[str]:
    """Whose queues show the report: its agency and, once assigned, its unit."""
    if state.status not in QUEUE_STATUSES:
        return set()
    return {holder for holder in (state.agency_id, state.unit_id) if holder}


# -- the queue projection -----------------------------------------------------------------------------------

_COLUMNS = (
    "tracking_id",
    "version",
    "agency_root",
    "agency_id",
    "unit_id",
    "status",
    "level",
    "kind",
    "category",
    "category_key",  # casefolded, for the `category` filter (`category_key`)
    "title",
    "region_code",
    "channel",
    "anonymous",
    "confidential",
    "involved_agencies",
    "disposed_at",
    "deadline_kind",
    "deadline",
    "urgency",
    "due_order",
    "follow_up_count",
    "reopen_count",
    "bounce_count",
    "last_event_at",
    "reporter_ref",  # whose identity is scrubbed from the title (lapor.privacy drops the reference itself)
)
_UPSERT = (
    f"INSERT INTO followup_queue ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)}) "
    "ON CONFLICT (tracking_id) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in _COLUMNS[1:])
    + " WHERE followup_queue.version < excluded.version"
)


def _row(state: ComplaintState) -> tuple[Any, ...]:
    deadline = deadline_of(state)
    return (
        state.tracking_id,
        state.version,
        state.agency_id.split("/", 1)[0] if state.agency_id else None,
        state.agency_id,
        state.unit_id,
        state.status.value if state.status else None,
        state.level.value,
        state.kind.value if state.kind else None,
        state.category,
        category_key(state.category),
        state.title,
        state.region_code,
        state.channel.value if state.channel else None,
        int(state.anonymous),
        int(state.confidential),
        orjson.dumps(agencies_above(state.agency_id)).decode(),
        instant(state.disposed_at) if state.disposed_at else None,
        deadline.kind,
        instant(deadline.due) if deadline.due else None,
        deadline.urgency,
        instant(deadline.due) if deadline.due else NEVER,
        state.follow_up_count,
        state.reopen_count,
        state.bounce_count,
        instant(state.last_event_at) if state.last_event_at else None,
        state.reporter_ref,
    )


def innermost(queues: set[str]) -> set[str]:
    """The queues of `queues` that no other one of them is inside: an arrival in a unit's queue is also one in its
    agency's, and the unit's notification reaches the agency's webhooks anyway (`notifications.record_notification`
    fans out to the agencies above). A reopening of an assigned report arrives in both, and the agency's webhooks
    heard of it twice, under two delivery ids (session 32)."""
    return {queue for queue in queues if not any(other != queue and within(other, queue) for other in queues)}


_ARRIVALS = {"ComplaintDisposed": "disposed", "ComplaintAssigned": "assigned", "ComplaintReopened": "reopened"}


# A notification the projection records (`followup_queue_arrivals`): its id, agency, report, kind, payload, time.
Notice = tuple[str, str, str, str, str, str]


def _notice(event: RecordedEvent, kind: str, agency_id: str, tracking_id: str, payload: str) -> Notice:
    """The record of notification `kind` for `agency_id` caused by `event`: its id is the same however often the
    event is handled (a replay, a rebuild), so the outbox posts it once (`notifications.post_arrivals`)."""
    cause = f"{event.stream}:{event.version}:{kind}:{agency_id}"
    return (notification_id(cause), agency_id, tracking_id, kind, payload, instant(event.recorded_at))


def _arrivals(before: ComplaintState, after: ComplaintState, event: RecordedEvent) -> list[Notice]:
    """The queues `event` brings the report into: where it arrives (disposition, assignment, takeover by the
    Ombudsman) or comes back (reopened after the reporter's dissatisfaction). Each becomes a notification for the
    agency's targets (`notifications.post_arrivals`)."""
    reopened = event.type == "ComplaintReopened"
    if (
        not reopened
        and after.agency_id == before.agency_id
        and after.unit_id == before.unit_id
        and (after.status in QUEUE_STATUSES) == (before.status in QUEUE_STATUSES)
    ):
        return []  # the same holders as before (most events): nothing arrives
    added = innermost(holders(after) if reopened else holders(after) - holders(before))
    if not added:
        return []
    deadline = deadline_of(after)
    payload = orjson.dumps(
        {
            "reason": _ARRIVALS.get(event.type, "escalated"),
            "status": after.status.value if after.status else None,
            "level": after.level.value,
            "version": after.version,
            "deadline_kind": deadline.kind,
            "deadline": deadline.due.isoformat() if deadline.due else None,
        }
    ).decode()
    return [_notice(event, ITEM_ADDED, holder, after.tracking_id, payload) for holder in sorted(added)]


def _watch_notice(after: ComplaintState, event: RecordedEvent, watcher: str) -> Notice:
    """The `escalation.watched` notification for the agency a ComplaintEscalated made a watcher of the report
    (session 29): whose holding, the level, the escalation's kind and levels, the deadline now running and when.
    Not the escalation's reason: free text (a person's escalation writes its own), which may name the reporter;
    the watcher reads it masked on its worklist. Never for the national level: its worklist is the national
    admin's, and `kemenpanrb`'s webhooks are its own agency staff's, whom `lapor.privacy.escalated_to` and the
    worklist (403) keep out of it."""
    data = event.data
    deadline = deadline_of(after)
    payload = orjson.dumps(
        {
            "holder_agency_id": after.agency_id,
            "holder_unit_id": after.unit_id,
            "status": after.status.value if after.status else None,
            "level": after.level.value,
            "version": after.version,
            "escalation_kind": data["kind"],
            "from_level": data["from_level"],
            "to_level": data["to_level"],
            "automatic": bool(data.get("automatic")),
            "escalated_at": event.recorded_at.isoformat(),
            "deadline_kind": deadline.kind,
            "deadline": deadline.due.isoformat() if deadline.due else None,
        }
    ).decode()
    return _notice(event, ESCALATION_WATCHED, watcher, after.tracking_id, payload)


_ESCALATION_COLUMNS = (
    "tracking_id",
    "agency_id",  # the agency that watches: the escalation's `to_agency_id`
    "version",  # the escalation's
    "kind",
    "reason",
    "from_level",
    "to_level",
    "escalated_at",
    "automatic",
    "watched",  # 1 while the agency watches: the deadline the escalation left runs unanswered in its holding
)
_ESCALATION_UPSERT = (
    f"INSERT INTO followup_escalations ({', '.join(_ESCALATION_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _ESCALATION_COLUMNS)}) ON CONFLICT (tracking_id, agency_id) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in _ESCALATION_COLUMNS[2:])
    + " WHERE followup_escalations.version < excluded.version"
)
# An event ends the watches of the escalations before it (a later escalation to the same agency starts another),
# whatever events ended them before: the row is the same however the log was cut into batches.
_ESCALATION_END = "UPDATE followup_escalations SET watched = 0 WHERE tracking_id = ? AND watched = 1 AND version < ?"


def _watched_escalation(after: ComplaintState, event: RecordedEvent) -> tuple[Any, ...] | None:
    """The `followup_escalations` row of a ComplaintEscalated naming an agency above the holder, made in the
    present holding (`lapor.privacy.present_escalations`, the rule `escalated_to` applies: one made at the moment
    of the disposition, routing's `bounce_limit` flag, belongs to the holding before); None for any other. The
    holder's own agency and those above it (`pemda-53.71` above `pemda-53.71/dinkes`) see the report in their
    own queue, so an escalation from a unit to its agency is not one."""
    data = event.data
    watcher = data.get("to_agency_id")
    if (
        watcher is None
        or data.get("kind") not in WATCHED_KINDS
        or after.status not in HELD_STATUSES
        or after.agency_id is None
        or watcher in ancestors_and_self(after.agency_id)
        or not present_escalations(after.escalations, after.disposed_at)
    ):
        return None
    return (
        after.tracking_id,
        watcher,
        event.version,
        data["kind"],
        data["reason"],
        data["from_level"],
        data["to_level"],
        instant(event.recorded_at),
        int(bool(data.get("automatic"))),
        int(after.follow_up_due is not None),  # answered late, before routing looked: nothing left to watch
    )


def _ends_watch(before: ComplaintState, after: ComplaintState) -> bool:
    """Whether the event ends what agencies watch of the report: the follow-up deadline answered (a public
    follow-up, a resolution), or the holding over (returned, disposed again, taken over by the Ombudsman)."""
    return (before.follow_up_due is not None and after.follow_up_due is None) or (
        after.disposed_at != before.disposed_at
        or after.agency_id != before.agency_id
        or (after.status not in HELD_STATUSES and before.status in HELD_STATUSES)
    )


class QueueProjection:
    """The `followup.queue` subscription. The states come from the process's shared
    `lapor.states.ComplaintStates`: following the log costs one `evolve` per event (none when another projection
    folded it first); a state nobody holds (after a restart, or evicted) is folded from the store up to the
    event."""

    def __init__(self, states: ComplaintStates) -> None:
        self._states = states

    def subscription(self) -> Subscription:
        return holding_subscription(
            "followup.queue", partial(HeldQueue, self._states), setup=storage.install_queue, version=QUEUE_VERSION,
            tables=("followup_queue", "followup_queue_arrivals", "followup_escalations"),
        )


class HeldQueue:
    """The queue rows in memory (a `lapor.subscriptions.Holding`): each report's last state and the arrivals, all
    written by `write` (each report's row once, arrivals in one statement). Nothing is loaded: a row is the
    state's, and rows are idempotent by version."""

    def __init__(self, states: ComplaintStates) -> None:
        self._states = states
        self._changed: dict[str, ComplaintState] = {}
        self._arrivals: list[Notice] = []
        self._escalations: dict[tuple[str, str], tuple[Any, ...]] = {}  # (report, watcher) -> its latest row
        self._ended: dict[str, int] = {}  # report -> the version of the latest event that ended its watches

    def apply(self, events: Sequence[RecordedEvent], tx: Tx) -> None:
        changed, arrivals = self._changed, self._arrivals
        for event in events:
            before, after = self._states.step(event)
            if after.disposed_at is None:
                continue  # still with national routing: nothing for an agency yet
            changed[after.tracking_id] = after
            arrivals.extend(_arrivals(before, after, event))
            if after.escalations:  # most reports are never escalated: nothing more to do for them
                self._escalation_changes(before, after, event)

    def _escalation_changes(self, before: ComplaintState, after: ComplaintState, event: RecordedEvent) -> None:
        if _ends_watch(before, after):
            self._ended[after.tracking_id] = event.version
        if event.type == "ComplaintEscalated":
            row = _watched_escalation(after, event)
            if row is not None:
                self._escalations[(row[0], row[1])] = row
                if row[-1] and row[1] != NATIONAL_ADMIN_AGENCY:  # a new watch (one answered late starts none)
                    self._arrivals.append(_watch_notice(after, event, row[1]))

    def held(self) -> int:
        return len(self._changed) + len(self._arrivals) + len(self._escalations) + len(self._ended)

    def write(self, tx: Tx) -> None:
        if self._changed:
            # In key order: each page of the primary key's B-tree visited once, not at random.
            tx.executemany(_UPSERT, [_row(state) for _, state in sorted(self._changed.items())])
        if self._arrivals:
            tx.executemany(
                "INSERT INTO followup_queue_arrivals (arrival_id, agency_id, tracking_id, kind, payload, occurred_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (arrival_id) DO NOTHING",
                sorted(self._arrivals),  # in key order: each B-tree page visited once
            )
        # Escalations first, then the ends: an end touches only escalations older than itself, so one after it in
        # the batch stays watched and one before it ends, as if the events were written one by one; of a report's
        # ends the batch keeps the latest, which ends every escalation any of them ended.
        if self._escalations:
            tx.executemany(_ESCALATION_UPSERT, [row for _, row in sorted(self._escalations.items())])
        if self._ended:
            tx.executemany(_ESCALATION_END, sorted(self._ended.items()))
        self._changed, self._arrivals, self._escalations, self._ended = {}, [], {}, {}


# -- reading a queue ----------------------------------------------------------------------------------------


# What a cursor's fields can be: `storage.instant` text (NEVER included) and a tracking id.
_DUE_ORDER = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}\+00:00")
_TRACKING_ID = re.compile(TRACKING_ID_PATTERN)


@dataclass(frozen=True)
class QueueCursor:
    """Where a page ended: the last row's place in the queue order. Decoding checks each field is one the queue
    hands out (session 24: an urgency past 64 bits was a 500 on SQLite, a NUL in a field one on PostgreSQL)."""

    urgency: int
    due_order: str
    tracking_id: str

    def encode(self) -> str:
        raw = orjson.dumps([self.urgency, self.due_order, self.tracking_id])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> QueueCursor:
        try:
            urgency, due_order, tracking_id = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            if not (
                type(urgency) is int  # not a bool
                and urgency in URGENCIES
                and isinstance(due_order, str)
                and _DUE_ORDER.fullmatch(due_order)
                and isinstance(tracking_id, str)
                and _TRACKING_ID.fullmatch(tracking_id)
            ):
                raise ValueError("not a cursor of this queue")
        except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
            raise BadRequest("cursor is not one this queue handed out; start again without it") from None
        return cls(urgency, due_order, tracking_id)


@dataclass(frozen=True)
class QueueFilter:
    statuses: Sequence[Status] = QUEUE_STATUSES
    unit_id: str | None = None  # this unit (and the units inside it)
    category: str | None = None
    overdue: bool | None = None
    awaiting_approval: bool | None = None  # has a drafted follow-up waiting for the liaison officer


_READ_COLUMNS = ", ".join(f"q.{column}" for column in _COLUMNS)
# The drafts the liaison officer can approve now: pending, of the present holding, on a report in progress (the
# only status a follow-up is posted in). A draft left waiting when the report was resolved is not counted until a
# reopening brings the report back in progress (session 32: the queue listed the resolved report under
# `awaiting_approval`, and approving its draft was refused).
_PENDING_DRAFTS = (
    "(SELECT count(*) FROM followup_drafts d WHERE d.tracking_id = q.tracking_id AND d.status = 'pending' "
    f"AND q.status = '{Status.in_progress.value}' AND {PRESENT_HOLDING_SQL})"
)


def _within_sql(column: str, scope: str, params: list[Any]) -> str:
    """SQL for "`column` is `scope` or inside it" (`pemda-53.71/dinkes/...`), on both databases."""
    params.extend([scope, len(scope) + 1, scope + "/"])
    return f"({column} = ? OR substr({column}, 1, CAST(? AS INTEGER)) = ?)"


def _held_by_sql(unit_id: str, params: list[Any]) -> str:
    """SQL for "the unit `unit_id` (or one inside it) holds report `q`": assigned to it, or disposed to it directly
    (`agency_id` the unit, no `unit_id`). The `unit` filter read only `unit_id`, so a report disposed to the unit
    directly was in the unit's queue and missing from its agency's queue filtered by it (session 32)."""
    held = _within_sql("q.agency_id", unit_id, params)
    return f"({held} OR {_within_sql('q.unit_id', unit_id, params)})"


def read_queue(
    tx: Tx, agency_id: str, filters: QueueFilter, now: datetime, *, after: QueueCursor | None, limit: int
) -> tuple[list[dict[str, Any]], QueueCursor | None]:
    """One page of `agency_id`'s queue (its units' items included) in queue order, as view dicts for
    `lapor.privacy`, and the cursor of the next page (None on the last)."""
    params: list[Any] = [agency_id.split("/", 1)[0]]
    where = ["q.agency_root = ?", f"q.status IN ({', '.join('?' for _ in filters.statuses)})"]
    params.extend(status.value for status in filters.statuses)
    if "/" in agency_id:  # a unit's queue: what it holds
        where.append(_held_by_sql(agency_id, params))
    if filters.unit_id is not None:  # what the unit holds, as its own queue has it (session 32)
        where.append(_held_by_sql(filters.unit_id, params))
    if filters.category is not None:
        where.append("q.category_key = ?")
        params.append(category_key(filters.category))
    if filters.awaiting_approval is not None:
        where.append(f"{_PENDING_DRAFTS} {'>' if filters.awaiting_approval else '='} 0")
    _overdue_and_after(where, params, filters.overdue, now, after)
    params.append(limit + 1)
    rows = tx.fetchall(
        f"SELECT {_READ_COLUMNS}, {_PENDING_DRAFTS} FROM followup_queue q WHERE {' AND '.join(where)} "
        "ORDER BY q.urgency, q.due_order, q.tracking_id LIMIT ?",
        params,
    )
    page, cursor = _cut(rows, limit)
    return [_view(row) for row in page], cursor


def _overdue_and_after(
    where: list[str], params: list[Any], overdue: bool | None, now: datetime, after: QueueCursor | None
) -> None:
    """The `overdue` filter and the keyset of the page after `after`, on the queue row `q`."""
    if overdue is not None:
        where.append(("" if overdue else "NOT ") + "(q.urgency = ? AND q.due_order < ?)")
        params.extend([AGENCY_DEADLINE, instant(now)])
    if after is not None:
        where.append("(q.urgency, q.due_order, q.tracking_id) > (?, ?, ?)")
        params.extend([after.urgency, after.due_order, after.tracking_id])


def _cut(rows: list[Any], limit: int) -> tuple[list[Any], QueueCursor | None]:
    """The page (`limit` of the `limit + 1` rows read) and the cursor of the next one, None on the last."""
    page = rows[:limit]
    if len(rows) <= limit:
        return page, None
    last = dict(zip(_COLUMNS, page[-1], strict=False))
    return page, QueueCursor(last["urgency"], last["due_order"], last["tracking_id"])


# What the worklist shows of the escalation, besides the queue row.
ESCALATION_FIELDS = ("kind", "reason", "from_level", "to_level", "escalated_at", "automatic")


def read_escalated(
    tx: Tx, agency_id: str, now: datetime, *, overdue: bool | None, after: QueueCursor | None, limit: int
) -> tuple[list[dict[str, Any]], QueueCursor | None]:
    """One page of the reports escalated to `agency_id` that it watches now (`followup_escalations`), in queue
    order, as the queue's view dicts with the escalation under `escalation`, and the cursor of the next page. The
    watcher is one of the view's `involved_agencies`: the projection recorded the escalation by
    `lapor.privacy.escalated_to`'s rule (present holding) and ended it with the holding."""
    params: list[Any] = [agency_id, *(status.value for status in HELD_STATUSES)]
    where = ["e.agency_id = ?", "e.watched = 1", f"q.status IN ({', '.join('?' for _ in HELD_STATUSES)})"]
    _overdue_and_after(where, params, overdue, now, after)
    params.append(limit + 1)
    escalation = ", ".join(f"e.{field}" for field in ESCALATION_FIELDS)
    rows = tx.fetchall(
        f"SELECT {_READ_COLUMNS}, {_PENDING_DRAFTS}, {escalation} FROM followup_escalations e "
        f"JOIN followup_queue q ON q.tracking_id = e.tracking_id WHERE {' AND '.join(where)} "
        "ORDER BY q.urgency, q.due_order, q.tracking_id LIMIT ?",
        params,
    )
    page, cursor = _cut(rows, limit)
    views = []
    for row in page:
        view = _view(row)
        view["escalation"] = dict(zip(ESCALATION_FIELDS, row[len(_COLUMNS) + 1 :], strict=True))
        view["escalation"]["automatic"] = bool(view["escalation"]["automatic"])
        if agency_id != NATIONAL_ADMIN_AGENCY:  # as in `escalated_to`: the national admin sees every report anyway
            view["involved_agencies"].append(agency_id)
        views.append(view)
    return views, cursor


def queued_row(tx: Tx, tracking_id: str) -> dict[str, Any] | None:
    row = tx.fetchone(f"SELECT {_READ_COLUMNS}, {_PENDING_DRAFTS} FROM followup_queue q WHERE q.tracking_id = ?",
                      (tracking_id,))
    return None if row is None else _view(row)


def _view(row: Sequence[Any]) -> dict[str, Any]:
    view = dict(zip(_COLUMNS, row, strict=False))
    view["drafts_awaiting_approval"] = int(row[len(_COLUMNS)])
    # Real booleans: lapor.privacy fails closed on anything that is not `False`.
    view["anonymous"] = bool(view["anonymous"])
    view["confidential"] = bool(view["confidential"])
    view["involved_agencies"] = orjson.loads(view["involved_agencies"])
    return view


def feedback_windows_passed(
    tx: Tx, now: datetime, limit: int, after: tuple[str, str] | None = None
) -> list[tuple[str, str]]:
    """Resolved reports whose reporter stayed silent past the feedback deadline (as far as the queue knows), oldest
    window first: their keys (due_order, tracking_id), after the key `after` when given (the closing loop pages on
    past the reports it could not close)."""
    where, params = "", [Status.resolved.value, instant(now)]
    if after is not None:
        where = " AND (due_order, tracking_id) > (?, ?)"
        params.extend(after)
    rows = tx.fetchall(
        "SELECT due_order, tracking_id FROM followup_queue WHERE status = ? AND deadline_kind = 'feedback' "
        f"AND due_order < ?{where} ORDER BY due_order, tracking_id LIMIT ?",
        (*params, limit),
    )
    return [(due_order, tracking_id) for due_order, tracking_id in rows]


def deadlines_until(tx: Tx, now: datetime, horizon: timedelta) -> list[tuple]:
    """(tracking_id, agency_id, unit_id, deadline_kind, deadline) of the agency deadlines running out between
    now and now + horizon."""
    return tx.fetchall(
        "SELECT tracking_id, agency_id, unit_id, deadline_kind, deadline FROM followup_queue "
        "WHERE status IN (?, ?) AND urgency = ? AND due_order >= ? AND due_order <= ?",
        (Status.disposed.value, Status.in_progress.value, AGENCY_DEADLINE, instant(now), instant(now + horizon)),
    )
