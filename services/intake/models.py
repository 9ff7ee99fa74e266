"""The request and response bodies of intake's HTTP API (so the OpenAPI document is the truth).

Requests forbid unknown fields and take flags and numbers strictly (`"yes"` is not a boolean, `"5"` not a
rating, though `5.0` is 5 as JSON Schema says), so a client's mistake is a 422 naming the field rather than a
guess. Texts are plain text (`lapor.limits`: the same for every service), with lengths from the settings' field
limits.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from lokal import parse_nik
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError

from lapor.complaint import Status
from lapor.limits import (
    Address,
    Body,
    Category,
    Comment,
    IsoDateTime,
    KemendagriRegion,
    MaxItems,
    Name,
    Once,
    SmsText,
    Text,
    Title,
    WholeNumber,
)
from lapor.patterns import CONTROL, EMAIL_PATTERN, INVISIBLE, WHITESPACE
from schemas.events import Channel, ComplaintKind
from services.intake.phone import read_phone

# -- value checks -------------------------------------------------------------------------------------------


def _nik(value: str) -> str:
    info = parse_nik(value)
    if not info.valid or info.nik is None:
        reason = info.errors[0].message if info.errors else "NIK tidak valid"
        raise PydanticCustomError("nik", "not a valid NIK: {reason}", {"reason": reason})
    return info.nik


def _phone(value: str) -> str:
    info = read_phone(value)  # as the SMS sender is read: `0062812...` is `+62812...` (session 30)
    if not info.valid or info.e164 is None:
        reason = info.errors[0].message if info.errors else "nomor tidak valid"
        raise PydanticCustomError("phone", "not a valid Indonesian phone number: {reason}", {"reason": reason})
    return info.e164


_SHOWS_NOTHING = re.compile(f"[{INVISIBLE}]")


def _email(value: str) -> str:
    """Session 31: an address holding a character that shows nothing (a zero width space pasted with it, a mark or
    override of direction) was kept in the vault as it was: the national admin read `budi@\u202email.com` reversed,
    and `budi\u200b@mail.com` was another reporter to duplicate suspicion than `budi@mail.com`."""
    if _SHOWS_NOTHING.search(value):
        raise PydanticCustomError(
            "email", "an e-mail address cannot hold characters that show nothing (a zero width space, a direction mark)"
        )
    return value


Nik = Annotated[str, StringConstraints(max_length=32), AfterValidator(_nik)]
Phone = Annotated[str, StringConstraints(max_length=32), AfterValidator(_phone)]
Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_lower=True, max_length=254, pattern=EMAIL_PATTERN
    ),
    AfterValidator(_email),
]
# Identifiers given by other systems: an SMS message id, an external id.
ExternalId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$")]
Sender = Annotated[str, StringConstraints(pattern=r"^\+?[0-9]{3,20}$")]

# What may be attached, and how large each kind may be (bytes). Files are uploaded elsewhere; intake records the
# URL with the SHA-256 the client computed, so what an officer downloads later can be checked.
ATTACHMENT_LIMITS: dict[str, int] = {
    "image/jpeg": 10 * 1024 * 1024,
    "image/png": 10 * 1024 * 1024,
    "image/webp": 10 * 1024 * 1024,
    "image/heic": 10 * 1024 * 1024,
    "application/pdf": 20 * 1024 * 1024,
    "video/mp4": 50 * 1024 * 1024,
    "audio/mpeg": 10 * 1024 * 1024,
    "audio/ogg": 10 * 1024 * 1024,
    "audio/mp4": 10 * 1024 * 1024,
}
_LIMITS_IN_MIB = "; ".join(f"{limit // 2**20} MiB for {kind}" for kind, limit in ATTACHMENT_LIMITS.items())
MediaType = Literal[
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/heic",
    "application/pdf",
    "video/mp4",
    "audio/mpeg",
    "audio/ogg",
    "audio/mp4",
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AttachmentIn(_Request):
    # No space, quote or angle bracket, and (session 31) no control character or character that shows nothing: a
    # NUL, an escape, `https://unggah.lapor.go.id/\u202egpj.exe` (shown as "...exe.jpg") or a zero width space were
    # recorded, and shown to the officers who open the file and to the public.
    url: Annotated[
        str, StringConstraints(pattern=rf"^https://[^<>\"'{WHITESPACE}{CONTROL}{INVISIBLE}]+$", max_length=2048)
    ]
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$", to_lower=True)]
    media_type: MediaType
    size_bytes: Annotated[
        int,
        Field(ge=1, le=max(ATTACHMENT_LIMITS.values()), description=f"bytes, at most {_LIMITS_IN_MIB}"),
        WholeNumber,
    ]

    @model_validator(mode="after")
    def _within_limit(self) -> AttachmentIn:
        limit = ATTACHMENT_LIMITS[self.media_type]
        if self.size_bytes > limit:
            raise PydanticCustomError(
                "attachment_too_large",
                "an attachment of type {media_type} may be at most {limit} bytes",
                {"media_type": self.media_type, "limit": limit},
            )
        return self


Attachments = Annotated[list[AttachmentIn], MaxItems("attachments"), Once]


class LocationIn(_Request):
    # NaN and Infinity, which Python's JSON reader takes though JSON has neither, are "not a finite number" (session
    # 31: NaN was refused as "less than or equal to 90", a bound it does not break).
    lat: StrictFloat | None = Field(default=None, ge=-90, le=90, allow_inf_nan=False)
    lon: StrictFloat | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False)
    address: Address | None = None

    @model_validator(mode="after")
    def _usable(self) -> LocationIn:
        if (self.lat is None) != (self.lon is None):
            raise PydanticCustomError("location", "lat and lon come together")
        if self.lat is None and self.address is None:
            raise PydanticCustomError("location", "a location needs coordinates or an address")
        return self


class ReporterIdentity(_Request):
    """Identitas pelapor. Goes to the PII vault only; events carry a reference."""

    name: Name | None = None
    phone: Phone | None = None
    email: Email | None = None
    nik: Nik | None = None

    @model_validator(mode="after")
    def _something(self) -> ReporterIdentity:
        if not any((self.name, self.phone, self.email, self.nik)):
            raise PydanticCustomError("identity", "give at least one of name, phone, email, nik, or leave it out")
        return self


class ReportFields(_Request):
    kind: ComplaintKind = ComplaintKind.pengaduan
    title: Title
    body: Body
    category: Category | None = None
    region_code: KemendagriRegion
    location: LocationIn | None = None
    attachments: Attachments = []
    reporter: ReporterIdentity | None = None
    anonymous: StrictBool = False  # anonim: hidden from everyone but the national admin
    confidential: StrictBool = False  # rahasia: hidden from the public


class SubmissionRequest(ReportFields):
    """A report from the web form or the mobile app."""

    channel: Literal[Channel.web, Channel.mobile] = Channel.web


class ChannelSubmissionRequest(ReportFields):
    """A report pushed by an agency's own system (hotline, "Sambat Online", ...)."""

    external_id: ExternalId
    received_at: IsoDateTime | None = None  # when the system received it


class SmsMessage(_Request):
    """One SMS to 1708 as the gateway delivers it; multi-part messages already joined."""

    message_id: ExternalId
    sender: Sender
    text: SmsText
    received_at: IsoDateTime


class InformationRequest(_Request):
    text: Text
    attachments: Attachments = []


class FeedbackRequest(_Request):
    satisfied: StrictBool
    rating: Annotated[int, Field(ge=1, le=5), WholeNumber]
    comment: Comment | None = None


class ConsentRequest(_Request):
    """Empty: posting it is the consent."""


# -- responses ----------------------------------------------------------------------------------------------


class ReporterLinks(BaseModel):
    self: str
    information: str
    feedback: str
    ombudsman_consent: str


class SubmissionReceipt(BaseModel):
    """Tanda terima. Keep `reporter_token`: it is shown once and opens the report's reporter actions."""

    tracking_id: str = Field(examples=["7KQ2-M9XD-T"])
    reporter_token: str
    status: Status
    submitted_at: datetime
    verification_due: datetime
    links: ReporterLinks


class SmsReply(BaseModel):
    reply: str  # the SMS text to send back to the sender
    tracking_id: str | None = None  # None when the message held no report (the reply is then the help text)


class ReporterActionResult(BaseModel):
    tracking_id: str
    status: Status
    version: int


class AttachmentOut(BaseModel):
    url: str
    sha256: str
    media_type: str
    size_bytes: int


class LocationOut(BaseModel):
    lat: float | None = None
    lon: float | None = None
    address: str | None = None


class FollowUpOut(BaseModel):
    follow_up_id: str
    text: str
    posted_at: datetime
    attachments: list[AttachmentOut] = []


class InformationOut(BaseModel):
    text: str
    provided_at: datetime
    attachments: list[AttachmentOut] = []


class FeedbackOut(BaseModel):
    satisfied: bool
    rating: int
    comment: str | None = None
    given_at: datetime


class EscalationOut(BaseModel):
    kind: str
    from_level: str
    to_level: str
    to_agency_id: str | None = None
    at: datetime


class ComplaintView(BaseModel):
    """A report as the caller may see it (lapor.privacy decides: identity, channel references and the text as
    written are for the national admin only; a field the caller may not see is absent)."""

    tracking_id: str
    version: int
    status: Status
    kind: ComplaintKind | None = None
    title: str | None = None
    body: str | None = None
    category: str | None = None
    tags: list[str] = []
    region_code: str | None = None
    region_name: str | None = None
    location: LocationOut | None = None
    attachments: list[AttachmentOut] = []
    channel: Channel | None = None
    channel_ref: str | None = None
    anonymous: bool
    confidential: bool
    level: str | None = None
    agency_id: str | None = None
    agency_name: str | None = None
    unit_id: str | None = None
    submitted_at: datetime | None = None
    verified_at: datetime | None = None
    disposed_at: datetime | None = None
    accepted_at: datetime | None = None
    first_follow_up_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    verification_due: datetime | None = None
    follow_up_due: datetime | None = None
    feedback_due: datetime | None = None
    information_requested: str | None = None
    information: list[InformationOut] = []
    follow_ups: list[FollowUpOut] = []
    resolution: str | None = None
    feedback: FeedbackOut | None = None
    close_reason: str | None = None
    archive_reason: str | None = None
    duplicate_of: str | None = None
    escalations: list[EscalationOut] = []
    ombudsman_offered: bool = False
    ombudsman_consent: bool = False
    reporter_actions: list[str] = []  # what the reporter can do now: information, feedback, ombudsman-consent
    reporter: dict[str, Any] | None = None  # the identity, for the national admin


def receipt_links(tracking_id: str) -> ReporterLinks:
    base = f"/api/complaints/{tracking_id}"
    return ReporterLinks(
        self=base,
        information=f"{base}/information",
        feedback=f"{base}/feedback",
        ombudsman_consent=f"{base}/ombudsman-consent",
    )
