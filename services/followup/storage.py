"""The followup service's tables in the read-model database, and the small value conversions they share.

Two kinds of table live here:
- projections of the log, created by their subscriptions' setup and rebuilt from events: `followup_queue`, with
  `followup_queue_arrivals` (a record of each new item in a queue, which its handler writes in the same
  transaction) and `followup_escalations` (per report and agency it was escalated to above its holder: the
  latest such escalation, and whether the agency still watches it);
- the service's own state, which is not in the log: per-agency settings (two-step approval), follow-up drafts
  awaiting approval, notification targets (webhooks), the notification outbox and its deliveries.

SQL is the subset SQLite and PostgreSQL share (`lapor.db`). Booleans are stored as 0/1 integers and moments as
fixed-width UTC text (`instant`), which sorts in time order on both databases.
"""

from __future__ import annotations

from datetime import datetime

import orjson

from lapor.db import Database, Tx, add_column, sortable_moment

QUEUE_SCHEMA = """
CREATE TABLE IF NOT EXISTS followup_queue (
    tracking_id         TEXT PRIMARY KEY,
    version             BIGINT NOT NULL,
    agency_root         TEXT,
    agency_id           TEXT,
    unit_id             TEXT,
    status              TEXT NOT NULL,
    level               TEXT NOT NULL,
    kind                TEXT,
    category            TEXT,
    category_key        TEXT,
    title               TEXT,
    region_code         TEXT,
    channel             TEXT,
    anonymous           INTEGER NOT NULL,
    confidential        INTEGER NOT NULL,
    involved_agencies   TEXT NOT NULL,
    disposed_at         TEXT,
    deadline_kind       TEXT,
    deadline            TEXT,
    urgency             INTEGER NOT NULL,
    due_order           TEXT NOT NULL,
    follow_up_count     INTEGER NOT NULL,
    reopen_count        INTEGER NOT NULL,
    bounce_count        INTEGER NOT NULL,
    last_event_at       TEXT NOT NULL,
    reporter_ref        TEXT
);
CREATE INDEX IF NOT EXISTS followup_queue_by_agency
    ON followup_queue (agency_root, urgency, due_order, tracking_id);
CREATE INDEX IF NOT EXISTS followup_queue_by_deadline ON followup_queue (status, deadline_kind, due_order);
CREATE TABLE IF NOT EXISTS followup_queue_arrivals (
    arrival_id  TEXT PRIMARY KEY,
    agency_id   TEXT NOT NULL,
    tracking_id TEXT NOT NULL,
    kind        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    occurred_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS followup_queue_arrivals_by_time ON followup_queue_arrivals (occurred_at);
CREATE TABLE IF NOT EXISTS followup_escalations (
    tracking_id     TEXT NOT NULL,
    agency_id       TEXT NOT NULL,
    version         BIGINT NOT NULL,
    kind            TEXT NOT NULL,
    reason          TEXT NOT NULL,
    from_level      TEXT NOT NULL,
    to_level        TEXT NOT NULL,
    escalated_at    TEXT NOT NULL,
    automatic       INTEGER NOT NULL,
    watched         INTEGER NOT NULL,
    PRIMARY KEY (tracking_id, agency_id)
);
CREATE INDEX IF NOT EXISTS followup_escalations_by_agency ON followup_escalations (agency_id, watched)
"""

SERVICE_SCHEMA = """
CREATE TABLE IF NOT EXISTS followup_approval_settings (
    agency_id   TEXT PRIMARY KEY,
    required    INTEGER NOT NULL,
    updated_by  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    version     BIGINT
);
CREATE TABLE IF NOT EXISTS followup_drafts (
    draft_id        TEXT PRIMARY KEY,
    tracking_id     TEXT NOT NULL,
    agency_id       TEXT NOT NULL,
    text            TEXT NOT NULL,
    attachments     TEXT NOT NULL,
    drafted_by      TEXT NOT NULL,
    drafted_at      TEXT NOT NULL,
    status          TEXT NOT NULL,
    reviewed_by     TEXT,
    reviewed_at     TEXT,
    review_note     TEXT,
    follow_up_id    TEXT NOT NULL,
    posted_version  BIGINT,
    holding         BIGINT
);
CREATE INDEX IF NOT EXISTS followup_drafts_by_complaint ON followup_drafts (tracking_id, status);
CREATE TABLE IF NOT EXISTS followup_targets (
    target_id   TEXT PRIMARY KEY,
    agency_id   TEXT NOT NULL,
    channel     TEXT NOT NULL,
    address     TEXT NOT NULL,
    secret      TEXT NOT NULL,
    kinds       TEXT NOT NULL,
    active      INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    every_kind  INTEGER
);
CREATE INDEX IF NOT EXISTS followup_targets_by_agency ON followup_targets (agency_id, active);
CREATE TABLE IF NOT EXISTS followup_notifications (
    notification_id TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    agency_id       TEXT NOT NULL,
    tracking_id     TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS followup_deliveries (
    notification_id TEXT NOT NULL,
    target_id       TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at TEXT NOT NULL,
    lease_until     TEXT,
    last_error      TEXT,
    delivered_at    TEXT,
    PRIMARY KEY (notification_id, target_id)
);
CREATE INDEX IF NOT EXISTS followup_deliveries_due ON followup_deliveries (status, next_attempt_at)
"""


def _run(tx: Tx, schema: str) -> None:
    for statement in schema.split(";"):
        if statement.strip():
            tx.execute(statement)


def install_queue(tx: Tx) -> None:
    """The queue projection's tables (its subscription's setup)."""
    _run(tx, QUEUE_SCHEMA)


def install_service_tables(db: Database) -> None:
    """The service's own state, which `lapor rebuild` must neither create nor compare: settings, drafts,
    notification targets, the outbox and its deliveries. Idempotent; the router and the loops call it."""
    db.executescript(SERVICE_SCHEMA)
    # Drafts recorded before session 24 have no `holding` (the report's holding they were made in, see
    # `approval.of_present_holding`): NULL for them.
    add_column(db, "followup_drafts", "holding", "BIGINT")
    add_column(db, "followup_targets", "every_kind", "INTEGER")
    # An agency's approval setting counts its changes (`version`, what its PUT's If-Match names, session 31); one
    # set before then is at version 1.
    add_column(db, "followup_approval_settings", "version", "BIGINT")
    with db.transaction() as tx:
        tx.execute("UPDATE followup_approval_settings SET version = 1 WHERE version IS NULL")
    _every_kind_of_old_targets(db)


# Every kind of notification there was until session 29 added `escalation.watched`: the kinds a webhook registered
# without `kinds` was given then, the list written whole.
_KINDS_BEFORE_SESSION_29 = frozenset({"queue.item_added", "deadline.approaching"})


def _every_kind_of_old_targets(db: Database) -> None:
    """Say of each target recorded before session 30 (`every_kind` NULL) whether it asked for every kind. Its row
    holds only the list of kinds: the default wrote every kind there was, so a list holding every kind of before
    session 29 asked for everything and gets the kinds added since and later (a webhook registered before
    `escalation.watched` heard of no watch until it was registered again); a list naming fewer keeps its kinds.
    Idempotent: a row once judged, or written since, is never NULL."""
    with db.transaction() as tx:
        for target_id, kinds in tx.fetchall("SELECT target_id, kinds FROM followup_targets WHERE every_kind IS NULL"):
            every = set(orjson.loads(kinds)) >= _KINDS_BEFORE_SESSION_29
            tx.execute(
                "UPDATE followup_targets SET every_kind = ? WHERE target_id = ? AND every_kind IS NULL",
                (int(every), target_id),
            )


# Sorts after every real moment: the sort key of a queue item without a running deadline.
NEVER = "9999-12-31T23:59:59.999999+00:00"


instant = sortable_moment


def moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
