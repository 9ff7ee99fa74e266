"""One realistic, valid example of every event type, for the schema and lifecycle tests."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from schemas.events import (
    AgencyRegistered,
    AgencyUpdated,
    Attachment,
    ComplaintArchived,
    ComplaintAssigned,
    ComplaintClosed,
    ComplaintDisposed,
    ComplaintEscalated,
    ComplaintPended,
    ComplaintReopened,
    ComplaintResolved,
    ComplaintSubmitted,
    ComplaintVerified,
    DispositionAccepted,
    DispositionReturned,
    DuplicateMarked,
    EventData,
    FeedbackGiven,
    FollowUpPosted,
    InformationProvided,
    LiaisonContact,
    Location,
    OmbudsmanConsentGiven,
    RoutingRuleChanged,
    RuleMatch,
    SmsKeywordClaimed,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
TRACKING_ID = "LAP-2026-000123"
TOKEN_HASH = hashlib.sha256(b"reporter-token-for-tests").hexdigest()
PHOTO = Attachment(
    url="https://files.lapor.example/a/9f2c.jpg",
    sha256=hashlib.sha256(b"photo").hexdigest(),
    media_type="image/jpeg",
    size_bytes=482_113,
)


def due(days: float, start: datetime = T0) -> datetime:
    return start + timedelta(days=days)


def submitted(**changes: object) -> ComplaintSubmitted:
    fields: dict[str, object] = {
        "tracking_id": TRACKING_ID,
        "kind": "pengaduan",
        "title": "Jalan berlubang di Jl. Frans Seda",
        "body": "Lubang besar di depan kantor kelurahan Fatululi sudah dua bulan, sering membuat pengendara jatuh.",
        "category": "infrastruktur",
        "region_code": "53.71",
        "location": Location(lat=-10.1632, lon=123.6078, address="Jl. Frans Seda, Fatululi, Kota Kupang"),
        "channel": "web",
        "anonymous": False,
        "confidential": False,
        "reporter_ref": "pii_Zm9vYmFyYmF6cXV4",
        "reporter_token_hash": TOKEN_HASH,
        "attachments": (PHOTO,),
        "verification_due": due(3),
    }
    fields.update(changes)
    return ComplaintSubmitted.model_validate(fields)


def examples() -> dict[str, EventData]:
    """Event type -> a valid example."""
    events: list[EventData] = [
        submitted(),
        ComplaintVerified(classification="pengaduan", category="infrastruktur", tags=("jalan", "keselamatan")),
        ComplaintPended(information_requested="Mohon sebutkan nomor rumah terdekat.", archive_due=due(33)),
        InformationProvided(text="Dekat rumah nomor 17, seberang warung.", verification_due=due(6)),
        ComplaintArchived(reason="Pelapor tidak melengkapi informasi dalam 30 hari.", automatic=True),
        DuplicateMarked(duplicate_of="LAP-2026-000099"),
        ComplaintDisposed(
            agency_id="pemda-53.71", rule_id="kupang-infrastruktur", follow_up_due=due(8), ombudsman_offer_due=due(90)
        ),
        DispositionAccepted(agency_id="pemda-53.71"),
        DispositionReturned(
            agency_id="pemda-53.71", reason="Jalan nasional, bukan wewenang pemkot.", suggested_agency_id="kemenpu"
        ),
        ComplaintAssigned(unit_id="pemda-53.71/dpupr"),
        FollowUpPosted(
            follow_up_id="fu-1",
            text="Tim DPUPR sudah meninjau lokasi; penambalan dijadwalkan minggu depan.",
            drafted_by="liaison-kupang-1",
            approved_by="admin-kupang",
        ),
        ComplaintEscalated(
            kind="follow_up_overdue",
            reason="Tidak ada tindak lanjut dalam 5 hari kerja.",
            from_level="unit",
            to_level="agency",
            automatic=True,
            follow_up_due=due(15),
        ),
        ComplaintResolved(resolution="Lubang sudah ditambal pada 20 Maret.", feedback_due=due(30)),
        FeedbackGiven(satisfied=True, rating=5, comment="Terima kasih, cepat ditangani."),
        ComplaintReopened(reason="Tambalan sudah rusak lagi.", follow_up_due=due(40)),
        ComplaintClosed(reason="satisfied"),
        OmbudsmanConsentGiven(),
        AgencyRegistered(
            agency_id="pemda-53.71",
            name="Pemerintah Kota Kupang",
            parent_id="pemda-53",
            kind="pemerintah_kabupaten_kota",
            region_code="53.71",
            sms_keywords=("KOTKUPANG",),
            liaisons=(LiaisonContact(name="Maria Lay", position="Kabag Organisasi", email="lapor@kupangkota.go.id"),),
        ),
        AgencyUpdated(
            agency_id="pemda-53.71",
            name="Pemerintah Kota Kupang",
            parent_id="pemda-53",
            kind="pemerintah_kabupaten_kota",
            region_code="53.71",
            sms_keywords=("KOTKUPANG", "KUPANG"),
            active=True,
        ),
        RoutingRuleChanged(
            rule_id="kupang-infrastruktur",
            match=RuleMatch(region_code="53.71", category="infrastruktur"),
            agency_id="pemda-53.71",
        ),
        SmsKeywordClaimed(keyword="KUPANG", agency_id="pemda-53.71", agency_version=1),
    ]
    return {event.event_type(): event for event in events}
