"""Submitting a report, whatever the channel: tracking ID, identity to the vault, masking, duplicate suspicion,
the append, and the receipt — the same receipt again for a retry (see `idempotency.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from lapor.auth import reporter_token_hash
from lapor.commands import run_command
from lapor.complaint import ComplaintState
from lapor.context import ServiceContext
from lapor.principal import Principal, Role
from lapor.privacy import MASKED_BY, MASKING, ORIGINAL_REF, conceal_requester
from lapor.problems import Conflict, ValidationProblem
from lapor.store import NewEvent, RecordedEvent
from lapor.tracking import stream_of
from services.intake.decide import SubmitComplaint, decide_submission
from services.intake.duplicates import area_of, comparable_text, suspects
from services.intake.idempotency import IdDerivation, SubmissionIds
from services.intake.leftovers import erased_unless_recorded
from services.intake.projections import duplicate_candidates
from services.intake.sms import title_of
from services.intake.text import mask_personal_data

# Attempts at a free tracking ID; with 2**40 IDs a second attempt is already rare.
MAX_ID_ATTEMPTS = 8
# How far ahead of this system's clock a channel's `received_at` may be (a gateway's clock a little fast): beyond it
# the moment cannot have happened yet, and the report is refused rather than recorded with a time to come.
RECEIVED_AT_LEEWAY = timedelta(minutes=5)
# The earliest `received_at` taken (session 32): a moment before it is a clock's zero, not a report's arrival (Go's
# and .NET's zero time 0001-01-01, the Unix epoch 1970-01-01, NTP's and spreadsheets' 1900), which was recorded as
# given, so a report filed today said it came in before LAPOR! existed and before most of its channels did.
EARLIEST_RECEIVED_AT = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Report:
    """A validated report from any channel, as written (before masking and the vault)."""

    command: SubmitComplaint  # tracking_id, reporter_token_hash and reporter_ref are filled in by `submit`
    identity: Mapping[str, Any] | None = None
    received_at: datetime | None = None  # when the channel (SMS gateway, integrated system) received it
    # No title of its own (SMS): `submit` cuts one from the body once it is masked (`sms.title_of`), so the cut
    # cannot leave part of a NIK or number that the masking of the whole body would have hidden.
    title_from_body: bool = False
    # What a retry's answer needs that may change meanwhile (the SMS reply names the agency as the directory called
    # it then): kept with the natural key's digests in the event's `intake` metadata.
    retry_facts: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Receipt:
    tracking_id: str
    reporter_token: str
    event: RecordedEvent  # the ComplaintSubmitted as stored
    replayed: bool  # True when the natural key named a report submitted before


class IdempotencyConflict(Conflict):
    """The natural key was used before for a different request."""


def submit(
    ctx: ServiceContext,
    ids: IdDerivation,
    report: Report,
    *,
    principal: Principal | None,
    natural_key: str | None = None,
    request: Mapping[str, Any] | None = None,
    earlier_requests: Sequence[Mapping[str, Any]] = (),
    conflict_detail: str = "this Idempotency-Key was already used for a different report",
    admit: Callable[[], None] | None = None,
) -> Receipt:
    """Record `report`; `ids` derives the identifiers (build it once: it holds a key derived from the signing
    secret). With a `natural_key`, `request` (the request as validated) must be given: the same key
    with the same request returns the first receipt, with another request raises IdempotencyConflict.
    `earlier_requests`: the same request as an earlier version of the channel wrote it for the digest; a submission
    recorded under one of their digests is the same request too (its retry gets the receipt), and none is ever
    recorded under them (the SMS sender as the gateway spelled it, before session 31).
    `admit` is called once, when the report is about to be recorded (a retry was looked for and not found), and
    refuses it by raising: the SMS sender's rate limit, which must not turn away the retry of an accepted message."""
    conceal_requester(report.command.anonymous)
    now = ctx.clock.now()
    if report.received_at is not None and report.received_at > now + RECEIVED_AT_LEEWAY:
        raise ValidationProblem(
            f"received_at {report.received_at.isoformat()} is in the future (it is {now.isoformat()} now)",
            location=("body", "received_at"),
        )
    if report.received_at is not None and report.received_at < EARLIEST_RECEIVED_AT:
        raise ValidationProblem(
            f"received_at {report.received_at.isoformat()} is before {EARLIEST_RECEIVED_AT.date().isoformat()}: "
            "that is a clock's zero (a time never set), not when a report came in; send the moment it was received",
            location=("body", "received_at"),
        )
    request_digest = ids.request_digest(request or {}) if natural_key is not None else None
    same_request = {request_digest, *(ids.request_digest(earlier) for earlier in earlier_requests)}
    for attempt in range(MAX_ID_ATTEMPTS):
        if natural_key is None:
            attempt_ids = ids.fresh()  # a taken ID shows when the append finds the stream (None below)
        else:
            attempt_ids = ids.keyed(natural_key, attempt)
            first = ctx.store.read_stream(stream_of(attempt_ids.tracking_id), limit=1)
            if first and _submitted_under(first[0], attempt_ids):
                return _replay(first[0], attempt_ids, same_request, conflict_detail)
            if first:
                continue  # the ID belongs to another report
        if admit is not None:
            admit()
            admit = None
        receipt = _record(ctx, ids, report, attempt_ids, request_digest, same_request, principal, conflict_detail)
        if receipt is not None:
            return receipt
    raise Conflict("no free tracking ID was found; try again")


def _submitted_under(event: RecordedEvent, ids: SubmissionIds) -> bool:
    return ids.key_digest is not None and (event.metadata.get("intake") or {}).get("key") == ids.key_digest


def _replay(event: RecordedEvent, ids: SubmissionIds, same_request: Set[str | None], conflict_detail: str) -> Receipt:
    if event.metadata["intake"].get("request") not in same_request:
        raise IdempotencyConflict(conflict_detail)  # no tracking ID: the key alone must not reveal the report
    return Receipt(event.data["tracking_id"], ids.reporter_token, event, replayed=True)


def _record(
    ctx: ServiceContext,
    derivation: IdDerivation,
    report: Report,
    ids: SubmissionIds,
    request_digest: str | None,
    same_request: Set[str | None],
    principal: Principal | None,
    conflict_detail: str,
) -> Receipt | None:
    """Append the report under `ids`; None when the ID turned out to be taken by another report meanwhile."""
    command = report.command
    masked, originals = mask_personal_data(
        "ComplaintSubmitted",
        {
            **({} if report.title_from_body else {"title": command.title}),
            "body": command.body,
            **({"location": command.location} if command.location else {}),
            # Free text too (the reporter's own words, up to 80 characters), and shown in every figure by category.
            **({"category": command.category} if command.category else {}),
            # Attachment links: a file's name may be whose it is (session 32).
            **({"attachments": command.attachments} if command.attachments else {}),
        },
        report.identity,
    )
    if report.title_from_body:
        masked["title"] = title_of(masked["body"])
        if (title := title_of(command.body)) != masked["title"]:
            originals = {**(originals or {}), "title": title}
    # Entries of an append surely not recorded are erased at once; those of one that may be recorded stay, and the
    # sweep erases them if no event comes to refer to them (`leftovers.py`). A keyed submission's are shared.
    with erased_unless_recorded(ctx.vault, shared=ids.key_digest is not None) as written:
        if report.identity:
            written.put(dict(report.identity), ref=ids.vault_ref("identity", request_digest))
        if originals:
            written.put(originals, ref=ids.vault_ref("original", request_digest))
        reporter_keys = derivation.reporter_keys(report.identity)
        text = comparable_text(masked["title"], masked["body"])
        with ctx.db.read() as tx:
            area_reports, own_reports = duplicate_candidates(
                tx, text, area_of(command.region_code), reporter_keys, ctx.clock.now()
            )
        command = replace(
            command,
            tracking_id=ids.tracking_id,
            title=masked["title"],
            body=masked["body"],
            location=masked.get("location"),
            category=masked.get("category"),
            attachments=masked.get("attachments", ()),
            reporter_token_hash=reporter_token_hash(ids.reporter_token),
            reporter_ref=written.refs[0] if report.identity else None,
            duplicate_suspect_of=suspects(text, area_reports, own_reports),
        )
        metadata: dict[str, Any] = {MASKED_BY: MASKING}
        if ids.key_digest is not None:
            metadata["intake"] = {"key": ids.key_digest, "request": request_digest, **report.retry_facts}
        if originals:
            metadata[ORIGINAL_REF] = written.refs[-1]
        if report.received_at is not None:
            metadata["received_at"] = report.received_at.isoformat()

        def decide(state: ComplaintState | None, now: datetime) -> list[NewEvent]:
            if state is not None:
                return []  # someone got here first: read below whether it was this same submission
            event = decide_submission(state, command, now, ctx.policy)
            return [event.to_new_event(metadata=metadata, event_id=ids.event_id)]

        reporter = Principal(subject=f"reporter:{ids.tracking_id}", role=Role.reporter, tracking_id=ids.tracking_id)
        written.appending = True
        run_command(ctx, stream_of(ids.tracking_id), decide, principal=principal or reporter, must_exist=False)
    stored = ctx.store.read_stream(stream_of(ids.tracking_id), limit=1)[0]
    if stored.event_id != ids.event_id:
        _forget(ctx, written.refs, keep=stored)
        return None
    if ids.key_digest is not None:
        # Concurrent requests under one key all append the same event id; the first one's request stands.
        try:
            _replay(stored, ids, same_request, conflict_detail)
        except IdempotencyConflict:
            _forget(ctx, written.refs, keep=stored)
            raise
    return Receipt(ids.tracking_id, ids.reporter_token, stored, replayed=False)


def _forget(ctx: ServiceContext, refs: list[str], *, keep: RecordedEvent | None) -> None:
    """Erase vault entries written for a submission that was not recorded (those the stored event uses stay)."""
    used: set[str | None] = set()
    if keep is not None:
        used = {keep.data.get("reporter_ref"), keep.metadata.get(ORIGINAL_REF)}
    for ref in refs:
        if ref not in used:
            ctx.vault.erase(ref)
