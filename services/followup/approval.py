"""Two-step approval of follow-ups (persetujuan tindak lanjut), optional per agency.

When an agency turns it on, a public follow-up written by its admin (or a unit officer) is a *draft*: the liaison
officer (pejabat penghubung) approves it, and only then is it posted (FollowUpPosted, naming both `drafted_by`
and `approved_by`), or sends it back with a note. A liaison officer's own follow-ups, internal notes and the
Ombudsman's follow-ups are posted directly.

Drafts are the followup service's own state (`followup_drafts`), not events: until approved, a draft is a
working paper between two officers, not something that happened to the report. The log records what became
public and both people behind it; the draft table keeps the ones sent back, with the liaison's note.

A draft belongs to the report's present holding: the agency that held it when it was drafted, in that same holding
(`of_present_holding`). When the report changes hands (returned as bukan wewenang and disposed again, or taken
over by the Ombudsman), the drafts of the earlier holding are left behind: kept as they were, for the record, but
never listed, approved or sent back again, nor counted in the queue (session 24: the next agency's liaison officer
could approve the previous agency's text in its own name).

A draft's life: `pending` → `approving` (claimed by an approver while the follow-up is appended) → `approved`;
or `pending` → `sent_back`. The follow-up of a draft has a fixed id and a deterministic event id, so an approval
retried after a crash, or made by two liaison officers at once, posts it once.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson

from lapor.complaint import ComplaintState
from lapor.db import Tx
from lapor.privacy import ancestors_and_self
from schemas.events import Attachment
from services.followup.decide import AttachmentIn
from services.followup.storage import instant, moment


class DraftStatus(StrEnum):
    pending = "pending"  # waiting for the liaison officer
    approving = "approving"  # an approver is posting it
    approved = "approved"  # posted as a follow-up
    sent_back = "sent_back"  # returned to the drafter with a note


@dataclass(frozen=True)
class ApprovalSetting:
    agency_id: str
    required: bool
    set_for: str | None  # the agency whose setting applies (itself or one above it); None: never set
    updated_by: str | None
    updated_at: datetime | None
    version: int  # of the agency's own setting: how often it was set (0: never; it inherits or is off)


def approval_setting(tx: Tx, agency_id: str) -> ApprovalSetting:
    """The setting that applies to `agency_id`: its own, else that of the nearest agency above it; off when none
    is set."""
    scope = ancestors_and_self(agency_id)
    rows = tx.fetchall(
        f"SELECT agency_id, required, updated_by, updated_at, version FROM followup_approval_settings "
        f"WHERE agency_id IN ({', '.join('?' for _ in scope)})",
        scope,
    )
    own = next((row[4] for row in rows if row[0] == agency_id), 0)
    if not rows:
        return ApprovalSetting(agency_id, False, None, None, None, own)
    set_for, required, updated_by, updated_at, _ = max(rows, key=lambda row: len(row[0]))
    return ApprovalSetting(agency_id, bool(required), set_for, updated_by, moment(updated_at), own)


def set_approval(
    tx: Tx, agency_id: str, *, required: bool, by: str, now: datetime, if_match: int | None = None
) -> bool:
    """Set the agency's own setting, one version on; with `if_match`, only if its own setting is at that version
    (0: never set). False when it is not: nothing written. Each statement checks and writes at once, so of two
    admins setting it from one reading one is refused, on PostgreSQL as on SQLite."""
    values = (agency_id, int(required), by, instant(now))
    if if_match is None:
        tx.execute(
            "INSERT INTO followup_approval_settings (agency_id, required, updated_by, updated_at, version) "
            "VALUES (?, ?, ?, ?, 1) ON CONFLICT (agency_id) DO UPDATE SET required = excluded.required, "
            "updated_by = excluded.updated_by, updated_at = excluded.updated_at, "
            "version = followup_approval_settings.version + 1",
            values,
        )
        return True
    if if_match == 0:
        return bool(
            tx.execute(
                "INSERT INTO followup_approval_settings (agency_id, required, updated_by, updated_at, version) "
                "VALUES (?, ?, ?, ?, 1) ON CONFLICT (agency_id) DO NOTHING",
                values,
            ).rowcount
        )
    return bool(
        tx.execute(
            "UPDATE followup_approval_settings SET required = ?, updated_by = ?, updated_at = ?, version = version + 1 "
            "WHERE agency_id = ? AND version = ?",
            (int(required), by, instant(now), agency_id, if_match),
        ).rowcount
    )


@dataclass(frozen=True)
class Draft:
    draft_id: str
    tracking_id: str
    agency_id: str
    text: str
    attachments: tuple[AttachmentIn, ...]  # as the officer gave them, so approving re-posts them as given
    drafted_by: str
    drafted_at: datetime
    status: DraftStatus
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_note: str | None
    follow_up_id: str  # the id its follow-up is posted under
    posted_version: int | None  # the complaint version of the posted follow-up
    holding: int | None  # the report's `bounce_count` when drafted (None: drafted before session 24)

    def as_data(self) -> dict[str, Any]:
        """The draft as event-like data, for `lapor.privacy.redact_event_data`."""
        return {
            "draft_id": self.draft_id,
            "text": self.text,
            "public": True,
            "attachments": [attachment.model_dump(mode="json") for attachment in self.attachments],
            "drafted_by": self.drafted_by,
            "drafted_at": self.drafted_at,
            "status": self.status.value,
            "reviewed_by": self.reviewed_by,
            "reviewed_at": self.reviewed_at,
            "note": self.review_note,
            "follow_up_id": self.follow_up_id,
        }


_COLUMNS = (
    "draft_id, tracking_id, agency_id, text, attachments, drafted_by, drafted_at, status, reviewed_by, "
    "reviewed_at, review_note, follow_up_id, posted_version, holding"
)


def _draft(row: Sequence[Any]) -> Draft:
    (draft_id, tracking_id, agency_id, text, attachments, drafted_by, drafted_at, status, reviewed_by, reviewed_at,
     review_note, follow_up_id, posted_version, holding) = row
    drafted = moment(drafted_at)
    assert drafted is not None
    return Draft(
        draft_id,
        tracking_id,
        agency_id,
        text,
        tuple(AttachmentIn.model_validate(item) for item in orjson.loads(attachments)),
        drafted_by,
        drafted,
        DraftStatus(status),
        reviewed_by,
        moment(reviewed_at),
        review_note,
        follow_up_id,
        posted_version,
        holding,
    )


def of_present_holding(draft: Draft, state: ComplaintState) -> bool:
    """Whether `draft` was made by the agency holding the report now, since the report last reached it. A report
    changes hands only by a disposition after a return, which counts a bounce (`bounce_count`), or by the
    Ombudsman's takeover, which changes the agency; so the agency and the bounce count name a holding exactly, also
    on a training clock that stands still between moves. While routing holds the report no draft is of it, even
    for the national admin agency `state.owner` falls back to (`kemenpanrb` takes dispositions like any other)."""
    if state.agency_id is None or draft.agency_id != state.agency_id:
        return False
    if draft.holding is None:  # drafted before session 24: only the time it was made tells
        return state.disposed_at is not None and draft.drafted_at >= state.disposed_at
    return draft.holding == state.bounce_count


# SQL for "draft `d` is of the present holding of queue row `q`": `of_present_holding` on the queue's columns.
PRESENT_HOLDING_SQL = (
    "d.agency_id = q.agency_id "
    "AND (d.holding = q.bounce_count OR (d.holding IS NULL AND d.drafted_at >= q.disposed_at))"
)


def create_draft(
    tx: Tx,
    *,
    state: ComplaintState,
    text: str,
    attachments: Sequence[Attachment],
    drafted_by: str,
    now: datetime,
) -> Draft:
    """A draft of the agency holding `state` (in progress), in its present holding."""
    assert state.agency_id is not None  # a follow-up is written only while an agency holds the report
    draft_id = "dr_" + secrets.token_hex(8)
    tx.execute(
        f"INSERT INTO followup_drafts ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?, NULL, ?)",
        (
            draft_id,
            state.tracking_id,
            state.agency_id,
            text,
            orjson.dumps([attachment.model_dump(mode="json") for attachment in attachments]).decode(),
            drafted_by,
            instant(now),
            DraftStatus.pending.value,
            f"fu-{draft_id}",
            state.bounce_count,
        ),
    )
    found = get_draft(tx, state.tracking_id, draft_id)
    assert found is not None
    return found


def get_draft(tx: Tx, tracking_id: str, draft_id: str) -> Draft | None:
    row = tx.fetchone(
        f"SELECT {_COLUMNS} FROM followup_drafts WHERE draft_id = ? AND tracking_id = ?", (draft_id, tracking_id)
    )
    return None if row is None else _draft(row)


def drafts_of(tx: Tx, tracking_id: str, status: DraftStatus | None = None) -> list[Draft]:
    sql = f"SELECT {_COLUMNS} FROM followup_drafts WHERE tracking_id = ?"
    params: list[Any] = [tracking_id]
    if status is not None:
        sql += " AND status = ?"
        params.append(status.value)
    return [_draft(row) for row in tx.fetchall(sql + " ORDER BY drafted_at, draft_id", params)]


def claim_for_approval(tx: Tx, draft_id: str, *, by: str, now: datetime) -> bool:
    """Mark the draft as being approved by `by`; False when it is no longer waiting. An `approving` draft may be
    claimed again: its approval was interrupted, and posting it again is idempotent."""
    return bool(
        tx.execute(
            "UPDATE followup_drafts SET status = ?, reviewed_by = ?, reviewed_at = ? "
            "WHERE draft_id = ? AND status IN (?, ?)",
            (
                DraftStatus.approving.value,
                by,
                instant(now),
                draft_id,
                DraftStatus.pending.value,
                DraftStatus.approving.value,
            ),
        ).rowcount
    )


def settle_approval(tx: Tx, draft_id: str, *, posted_version: int | None, approved_by: str | None) -> None:
    """After the approver's append: `approved` with the version of the posted follow-up, or back to `pending`
    when nothing was posted (a stale If-Match, a report no longer in progress)."""
    if posted_version is None:
        tx.execute(
            "UPDATE followup_drafts SET status = ?, reviewed_by = NULL, reviewed_at = NULL "
            "WHERE draft_id = ? AND status = ?",
            (DraftStatus.pending.value, draft_id, DraftStatus.approving.value),
        )
    else:
        tx.execute(
            "UPDATE followup_drafts SET status = ?, posted_version = ?, reviewed_by = ? WHERE draft_id = ?",
            (DraftStatus.approved.value, posted_version, approved_by, draft_id),
        )


def send_back(tx: Tx, draft_id: str, *, by: str, note: str, now: datetime) -> bool:
    """False when the draft is no longer waiting (approved, being approved, or already sent back)."""
    return bool(
        tx.execute(
            "UPDATE followup_drafts SET status = ?, reviewed_by = ?, reviewed_at = ?, review_note = ? "
            "WHERE draft_id = ? AND status = ?",
            (DraftStatus.sent_back.value, by, instant(now), note, draft_id, DraftStatus.pending.value),
        ).rowcount
    )
