"""The tracking view (`GET /api/complaints/{tracking_id}`): the folded state plus what the fold does not keep
(the body, attachments, the information the reporter added, public follow-ups, the feedback comment), handed to
`lapor.privacy.redact_complaint` for the caller. The national admin gets the texts as written from the vault
(`lapor.privacy.ORIGINAL_REF`) and the reporter's identity; every other audience gets the masked log text, scrubbed
of the identity values the view carries, and put through the detector again only when it was logged under another
detector or policy (`lapor.privacy.MASKED_BY`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from lapor.complaint import ComplaintState, allowed_event_types
from lapor.principal import Principal
from lapor.privacy import ORIGINAL_REF, SIGHT, audience_of, masked_at_source, redact_complaint
from lapor.store import RecordedEvent
from lapor.store.vault import Vault
from services.intake.decide import refused_now

# The reporter's actions, by the event each decides, as the path segment of its route.
REPORTER_ACTIONS = {
    "InformationProvided": "information",
    "FeedbackGiven": "feedback",
    "OmbudsmanConsentGiven": "ombudsman-consent",
}


def complaint_view(
    state: ComplaintState,
    events: Sequence[RecordedEvent],
    principal: Principal | None,
    *,
    vault: Vault,
    agency_name: Callable[[str | None], str | None],
    region_name: Callable[[str | None], str | None],
    may_see: Callable[[str], bool],
    now: datetime,
) -> dict[str, Any]:
    """The report as `principal` may see it; raises lapor.privacy.ReportNotVisible. `reporter_actions` are those
    the reporter may take at `now`; `may_see(tracking_id)` says whether `principal` may see another report (the
    original of a duplicate is named only then)."""
    as_written = SIGHT[audience_of(principal)].unmasked

    def text_of(event: RecordedEvent) -> dict[str, Any]:
        if as_written:
            return {**event.data, **(vault.identity(event.metadata.get(ORIGINAL_REF)) or {})}
        # What intake masked when it logged it is not put through the detector again (lapor.privacy.MaskedText).
        return masked_at_source(event.data, event.metadata)

    submitted = text_of(events[0])
    information: list[dict[str, Any]] = []
    follow_ups: list[dict[str, Any]] = []
    feedback: dict[str, Any] | None = None
    for event in events[1:]:
        if event.type == "InformationProvided":
            data = text_of(event)
            information.append(
                {"text": data["text"], "provided_at": event.recorded_at, "attachments": data.get("attachments", [])}
            )
        elif event.type == "FollowUpPosted" and event.data.get("public", True):
            data = text_of(event)  # the same vault convention, should followup mask its texts for the log too
            follow_ups.append(
                {
                    "follow_up_id": data["follow_up_id"],
                    "text": data["text"],
                    "posted_at": event.recorded_at,
                    "attachments": data.get("attachments", []),
                }
            )
        elif event.type == "FeedbackGiven":
            data = text_of(event)
            feedback = {**{k: data.get(k) for k in ("satisfied", "rating", "comment")}, "given_at": event.recorded_at}
        elif event.type == "ComplaintResolved":
            feedback = None  # feedback answers the latest resolution only
    view: dict[str, Any] = {
        "tracking_id": state.tracking_id,
        "version": state.version,
        "status": state.status,
        "kind": state.kind,
        # The admin's corrected title (ComplaintVerified) replaces the reporter's; only the reporter's is masked.
        "title": submitted["title"] if state.title == events[0].data["title"] else state.title,
        "body": submitted["body"],
        # Likewise the verifier's category replaces the reporter's, which intake masks like the texts.
        "category": submitted.get("category") if state.category == events[0].data.get("category") else state.category,
        "tags": list(state.tags),
        "region_code": state.region_code,
        "region_name": region_name(state.region_code),
        "location": submitted.get("location"),
        "attachments": submitted.get("attachments", []),
        "channel": state.channel,
        "channel_ref": submitted.get("channel_ref"),
        "anonymous": state.anonymous,
        "confidential": state.confidential,
        "level": state.level,
        "agency_id": state.agency_id,
        "agency_name": agency_name(state.agency_id),
        "unit_id": state.unit_id,
        "submitted_at": state.submitted_at,
        "verified_at": state.verified_at,
        "disposed_at": state.disposed_at,
        "accepted_at": state.accepted_at,
        "first_follow_up_at": state.first_follow_up_at,
        "resolved_at": state.resolved_at,
        "closed_at": state.closed_at,
        "verification_due": state.verification_due,
        "follow_up_due": state.follow_up_due,
        "feedback_due": state.feedback_due,
        "information_requested": state.information_requested,
        "information": information,
        "follow_ups": follow_ups,
        "resolution": state.resolution,
        "feedback": feedback,
        "close_reason": state.close_reason,
        "archive_reason": state.archive_reason,
        # A public duplicate of a confidential report must not name it: its ID, and that it exists, are hidden as a
        # GET of it would hide them (the status still says duplicate). Found in a bug hunt.
        "duplicate_of": state.duplicate_of if state.duplicate_of and may_see(state.duplicate_of) else None,
        "escalations": state.escalations,
        "ombudsman_offered": state.ombudsman_offered,
        "ombudsman_consent": state.ombudsman_consent,
        "reporter_actions": [
            REPORTER_ACTIONS[t]
            for t in allowed_event_types(state)
            if t in REPORTER_ACTIONS and not refused_now(state, t, now)
        ],
    }
    # Every audience's view carries the identity: the national admin reads it, and for everyone else
    # `redact_complaint` removes it after scrubbing its values from every text, officials' too (the national admin
    # who pends a report knows the reporter's name and may address them by it). Until a bug hunt only the national
    # admin's view carried it, so the scrub had nothing to scrub and a bare name reached the public.
    view["reporter"] = vault.identity(state.reporter_ref)
    return redact_complaint(view, principal)
