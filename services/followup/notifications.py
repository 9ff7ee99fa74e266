"""Notifications out: a record for each new item in an agency's queue, each report escalated to an agency that
watches it and each approaching deadline, delivered to the targets the agency subscribed (webhooks) by one adapter
per channel, with retries and backoff.

1. A record enters the outbox (`followup_notifications`) once, by a deterministic id, and is fanned out there and
   then: one `followup_deliveries` row per active target of the agency, or of an agency above it, that asked
   for the kind. Two producers: the queue projection records each new item in a queue and each new watch of an
   escalation (`followup_queue_arrivals`, in the transaction of its checkpoint, so exactly once) and the
   notification loop posts the recent ones (`post_arrivals`); the deadline scan records a warning per deadline
   about to pass.
2. The delivery loop (`Deliverer`) claims due deliveries under a lease (two processes never send one at once),
   hands each to the adapter of its target's channel and records the outcome: delivered, tried again later with
   exponential backoff, or failed for good.

Delivery is at least once: a crash between sending and recording sends again, so receivers dedupe on
`X-Lapor-Delivery` (the notification id, the same on every attempt). The body carries no free text and nothing
about the reporter: ids, status, deadlines. The receiver fetches the report with its own token, so what it sees is
decided by `lapor.privacy` like every other view.

Only the webhook adapter exists; an email or SMS adapter is another `Adapter` registered under its channel name.
Webhooks go only where `webhook_policy` allows (`lapor.egress`): the address is judged when an agency registers
it and again, on the addresses actually connected to, at every delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final, Literal, Protocol

import httpx2
import orjson

from lapor.clock import Clock, SystemClock
from lapor.db import Database, Tx
from lapor.egress import DestinationPolicy, DestinationRefused, guarded_client
from lapor.privacy import ancestors_and_self
from lapor.settings import Settings
from services.followup.storage import instant, moment

log = logging.getLogger("lapor.followup.notifications")

ITEM_ADDED: Final = "queue.item_added"
DEADLINE_APPROACHING: Final = "deadline.approaching"
ESCALATION_WATCHED: Final = "escalation.watched"  # a report escalated to the agency, which watches it (session 29)
NotificationKind = Literal["queue.item_added", "deadline.approaching", "escalation.watched"]
KINDS: tuple[NotificationKind, ...] = (ITEM_ADDED, DEADLINE_APPROACHING, ESCALATION_WATCHED)

WEBHOOK = "webhook"
# Active webhooks an agency (or a unit) may have at once (session 32): every notification is posted to each, so an
# agency admin's token, or a script gone wrong, that registered thousands made every queue change fan out to
# thousands of deliveries, on the shared delivery loop, retried for hours.
MAX_WEBHOOKS = 20

MAX_ATTEMPTS = 8
FIRST_RETRY = timedelta(seconds=30)
LAST_RETRY = timedelta(hours=1)  # backoff doubles from FIRST_RETRY up to this
WEBHOOK_TIMEOUT = 10.0  # seconds
LEASE = timedelta(minutes=2)  # longer than one delivery may take (WEBHOOK_TIMEOUT per connection attempt)
# An arrival older than this (a projection catching up on old history) is not posted: nobody wants last year's
# queue items pushed to their webhook today.
STALE_AFTER = timedelta(hours=24)


def notification_id(cause: str) -> str:
    """The same id for the same cause, so a producer that runs twice records one notification (a 128-bit hash:
    the queue projection makes one per arrival, and a uuid5 costs ten times as much)."""
    return hashlib.blake2b(cause.encode(), digest_size=16, person=b"lapor-notify").hexdigest()


@dataclass(frozen=True)
class Notification:
    notification_id: str
    kind: str
    agency_id: str  # whose queue: the deliveries go to this agency's targets and those of the agencies above it
    tracking_id: str
    payload: Mapping[str, Any]
    created_at: datetime

    def body(self) -> dict[str, Any]:
        return {
            "id": self.notification_id,
            "kind": self.kind,
            "agency_id": self.agency_id,
            "tracking_id": self.tracking_id,
            "created_at": self.created_at.isoformat(),
            "data": dict(self.payload),
        }


@dataclass(frozen=True)
class Target:
    """Where an agency wants its notifications: a webhook URL (channel `webhook`) and its signing secret."""

    target_id: str
    agency_id: str
    channel: str
    address: str
    secret: str
    kinds: tuple[str, ...]  # those it receives: every kind there is now when `every_kind`
    active: bool
    created_by: str
    created_at: datetime
    every_kind: bool = False  # registered without naming kinds: it gets the kinds added later too


class DeliveryFailed(Exception):
    """The target did not take the notification. `permanent`: trying again will not help (e.g. HTTP 404)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Adapter(Protocol):
    """Delivers one notification to one target of its channel; raises DeliveryFailed when it was not taken."""

    channel: str

    def deliver(self, notification: Notification, target: Target) -> None: ...


# -- the outbox ---------------------------------------------------------------------------------------------


def record_notification(tx: Tx, notification: Notification) -> bool:
    """Write `notification` and a pending delivery per interested target; False when it was already recorded."""
    inserted = tx.execute(
        "INSERT INTO followup_notifications (notification_id, kind, agency_id, tracking_id, payload, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (notification_id) DO NOTHING",
        (
            notification.notification_id,
            notification.kind,
            notification.agency_id,
            notification.tracking_id,
            orjson.dumps(dict(notification.payload)).decode(),
            instant(notification.created_at),
        ),
    ).rowcount
    if not inserted:
        return False
    scope = ancestors_and_self(notification.agency_id)
    rows = tx.fetchall(
        f"SELECT target_id, kinds, every_kind FROM followup_targets WHERE active = 1 "
        f"AND agency_id IN ({_marks(scope)})",
        scope,
    )
    for target_id, kinds, every_kind in rows:
        if every_kind or notification.kind in orjson.loads(kinds):
            tx.execute(
                "INSERT INTO followup_deliveries (notification_id, target_id, status, attempts, next_attempt_at) "
                "VALUES (?, ?, 'pending', 0, ?) ON CONFLICT (notification_id, target_id) DO NOTHING",
                (notification.notification_id, target_id, instant(notification.created_at)),
            )
    return True


def post_arrivals(tx: Tx, now: datetime, *, limit: int = 500) -> int:
    """Turn the queue projection's recent arrivals (new items in a queue, new watches of an escalation) into
    notifications of their kind; returns how many. Arrivals older than STALE_AFTER are left alone."""
    rows = tx.fetchall(
        "SELECT a.arrival_id, a.agency_id, a.tracking_id, a.kind, a.payload, a.occurred_at "
        "FROM followup_queue_arrivals a "
        "WHERE a.occurred_at >= ? AND NOT EXISTS "
        "(SELECT 1 FROM followup_notifications n WHERE n.notification_id = a.arrival_id) "
        "ORDER BY a.occurred_at LIMIT ?",
        (instant(now - STALE_AFTER), limit),
    )
    for arrival_id, agency_id, tracking_id, kind, payload, occurred_at in rows:
        created = moment(occurred_at)
        assert created is not None
        record_notification(tx, Notification(arrival_id, kind, agency_id, tracking_id, orjson.loads(payload), created))
    return len(rows)


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" for _ in values)


# -- targets ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetStats:
    target: Target
    delivered: int
    pending: int
    failed: int
    last_error: str | None


def each_kind_once(kinds: Sequence[str]) -> tuple[str, ...]:
    """The kinds a target names, each once, in the order first named: a set in substance. Until session 30 a
    registration naming a kind twice was stored and shown so; rows stored then read as if named once."""
    return tuple(dict.fromkeys(kinds))


class TooManyTargets(Exception):
    """The agency has MAX_WEBHOOKS active webhooks already."""


def create_target(
    tx: Tx, *, agency_id: str, channel: str, address: str, kinds: Sequence[str] | None, created_by: str,
    now: datetime,
) -> Target:
    """A target of the kinds named, or with `kinds` None of every kind: those there are now and any added later.
    Raises TooManyTargets when the agency has MAX_WEBHOOKS active targets of the channel (counted under a lock on
    PostgreSQL, where two registrations at once would both count one fewer; SQLite's writes take turns)."""
    if tx.dialect == "postgresql":
        tx.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"followup_targets:{agency_id}",))
    active = tx.fetchone(
        "SELECT count(*) FROM followup_targets WHERE agency_id = ? AND channel = ? AND active = 1", (agency_id, channel)
    )
    if active is not None and active[0] >= MAX_WEBHOOKS:
        raise TooManyTargets(agency_id)
    target = Target(
        target_id="wh_" + secrets.token_hex(8),
        agency_id=agency_id,
        channel=channel,
        address=address,
        secret=secrets.token_urlsafe(32),
        kinds=KINDS if kinds is None else each_kind_once(kinds),
        active=True,
        created_by=created_by,
        created_at=now,
        every_kind=kinds is None,
    )
    tx.execute(
        "INSERT INTO followup_targets (target_id, agency_id, channel, address, secret, kinds, active, created_by, "
        "created_at, every_kind) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
        (
            target.target_id,
            agency_id,
            channel,
            address,
            target.secret,
            orjson.dumps(list(target.kinds)).decode(),
            created_by,
            instant(now),
            int(target.every_kind),
        ),
    )
    return target


_TARGET_COLUMNS = "target_id, agency_id, channel, address, secret, kinds, active, created_by, created_at, every_kind"


def _target(row: Sequence[Any]) -> Target:
    target_id, agency_id, channel, address, secret, kinds, active, created_by, created_at, every_kind = row
    created = moment(created_at)
    assert created is not None
    return Target(
        target_id, agency_id, channel, address, secret, KINDS if every_kind else each_kind_once(orjson.loads(kinds)),
        bool(active), created_by, created, bool(every_kind),
    )


def list_targets(tx: Tx, agency_id: str) -> list[TargetStats]:
    rows = tx.fetchall(
        f"SELECT {_TARGET_COLUMNS} FROM followup_targets WHERE agency_id = ? ORDER BY created_at, target_id",
        (agency_id,),
    )
    stats = []
    for row in rows:
        target = _target(row)
        counts = dict(
            tx.fetchall(
                "SELECT status, count(*) FROM followup_deliveries WHERE target_id = ? GROUP BY status",
                (target.target_id,),
            )
        )
        last_error = tx.scalar(
            "SELECT last_error FROM followup_deliveries WHERE target_id = ? AND last_error IS NOT NULL "
            "ORDER BY next_attempt_at DESC LIMIT 1",
            (target.target_id,),
        )
        stats.append(
            TargetStats(
                target,
                int(counts.get("delivered", 0)),
                int(counts.get("pending", 0)),
                int(counts.get("failed", 0)),
                last_error,
            )
        )
    return stats


def deactivate_target(tx: Tx, agency_id: str, target_id: str) -> bool:
    """Stop sending to the target (what is still pending is cancelled); False when the agency has no such target."""
    changed = tx.execute(
        "UPDATE followup_targets SET active = 0 WHERE target_id = ? AND agency_id = ? AND active = 1",
        (target_id, agency_id),
    ).rowcount
    if changed:
        tx.execute(
            "UPDATE followup_deliveries SET status = 'cancelled' WHERE target_id = ? AND status = 'pending'",
            (target_id,),
        )
    return bool(changed)


# -- delivery -----------------------------------------------------------------------------------------------


def backoff(attempts: int) -> timedelta:
    """Wait before attempt `attempts + 1`: 30 s, 1 min, 2 min, ... at most an hour."""
    return min(FIRST_RETRY * 2 ** (attempts - 1), LAST_RETRY)


@dataclass(frozen=True)
class _Claimed:
    notification: Notification
    target: Target
    attempts: int  # before this one
    lease_until: str  # the lease this process holds: another process's claim or a removal replaces or ends it


# Why a notification must no longer be sent (None: it still holds), asked just before each attempt.
Outdated = Callable[[Notification, datetime], str | None]


class Deliverer:
    """Sends what is due. `run_once` is the delivery loop's tick; it is safe to run in several threads or
    processes at once (each delivery is leased by one of them). `outdated` says, just before an attempt, when what
    a notification tells is no longer true (a warning of a deadline already answered): it is cancelled unsent."""

    def __init__(
        self, db: Database, clock: Clock, adapters: Mapping[str, Adapter], *, batch_size: int = 50,
        outdated: Outdated | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._adapters = dict(adapters)
        self._batch_size = batch_size
        self._outdated = outdated

    def run_once(self) -> int:
        """Deliver the due notifications; returns how many were attempted."""
        attempted = 0
        for item in self._claim(self._clock.now()):
            # A batch is sent one by one: the lease of a later item may have run out meanwhile (slow receivers),
            # and another process claimed and sent it, or its webhook was removed.
            now = self._clock.now()
            held = self._renew(item, now)
            if held is None:
                continue
            why = self._outdated(held.notification, now) if self._outdated is not None else None
            if why is not None:
                self._cancel(held, why)
                continue
            self._attempt(held)
            attempted += 1
        return attempted

    def _cancel(self, item: _Claimed, why: str) -> None:
        """Cancel a delivery this process holds, unsent, saying why."""
        with self._db.transaction() as tx:
            tx.execute(
                "UPDATE followup_deliveries SET status = 'cancelled', lease_until = NULL, last_error = ? "
                "WHERE notification_id = ? AND target_id = ? AND status = 'pending' AND lease_until = ?",
                (why, item.notification.notification_id, item.target.target_id, item.lease_until),
            )

    def _renew(self, item: _Claimed, now: datetime) -> _Claimed | None:
        """`item` with a fresh lease, or None when this process no longer holds it (nothing may be sent)."""
        lease_until = instant(now + LEASE)
        with self._db.transaction() as tx:
            renewed = tx.execute(
                "UPDATE followup_deliveries SET lease_until = ? WHERE notification_id = ? AND target_id = ? "
                "AND status = 'pending' AND lease_until = ?",
                (lease_until, item.notification.notification_id, item.target.target_id, item.lease_until),
            ).rowcount
        return replace(item, lease_until=lease_until) if renewed else None

    def _claim(self, now: datetime) -> list[_Claimed]:
        at = instant(now)
        with self._db.transaction() as tx:
            rows = tx.fetchall(
                "SELECT n.notification_id, n.kind, n.agency_id, n.tracking_id, n.payload, n.created_at, d.attempts, "
                + ", ".join(f"t.{column.strip()}" for column in _TARGET_COLUMNS.split(","))
                + " FROM followup_deliveries d"
                " JOIN followup_notifications n ON n.notification_id = d.notification_id"
                " JOIN followup_targets t ON t.target_id = d.target_id"
                " WHERE d.status = 'pending' AND d.next_attempt_at <= ?"
                " AND (d.lease_until IS NULL OR d.lease_until < ?)"
                " ORDER BY d.next_attempt_at LIMIT ?",
                (at, at, self._batch_size),
            )
            claimed = []
            lease_until = instant(now + LEASE)
            for row in rows:
                notification_id_, kind, agency_id, tracking_id, payload, created_at, attempts = row[:7]
                target = _target(row[7:])
                taken = tx.execute(
                    "UPDATE followup_deliveries SET lease_until = ? WHERE notification_id = ? AND target_id = ? "
                    "AND status = 'pending' AND (lease_until IS NULL OR lease_until < ?)",
                    (lease_until, notification_id_, target.target_id, at),
                ).rowcount
                if taken:
                    created = moment(created_at)
                    assert created is not None
                    notification = Notification(
                        notification_id_, kind, agency_id, tracking_id, orjson.loads(payload), created
                    )
                    claimed.append(_Claimed(notification, target, int(attempts), lease_until))
        return claimed

    def _attempt(self, item: _Claimed) -> None:
        adapter = self._adapters.get(item.target.channel)
        error: DeliveryFailed | None = None
        if adapter is None:
            error = DeliveryFailed(f"no adapter delivers channel {item.target.channel!r}", permanent=True)
        else:
            try:
                adapter.deliver(item.notification, item.target)
            except DeliveryFailed as failed:
                error = failed
        self._record(item, error, self._clock.now())

    def _record(self, item: _Claimed, error: DeliveryFailed | None, now: datetime) -> None:
        attempts = item.attempts + 1
        key = (item.notification.notification_id, item.target.target_id)
        with self._db.transaction() as tx:
            if error is None:
                tx.execute(
                    "UPDATE followup_deliveries SET status = 'delivered', attempts = ?, delivered_at = ?, "
                    "lease_until = NULL, last_error = NULL WHERE notification_id = ? AND target_id = ?",
                    (attempts, instant(now), *key),
                )
                return
            gives_up = error.permanent or attempts >= MAX_ATTEMPTS
            # Only under the lease this attempt was made in: once it ran out, another process may have delivered
            # it (a retry would send it twice), and a removed webhook's deliveries are cancelled for good.
            recorded = tx.execute(
                "UPDATE followup_deliveries SET status = ?, attempts = ?, next_attempt_at = ?, lease_until = NULL, "
                "last_error = ? WHERE notification_id = ? AND target_id = ? AND status = 'pending' "
                "AND lease_until = ?",
                (
                    "failed" if gives_up else "pending",
                    attempts,
                    instant(now if gives_up else now + backoff(attempts)),
                    str(error)[:2000],
                    *key,
                    item.lease_until,
                ),
            ).rowcount
            log.warning(
                "notification %s to %s: attempt %d failed%s: %s",
                *key,
                attempts,
                (", giving up" if gives_up else "") if recorded else " (its lease was lost: not recorded)",
                error,
            )


# -- the webhook adapter ------------------------------------------------------------------------------------

SIGNATURE_HEADER = "X-Lapor-Signature"
TIMESTAMP_HEADER = "X-Lapor-Timestamp"
DELIVERY_HEADER = "X-Lapor-Delivery"
EVENT_HEADER = "X-Lapor-Event"
# Answers below 500 that another attempt may change; any other (a 4xx, a redirect) will not change by itself.
_RETRYABLE_CLIENT_ERRORS = frozenset({408, 425, 429})


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" keyed with the target's secret>`. The timestamp is signed
    too, so a receiver that refuses old timestamps cannot be fed a recorded delivery again."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def webhook_policy(settings: Settings) -> DestinationPolicy:
    """Where webhooks may go: public internet addresses, the networks in LAPOR_WEBHOOK_ALLOWED_NETWORKS, and outside
    production this machine too (development receivers, like the plain http that `api.WebhookRequest` allows
    to localhost); through LAPOR_WEBHOOK_PROXY when it is set."""
    return DestinationPolicy(
        settings.webhook_allowed_networks, allow_loopback=not settings.production, proxy=settings.webhook_proxy
    )


class WebhookAdapter:
    """POSTs the notification as JSON, signed with HMAC-SHA256; any 2xx answer is a delivery. Only to addresses
    `policy` allows, judged on the address connected to (a refused one is a permanent failure and nothing is sent).
    Redirects are not followed (a webhook must name its real address)."""

    channel = WEBHOOK

    def __init__(self, policy: DestinationPolicy, *, clock: Clock | None = None) -> None:
        self._client = guarded_client(policy, timeout=WEBHOOK_TIMEOUT)
        # Receivers compare the signed timestamp with their own clock, so it is real time even in training mode.
        self._clock = clock or SystemClock()

    def close(self) -> None:
        self._client.close()

    def deliver(self, notification: Notification, target: Target) -> None:
        body = orjson.dumps(notification.body())
        timestamp = str(int(self._clock.now().timestamp()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "LAPOR-webhook/1",
            DELIVERY_HEADER: notification.notification_id,
            EVENT_HEADER: notification.kind,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(target.secret, timestamp, body),
        }
        try:
            response = self._client.post(target.address, content=body, headers=headers)
        except DestinationRefused as refused:
            raise DeliveryFailed(f"not sent: {refused}", permanent=True) from refused
        except httpx2.HTTPError as error:
            raise DeliveryFailed(f"{type(error).__name__}: {error}") from error
        if response.is_success:
            return
        status = response.status_code
        raise DeliveryFailed(
            f"HTTP {status} from the webhook",  # not its address: the log has this too, and it may hold a secret
            permanent=status < 500 and status not in _RETRYABLE_CLIENT_ERRORS,
        )
