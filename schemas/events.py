"""The v1 event contracts: what each event's `data` may hold.

Deciding services build one of these models, then store `model.to_new_event()`; the model validates the data
exactly once, at decision time. Readers (the complaint fold, projections) trust stored data and work on the
raw dicts. Every model is frozen and forbids unknown fields, so an identity field (name, NIK, phone) cannot be
smuggled into the log: identity lives in the PII vault and events carry only `reporter_ref`.

Deadlines (`*_due`) are decided by the deciding service with the working-day calendar of that moment and are
carried in the events, so a holiday added later never moves a deadline already given.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from lapor.patterns import EMAIL_PATTERN, NOT_WHITESPACE
from lapor.store.model import NewEvent, new_event_id

# -- value types ------------------------------------------------------------------------------------------

TRACKING_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]{2,63}$"
# Directory slugs: "kemenpanrb", "pemda-82.71", and units as "<agency_id>/<unit>" ("pemda-82.71/dinkes"). Every
# segment starts with a letter or digit: a unit "." or ".." would be a path step in the URLs that name it (clients
# and proxies resolve `pemda-82.71/..` to `pemda-82.71`'s parent), so it could never be asked for by its id (until
# session 24 only the first segment had to).
AGENCY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$"
# Kemendagri codes: a province (53), a regency or city (53.71), a district (53.71.01), a village (53.71.01.1001).
REGION_CODE_PATTERN = r"^[0-9]{2}(\.[0-9]{2}(\.[0-9]{2}(\.[0-9]{4})?)?)?$"

TrackingId = Annotated[str, StringConstraints(pattern=TRACKING_ID_PATTERN)]
AGENCY_ID_MAX_LENGTH = 128
AgencyId = Annotated[str, StringConstraints(pattern=AGENCY_ID_PATTERN, max_length=AGENCY_ID_MAX_LENGTH)]
RegionCode = Annotated[str, StringConstraints(pattern=REGION_CODE_PATTERN)]
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
ReporterRef = Annotated[str, StringConstraints(pattern=r"^pii_[A-Za-z0-9_-]{8,64}$")]
# Ids made elsewhere (SMS message ids, an integrated system's external ids, follow-up and rule ids).
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/#@+=-]{0,127}$")]
SmsKeyword = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{2,20}$")]
Category = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Body = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2_000)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
# An officer's login subject (lapor.principal.Principal.subject), never a reporter.
Subject = Annotated[str, StringConstraints(min_length=1, max_length=128)]

MAX_ATTACHMENT_BYTES = 100 * 1024 * 1024  # a sanity bound; intake enforces its own, smaller upload limit
AttachmentSize = Annotated[int, Field(ge=0, le=MAX_ATTACHMENT_BYTES)]


class ComplaintKind(StrEnum):
    """Klasifikasi laporan."""

    pengaduan = "pengaduan"  # complaint
    aspirasi = "aspirasi"  # aspiration / suggestion
    permintaan_informasi = "permintaan_informasi"  # information request


class Channel(StrEnum):
    web = "web"
    mobile = "mobile"
    sms = "sms"  # SMS 1708: "KEYWORD <isi laporan>"
    social = "social"
    integration = "integration"  # an agency's own system (e.g. a city's "Sambat Online")


class Level(StrEnum):
    """Who holds a complaint. Shared by the events and the fold (`lapor.complaint.Level` is this one)."""

    national = "national"  # the national admin, with routing
    agency = "agency"  # instansi
    unit = "unit"  # a unit inside the agency
    regional = "regional"  # the provincial coordinator
    ombudsman = "ombudsman"


class EscalationKind(StrEnum):
    verification_overdue = "verification_overdue"
    follow_up_overdue = "follow_up_overdue"
    bounce_limit = "bounce_limit"  # returned "bukan wewenang" too often: flag the national admin
    ombudsman_offer = "ombudsman_offer"  # 60 days unresolved: the reporter is offered Ombudsman takeover
    ombudsman = "ombudsman"  # the reporter consented: the Ombudsman takes over
    manual = "manual"


class CloseReason(StrEnum):
    satisfied = "satisfied"  # the reporter said so
    no_response = "no_response"  # the feedback window passed in silence
    reopen_limit = "reopen_limit"  # dissatisfied again after the reopens policy allows
    administrative = "administrative"  # closed by the national admin, with a note


class AgencyKind(StrEnum):
    kementerian = "kementerian"
    lembaga = "lembaga"
    pemerintah_provinsi = "pemerintah_provinsi"
    pemerintah_kabupaten_kota = "pemerintah_kabupaten_kota"
    perangkat_daerah = "perangkat_daerah"  # OPD/SKPD
    unit = "unit"  # puskesmas, kecamatan, kelurahan, sekolah, ...
    bumn_bumd = "bumn_bumd"
    lainnya = "lainnya"


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Attachment(_Part):
    url: Annotated[str, StringConstraints(pattern=rf"^(https?://|/){NOT_WHITESPACE}+$", max_length=2048)]
    sha256: Sha256Hex
    media_type: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.+-]+/[A-Za-z0-9_.+-]+$", max_length=127)]
    size_bytes: AttachmentSize


Attachments = Annotated[tuple[Attachment, ...], Field(max_length=20)]


class Location(_Part):
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    address: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)] | None = None

    @model_validator(mode="after")
    def _coordinates_in_pairs(self) -> Location:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon come together")
        if self.lat is None and self.address is None:
            raise ValueError("a location needs coordinates or an address")
        return self


class LiaisonContact(_Part):
    """Pejabat penghubung: an official's work contact, published so reporters and admins can reach them."""

    name: Name
    position: Name | None = None
    email: Annotated[str, StringConstraints(pattern=EMAIL_PATTERN, max_length=254)] | None = None
    phone: Annotated[str, StringConstraints(pattern=r"^\+?[0-9 ()-]{6,20}$")] | None = None


class RuleMatch(_Part):
    """What a routing rule matches on; every given field must match."""

    keyword: SmsKeyword | None = None
    region_code: RegionCode | None = None
    category: Category | None = None

    @model_validator(mode="after")
    def _matches_something(self) -> RuleMatch:
        if self.keyword is None and self.region_code is None and self.category is None:
            raise ValueError("a routing rule must match on keyword, region_code or category")
        return self


# -- events -----------------------------------------------------------------------------------------------


class EventData(BaseModel):
    """Base of every event's data. The class name is the event type."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: ClassVar[int] = 1

    @classmethod
    def event_type(cls) -> str:
        return cls.__name__

    def to_data(self) -> dict[str, Any]:
        """JSON-ready data (datetimes as ISO-8601 strings), every field present."""
        return self.model_dump(mode="json")

    def to_new_event(self, *, metadata: dict[str, Any] | None = None, event_id: uuid.UUID | None = None) -> NewEvent:
        return NewEvent(
            type=self.event_type(),
            data=self.to_data(),
            metadata=metadata or {},
            event_id=event_id or new_event_id(),
            schema_version=self.schema_version,
        )


class ComplaintSubmitted(EventData):
    tracking_id: TrackingId
    kind: ComplaintKind
    title: Title
    body: Body
    category: Category | None = None
    # Kemendagri code of where the problem is, e.g. "53.71" (Kota Kupang); None when the channel does not say
    # (an SMS without a known keyword): national verification places it.
    region_code: RegionCode | None = None
    location: Location | None = None
    channel: Channel
    channel_ref: Identifier | None = None  # SMS message id, an integrated system's external id
    anonymous: bool = False  # anonim: the reporter is hidden from everyone but the national admin
    confidential: bool = False  # rahasia: the whole report is hidden from the public
    reporter_ref: ReporterRef | None = None  # PII-vault reference; None when no identity was given
    # Hex SHA-256 of the reporter_token handed out at submission. The token is random and high-entropy, so a
    # fast unsalted hash is enough (nothing to brute-force); a slow password hash would only cost each check.
    reporter_token_hash: Sha256Hex
    attachments: Attachments = ()
    suggested_agency_id: AgencyId | None = None  # from an SMS keyword or the integrating channel
    duplicate_suspect_of: Annotated[tuple[TrackingId, ...], Field(max_length=20)] = ()
    verification_due: AwareDatetime


class ComplaintVerified(EventData):
    """Telaah done: the report is a real case, classified and ready for disposition."""

    classification: ComplaintKind
    category: Category
    title: Title | None = None  # the admin's corrected title; None keeps the reporter's
    tags: Annotated[tuple[Tag, ...], Field(max_length=20)] = ()


class ComplaintPended(EventData):
    """Tunda: the admin asks the reporter for more information."""

    information_requested: Reason
    archive_due: AwareDatetime


class InformationProvided(EventData):
    text: Body
    attachments: Attachments = ()
    verification_due: AwareDatetime


class ComplaintArchived(EventData):
    reason: Reason
    automatic: bool = False  # True when the pending window passed in silence


class DuplicateMarked(EventData):
    duplicate_of: TrackingId


class ComplaintDisposed(EventData):
    """Disposisi to an agency (instansi)."""

    agency_id: AgencyId
    level: Literal[Level.agency] = Level.agency
    note: Reason | None = None
    rule_id: Identifier | None = None  # the routing rule that suggested the agency, if any
    follow_up_due: AwareDatetime
    ombudsman_offer_due: AwareDatetime


class DispositionAccepted(EventData):
    agency_id: AgencyId
    note: Reason | None = None


class DispositionReturned(EventData):
    """Bukan wewenang: not this agency's authority. The report goes back to routing, never dropped."""

    agency_id: AgencyId
    reason: Reason
    suggested_agency_id: AgencyId | None = None


class ComplaintAssigned(EventData):
    unit_id: AgencyId  # "<agency_id>/<unit>"
    note: Reason | None = None
    # The level the report is watched at afterwards when it is not the unit's: a report escalated above its agency
    # (regional, national) stays watched there. Absent (every assignment before session 24): the unit's.
    level: Level | None = None


class FollowUpPosted(EventData):
    """Tindak lanjut. Internal ones (public=False) are notes between officers."""

    follow_up_id: Identifier
    text: Body
    public: bool = True
    attachments: Attachments = ()
    drafted_by: Subject | None = None
    approved_by: Subject | None = None


class ComplaintEscalated(EventData):
    kind: EscalationKind
    reason: Reason
    from_level: Level
    to_level: Level
    to_agency_id: AgencyId | None = None
    automatic: bool = False  # True when a deadline timer decided it, False for a person
    follow_up_due: AwareDatetime | None = None  # a new follow-up deadline for whoever holds it now


class ComplaintResolved(EventData):
    resolution: Body
    feedback_due: AwareDatetime


class FeedbackGiven(EventData):
    satisfied: bool
    rating: int = Field(ge=1, le=5)
    comment: Reason | None = None


class ComplaintReopened(EventData):
    reason: Reason
    follow_up_due: AwareDatetime


class ComplaintClosed(EventData):
    reason: CloseReason
    note: Reason | None = None


class OmbudsmanConsentGiven(EventData):
    """The reporter agreed to the Ombudsman taking the report over."""


# -- directory events (streams `directory-{agency_id}` and `directory-routing-rules`) -----------------------------


class _AgencyRecord(EventData):
    agency_id: AgencyId
    name: Name
    parent_id: AgencyId | None = None
    kind: AgencyKind
    region_code: RegionCode | None = None
    sms_keywords: Annotated[tuple[SmsKeyword, ...], Field(max_length=20)] = ()
    liaisons: Annotated[tuple[LiaisonContact, ...], Field(max_length=20)] = ()


class AgencyRegistered(_AgencyRecord):
    """An agency joins the directory."""


class AgencyUpdated(_AgencyRecord):
    """The whole new record (not a patch), so each event reads on its own in an audit."""

    active: bool = True


class RoutingRuleChanged(EventData):
    """A routing rule created, changed or switched off (active=False); the whole rule each time."""

    rule_id: Identifier
    match: RuleMatch
    agency_id: AgencyId
    active: bool = True


# -- SMS keyword claims (streams `smskeyword-{KEYWORD}`) ------------------------------------------------------


class SmsKeywordClaimed(EventData):
    """An agency takes an SMS keyword before its record lists it (services.routing.keywords). The claims of one
    keyword are one stream, appended at the version read, so of two agencies asking at once one wins. The claim is
    settled once the agency's stream reaches `agency_version`; from then the agency holds the keyword while its
    record, active, lists it."""

    keyword: SmsKeyword
    agency_id: AgencyId
    agency_version: Annotated[int, Field(ge=0)]


COMPLAINT_EVENTS: tuple[type[EventData], ...] = (
    ComplaintSubmitted,
    ComplaintVerified,
    ComplaintPended,
    InformationProvided,
    ComplaintArchived,
    DuplicateMarked,
    ComplaintDisposed,
    DispositionAccepted,
    DispositionReturned,
    ComplaintAssigned,
    FollowUpPosted,
    ComplaintEscalated,
    ComplaintResolved,
    FeedbackGiven,
    ComplaintReopened,
    ComplaintClosed,
    OmbudsmanConsentGiven,
)
DIRECTORY_EVENTS: tuple[type[EventData], ...] = (AgencyRegistered, AgencyUpdated, RoutingRuleChanged)
KEYWORD_EVENTS: tuple[type[EventData], ...] = (SmsKeywordClaimed,)

EVENT_TYPES: dict[str, type[EventData]] = {
    model.__name__: model for model in COMPLAINT_EVENTS + DIRECTORY_EVENTS + KEYWORD_EVENTS
}


class UnknownEventType(ValueError):
    def __init__(self, event_type: str) -> None:
        self.event_type = event_type
        super().__init__(f"unknown event type {event_type!r}")


def parse_event_data(event_type: str, data: dict[str, Any]) -> EventData:
    """Validate `data` (current schema version) for `event_type`; raises pydantic's ValidationError."""
    model = EVENT_TYPES.get(event_type)
    if model is None:
        raise UnknownEventType(event_type)
    return model.model_validate(data)
