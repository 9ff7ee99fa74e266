"""The one place that decides what each audience may see of a complaint (anonim, rahasia, and personal data).

Anonymous (anonim) and confidential (rahasia) are separate flags. Confidential hides the whole report from the
public (`can_see_report`). Reporter identity (name, NIK, phone, email) lives in the PII vault and events carry only
`reporter_ref`; no audience but the national admin receives that reference or any identity field, and for an
anonymous report also nothing that links back to the reporter (channel references). Reporters often type their own
NIK, phone number or name into the text, so every free-text field is masked with lokal-id's detector (Samaran) for
everyone but the national admin.

Services never pick fields themselves: they call `redact_complaint`, `visible_complaints`, `redact_event_data`,
`redact_metadata` or `redact_text`, so no screen or projection can leak by omission. A request that files, reads
or acts on an anonymous report, as its reporter may, is unlinked from the client's address (`conceal_requester`).
The field lists below are the whole policy: a new field is covered by adding its name to a set. Decisions are
written up in docs/calendar-and-privacy.md.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from uuid import UUID

from fastapi.routing import APIRoute
from lokal import PiiType, mask_pii, parse_phone, partial_mask
from lokal import __version__ as lokal_version
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from lapor.correlation import decline_chosen_correlation_id, withhold_client
from lapor.patterns import INVISIBLE
from lapor.principal import NATIONAL_ADMIN_AGENCY, Principal, Role
from lapor.tracking import InvalidTrackingId, parse_tracking_id, stream_of

if TYPE_CHECKING:
    from lapor.complaint import ComplaintState
    from lapor.store import EventStore, RecordedEvent
    from lapor.store.vault import Vault

# Never shown to anyone, not even the national admin: the hash of the reporter's bearer token.
SECRET_FIELDS = frozenset({"reporter_token_hash"})

# Metadata key of the vault entry holding the originals of what was masked in an event's text (intake writes it).
ORIGINAL_REF = "pii_original_ref"
# Vault references in event metadata: the key to what was written unmasked, for the national admin only.
VAULT_REFERENCES = frozenset({ORIGINAL_REF, "reporter_ref"})
# Intake's idempotency digests (`intake`: HMACs of the submission's natural key and of the whole request, the
# reporter's identity included, and what a retry's answer needs, such as the SMS reply's agency name) serve a
# retried submission only: no reader needs them, so only the national admin, who sees the raw metadata, gets them.
INTERNAL_METADATA = frozenset({"intake"})
_WITHHELD_METADATA = VAULT_REFERENCES | INTERNAL_METADATA

# Metadata key intake writes on an event whose free text it masked as the public sees it (`mask_personal_data`:
# the reporter's own identity scrubbed, then the detector), and its value: the detector and the policy that masked
# it. Views do not run the detector again on such text while this is the one in use (`masked_at_source`); a new
# detector or policy masks the texts logged under the old one again.
MASKED_BY = "masked_by"

# Who the reporter is. Only the national admin sees these; a whole subtree under such a key goes.
IDENTITY_FIELDS = frozenset(
    {
        "reporter_ref",
        "reporter",
        "reporter_name",
        "reporter_phone",
        "reporter_email",
        "reporter_nik",
        "reporter_address",
        "pelapor",
        "identity",
        "nik",
        "phone",
        "email",
        "msisdn",
        "sender",
    }
)

# References that can lead back to the reporter through the channel they used. Hidden for anonymous reports and
# from the public and reporters; for the channels below they are identity outright (an SMS reference is derived
# from the sender's phone number).
# `duplicate_suspect_of` names reports intake found alike, the same reporter's own among them (session 27).
LINKING_FIELDS = frozenset(
    {"channel_ref", "external_id", "message_id", "ip", "client_ip", "user_agent", "device_id", "duplicate_suspect_of"}
)
IDENTIFYING_CHANNELS = frozenset({"sms"})

# Text written by people: masked for everyone but the national admin.
FREE_TEXT_FIELDS = frozenset(
    {
        "title",
        "body",
        "category",  # typed by the reporter (intake masks it since session 20) or the verifier
        "tags",
        "text",
        "resolution",
        "comment",
        "information",
        "information_requested",
        "note",
        "reason",
        "return_reason",
        "archive_reason",
        "address",
        "description",
        "message",
        # An attachment's link (session 32): the reporter's or an officer's, and a file's name often is whose it is
        # (`https://drive.example/ktp-3171012345678901.jpg`, `?hp=0812...`). Masked like text: a link that held
        # personal data opens for the national admin only.
        "url",
    }
)

# An item (a follow-up, or a FollowUpPosted event) with public=False is internal to the officials handling it.
INTERNAL_MARKER = "public"
# What an internal item loses for audiences that may not read internal notes, besides its free text: the files
# attached to the note (session 32: their links were shown, masked, to the public and the reporter).
INTERNAL_ONLY_FIELDS = frozenset({"attachments"})

# Detected personal data that stays readable: in a complaint an address or coordinates are almost always the place
# of the problem (the broken road, the puskesmas), which the agency needs; the reporter's own address is in the vault.
UNMASKED_PII_TYPES: tuple[PiiType, ...] = ("ADDRESS", "GEO")

# What a known identity value is replaced with wherever it appears in the text.
IDENTITY_MASK = "***"
# Shortest identity value scrubbed by exact match; shorter ones would blank out ordinary words.
_MIN_KNOWN_VALUE = 3

# Integration reports name their client in channel_ref as "<client channel>:<external id>" (see source_channel).
INTEGRATION_CHANNEL = "integration"
# Channels whose reports an integration client sends as they come: the SMS gateway's (`POST /api/channels/sms`). A
# report of any other channel but integration was sent by the citizen (the web form, the mobile app) and is no
# client's, whatever a client's channel is named (session 27).
GATEWAY_CHANNELS = frozenset({"sms"})

_SCALARS = (bool, int, float, Decimal, datetime, date, time, timedelta, UUID, type(None))


class Audience(StrEnum):
    public = "public"
    reporter = "reporter"
    national_admin = "national_admin"
    agency = "agency"
    oversight = "oversight"  # operator (KSP and the like), auditor (inspektorat), Ombudsman RI
    integration = "integration"


@dataclasses.dataclass(frozen=True, slots=True)
class _Sight:
    unmasked: bool  # reporter identity and free text as written
    internal: bool  # internal (public=False) items
    linking: bool  # channel references of non-anonymous reports


SIGHT: Mapping[Audience, _Sight] = {
    Audience.national_admin: _Sight(unmasked=True, internal=True, linking=True),
    Audience.agency: _Sight(unmasked=False, internal=True, linking=True),
    # Auditors replay the full history (internal notes included, for integrity) but never see who reported.
    Audience.oversight: _Sight(unmasked=False, internal=True, linking=True),
    Audience.integration: _Sight(unmasked=False, internal=False, linking=True),
    Audience.reporter: _Sight(unmasked=False, internal=False, linking=False),
    Audience.public: _Sight(unmasked=False, internal=False, linking=False),
}

_AUDIENCE_OF_ROLE: Mapping[Role, Audience] = {
    Role.reporter: Audience.reporter,
    Role.admin_national: Audience.national_admin,
    Role.admin_agency: Audience.agency,
    Role.liaison: Audience.agency,
    Role.unit_officer: Audience.agency,
    Role.operator: Audience.oversight,
    Role.auditor: Audience.oversight,
    Role.ombudsman: Audience.oversight,
    Role.integration: Audience.integration,
}

# What a reporter's own actions show as their actor outside the national admin.
REPORTER_ACTOR = "pelapor"


class ReportNotVisible(LookupError):
    """The principal may not see this report. Services answer 404, so its existence is not revealed either."""

    def __init__(self, tracking_id: str | None) -> None:
        super().__init__(f"report {tracking_id} not found")
        self.tracking_id = tracking_id


def audience_of(principal: Principal | None) -> Audience:
    """The audience a principal belongs to; None is the public."""
    return Audience.public if principal is None else _AUDIENCE_OF_ROLE[principal.role]


def source_channel(channel: str | None, channel_ref: str | None) -> str | None:
    """The integration client a report came through, by the channel its token names: "sms" for the SMS gateway's
    reports, and for reports of an integrated system the client's own channel, the part of channel_ref before the
    first ":". None for what citizens sent themselves (web, mobile): no client's, so that a client whose channel
    is named "web" or "mobile" does not read every citizen's report of that channel, confidential ones included."""
    if channel == INTEGRATION_CHANNEL and channel_ref and ":" in channel_ref:
        return channel_ref.split(":", 1)[0]
    return channel if channel in GATEWAY_CHANNELS else None


def can_see_report(
    principal: Principal | None,
    *,
    confidential: bool,
    agency_id: str | None,
    unit_id: str | None,
    tracking_id: str | None,
    involved_agencies: Iterable[str] = (),
    channel: str | None = None,
) -> bool:
    """Whether the principal may see the report at all.

    Public: not confidential. Reporter: their own report, and what the public sees. Agency-scoped roles: their
    agency's reports and those escalated to them (`involved_agencies`); a unit officer only what their unit holds:
    assigned to it or to a unit inside it, or disposed to it directly (the scope `lapor.auth` lets them act in,
    session 24: a report of a unit inside theirs was theirs to act on but not to see). National admin and
    oversight: all. Integration clients: the reports of their own channel (`channel`: the report's
    `source_channel`, None for what citizens sent themselves), confidential ones included, since they submitted
    them for the reporter.
    """
    audience = audience_of(principal)
    if audience in (Audience.national_admin, Audience.oversight):
        return True
    if principal is None or audience is Audience.public:
        return not confidential
    if audience is Audience.reporter:
        return not confidential or (principal.tracking_id is not None and principal.tracking_id == tracking_id)
    if audience is Audience.integration:
        return principal.channel is not None and principal.channel == channel
    if principal.role is Role.unit_officer:
        holder = unit_id or agency_id
        return holder is not None and principal.unit_id in ancestors_and_self(holder)
    return principal.agency_id == agency_id or principal.agency_id in set(involved_agencies)


MASKING_PASSES = 4  # at most, of the detector over one text (`mask_text`)


def mask_text(text: str) -> tuple[str, bool]:
    """Indonesian personal data in `text` replaced by partial masks (3201********0001, 0812****7890, B*** S***);
    deterministic. Returns the masked text and whether anything was found. E-mail addresses written with a
    bracketed "@" or dot are masked first (`_mask_obfuscated_emails`): the detector misses some of those forms.

    `mask_pii` builds a fresh Samaran per call and drops it: a Samaran keeps a vault of what it masked and is not
    thread-safe, so one shared instance would both race and hoard personal data. Construction is microseconds,
    detection about 0.3 ms for a short message."""
    if not text:
        return text, False
    text, found = _mask_obfuscated_emails(text)
    # The detector is not idempotent: run again on its own output it sometimes masks more ("Pak Ahmad B **** …"
    # became "Pak A*** B*** ****"). Views used to run it a second time on what intake had masked; since they
    # trust intake's mark (`MaskedText`), it runs here until nothing changes (a review's 3,000 random texts needed
    # at most two passes more than the first).
    for _ in range(MASKING_PASSES):
        masked, matched = _detector_pass(text)
        found = found or matched
        if masked == text:
            break
        text = masked
    return text, found


def _detector_pass(text: str) -> tuple[str, bool]:
    """One pass of the detector over `text` as a reader sees it, without its invisible characters (session 32:
    someone else's `3171\u200b0123\u200b4567\u200b8901` or `0812\u00ad3456\u00ad7890` was no number to the
    detector and reached every reader whole); what it finds is replaced in `text`, the invisible characters inside
    a finding with it, those elsewhere kept. The detector runs once, on a text no longer than `text`."""
    seen, positions = _as_seen(text)
    result = mask_pii(seen, mode="partial", exclude=UNMASKED_PII_TYPES)
    if positions is None:
        return result.text, bool(result.matches)
    spans = [(m.start, m.end, m.replacement) for m in result.matches if m.end > m.start]
    return _replaced_as_seen(text, spans, positions), bool(result.matches)


_INVISIBLES = re.compile(f"[{INVISIBLE}]+")


def _as_seen(text: str) -> tuple[str, list[int] | None]:
    """`text` without its invisible characters, and where each of its characters stands in `text`; None for a text
    without any (it is what a reader sees already)."""
    if text.isascii() or _INVISIBLES.search(text) is None:
        return text, None
    positions: list[int] = []
    last = 0
    for run in _INVISIBLES.finditer(text):
        positions.extend(range(last, run.start()))
        last = run.end()
    positions.extend(range(last, len(text)))
    return _INVISIBLES.sub("", text), positions


def _replaced_as_seen(text: str, spans: Iterable[tuple[int, int, str]], positions: list[int] | None) -> str:
    """`text` with each of `spans`, found in it as `_as_seen` gave it (`positions`: where each character of that stands
    in `text`; None, the same text), replaced: the invisible characters inside a span go with it."""
    if positions is not None:
        spans = ((positions[start], positions[end - 1] + 1, replacement) for start, end, replacement in spans)
    return _replaced(text, spans)


def _replaced(text: str, spans: Iterable[tuple[int, int, str]]) -> str:
    """`text` with each of `spans` (start, end, replacement; in order, not overlapping) replaced."""
    pieces: list[str] = []
    last = 0
    for start, end, replacement in spans:
        pieces += (text[last:start], replacement)
        last = end
    return "".join(pieces) + text[last:] if pieces else text


# E-mail addresses written to dodge filters and link-makers (session 30): the "@" or a dot of the address in
# brackets, as a symbol or a word, with or without spaces: `budi [at] mail.com`, `budi(at)mail(dot)com`,
# `budi[@]mail.com`, `budi@mail[.]com`, `budi {at} mail {titik} co {titik} id`, `budi[dot]santoso(at)gmail.com`, any
# case, full-width brackets too (matched in the folded text). lokal-id's detector knows some of these (`[at]`, `(at)`),
# not a bracketed "@" or dot after a plain "@", nor a bracketed dot in the name, and then showed `budi@mail[.]com`
# and `budi[dot]s***@` whole or in part. Only a bracketed "at" counts: the bare word (`meet at mail.com`, English in
# Indonesian text) is prose, and so is a bracketed one with no address around it (`rapat [at] balai desa`).
def _bracketed(words: str) -> str:
    return rf"(?:\[\s*(?:{words})\s*\]|\(\s*(?:{words})\s*\)|\{{\s*(?:{words})\s*\}})"


_DOT_WORDS = r"dot|titik|\."
_OBFUSCATED_AT = rf"\s*{_bracketed('at|@')}\s*"
_OBFUSCATED_DOT = rf"\s*{_bracketed(_DOT_WORDS)}\s*"
_ANY_DOT = rf"(?:{_OBFUSCATED_DOT}|\.)"
_LOCAL_PART = rf"[a-z0-9_%+-]+(?:{_ANY_DOT}[a-z0-9_%+-]+)*"
_DOMAIN = rf"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:{_ANY_DOT}[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*{_ANY_DOT}[a-z]{{2,}}"
_EMAIL_WRITTEN = re.compile(
    rf"(?<![\w.%+@-])(?P<local>{_LOCAL_PART})(?P<at>{_OBFUSCATED_AT}|@)(?P<domain>{_DOMAIN})(?![\w@-])", re.IGNORECASE
)
_BRACKETED_DOT = re.compile(_OBFUSCATED_DOT, re.IGNORECASE)


def _mask_obfuscated_emails(text: str) -> tuple[str, bool]:
    """`text` with every e-mail address written with a bracketed "@" or dot (`_EMAIL_WRITTEN`) masked as the detector
    masks a plain one: its first character, `***@` and the domain written plainly (`b***@mail.com`). A plain address
    is left to the detector. Read, as the detector reads, without invisible characters (session 32)."""
    seen, positions = _as_seen(text)
    spans = [
        (match.start(), match.end(), f"{seen[match.start()]}***@{_BRACKETED_DOT.sub('.', match['domain']).lower()}")
        for match in _EMAIL_WRITTEN.finditer(_fold(seen))
        if match["at"] != "@" or _BRACKETED_DOT.search(match[0]) is not None
    ]
    if not spans:
        return text, False
    return _replaced_as_seen(text, spans, positions), True


def redact_text(text: str, principal: Principal | None) -> str:
    """The text as written for the national admin, masked for everyone else."""
    return text if SIGHT[audience_of(principal)].unmasked else mask_text(text)[0]


# The value of MASKED_BY for text masked now: what `mask_text` runs and what it leaves readable (a change to either
# must change this, or views would trust text masked the old way).
MASKING = (
    f"lokal-id {lokal_version} partial to a fixpoint, bracketed e-mail, through invisible characters, "
    f"attachment links, keeps {' '.join(UNMASKED_PII_TYPES)}"
)
# The marks of the same masking before it read text through invisible characters (before session 32), and before it
# masked bracketed e-mail addresses too (before session 30). Their text needs the passes added since, cheap ones
# (`_mask_added_since`), not the detector again: read again, the logged text is all the detector would get anyway
# (the original is in the vault), and on its own output it changes nothing (a fixpoint).
_MASKING_BEFORE_INVISIBLE = (
    f"lokal-id {lokal_version} partial to a fixpoint, bracketed e-mail, keeps {' '.join(UNMASKED_PII_TYPES)}"
)
_MASKING_WITHOUT_EMAILS = f"lokal-id {lokal_version} partial to a fixpoint, keeps {' '.join(UNMASKED_PII_TYPES)}"
_EARLIER_MASKING = frozenset({_MASKING_BEFORE_INVISIBLE, _MASKING_WITHOUT_EMAILS})
# Free text intake masks when it logs it since session 32 only: under an earlier mark it was logged as given, and is
# masked on read as any text is (attachment links: 2,048 characters without a space, on which the detector is fast).
_MASKED_AT_SOURCE_SINCE = frozenset({"url"})


def _mask_added_since(text: str) -> tuple[str, bool]:
    """What text logged under an earlier mark (`_EARLIER_MASKING`) needs: the bracketed e-mail addresses, and the
    numbers with invisible characters inside (`_mask_hidden_numbers`)."""
    text, emails = _mask_obfuscated_emails(text)
    text, numbers = _mask_hidden_numbers(text)
    return text, emails or numbers


# A number with invisible characters between its digits (and a space, dash or dot here and there, as the detector
# takes them): what the detector, reading the text as written, did not see before session 32. Unambiguous (a run of
# invisible characters can only go to the first class), so linear.
_HIDDEN_NUMBER = re.compile(rf"(?<![0-9])\+?[0-9](?:[{INVISIBLE}]*(?:[ .\-][{INVISIBLE}]*)?[0-9])*")
_MASKED_DIGITS = range(8, 20)  # a phone number (8-15 with its prefix), a NIK or KK (16), a card or account (to 19)


def _mask_hidden_numbers(text: str) -> tuple[str, bool]:
    """`text` with every number of 8 to 19 digits that has an invisible character inside masked as the detector
    masks what it takes it for: a phone number as one (0812****7890), 16 digits as a NIK (3171********8901), any
    other as an account (******7890). For text logged under an earlier mark, whose detector saw no number there:
    without running the detector again (a number's context, "NIK", "rekening", is not weighed, so such a number
    is masked whatever it is: a number someone hid characters in is seldom harmless)."""
    if text.isascii():
        return text, False
    spans = []
    for match in _HIDDEN_NUMBER.finditer(text):
        digits = _NOT_DIGITS.sub("", match[0])
        if len(digits) not in _MASKED_DIGITS or _INVISIBLES.search(match[0]) is None:
            continue
        phone = digits.startswith(("08", "628")) and parse_phone(digits).valid
        kind: PiiType = "PHONE" if phone else "NIK" if len(digits) == 16 else "BANK_ACCOUNT"
        spans.append((match.start(), match.end(), partial_mask(kind, digits)))
    return (_replaced(text, spans), True) if spans else (text, False)


class MaskedText(str):
    """Free text masked when it was logged, by the detector and policy in use (`MASKING`): the redactor scrubs the
    identity values a view carries from it but does not run the detector on it again. Session 24: on some texts
    (`"Bu " * 3333`) lokal-id's detector takes seconds, so a second pass on every read of a report let anyone
    stall the service with one submission."""

    __slots__ = ()


def masked_at_source(data: Mapping[str, Any], metadata: Mapping[str, Any]) -> dict[str, Any]:
    """An event's data for a view: when its metadata says its free text was masked by the detector and policy in
    use (MASKED_BY), each string under a free-text field becomes a MaskedText (masked by the passes added since, when
    the mark is an earlier one's); otherwise the data as it is, to be masked as any text is."""
    mark = metadata.get(MASKED_BY)
    if mark != MASKING and mark not in _EARLIER_MASKING:
        return dict(data)
    added = _mask_added_since if mark in _EARLIER_MASKING else None
    return _as_masked(data, False, added)


def _as_masked(value: Any, free: bool, added: Callable[[str], tuple[str, bool]] | None) -> Any:
    if isinstance(value, str):
        return value if not free else MaskedText(value if added is None else added(value)[0])
    if isinstance(value, Mapping):
        return {
            key: item if added is not None and key in _MASKED_AT_SOURCE_SINCE
            else _as_masked(item, free or key in FREE_TEXT_FIELDS, added)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_as_masked(item, free, added) for item in value]
    return value


# A mapping, or the folded `lapor.complaint.ComplaintState` (any dataclass) itself.
ComplaintView = Mapping[str, Any] | object


def redact_complaint(
    view: ComplaintView, principal: Principal | None, *, identity: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A complaint view (the folded state, as a dataclass or a dict, or a projection row) as the principal may see
    it; raises ReportNotVisible when they may not see the report at all. `identity` (the vault record) is scrubbed
    from its texts like the identity the view carries, and never shown (`redact_event_data`).

    Reads from the view: tracking_id, confidential and anonymous (missing means True: fail closed), agency_id,
    unit_id, channel, channel_ref, involved_agencies, and escalations[].to_agency_id with disposed_at."""
    fields = _as_mapping(view)
    if not _visible(fields, principal):
        raise ReportNotVisible(fields.get("tracking_id"))
    return _redact_view(fields, principal, identity)


def can_see(view: ComplaintView, principal: Principal | None) -> bool:
    """Whether the principal may see the report `view` shows (what `redact_complaint` refuses with
    ReportNotVisible), without redacting it: for a caller that only needs the answer."""
    return _visible(_as_mapping(view), principal)


def visible_complaints(
    views: Iterable[ComplaintView],
    principal: Principal | None,
    *,
    identity: Callable[[Mapping[str, Any]], Mapping[str, Any] | None] | None = None,
) -> list[dict[str, Any]]:
    """The views the principal may see, each redacted: for lists, feeds and search results. `identity(view)` is
    the reporter's vault record, scrubbed from the view's texts as in `redact_complaint`; it is asked only for an
    audience that does not read the texts as written, and only of the views it may see."""
    if identity is None or SIGHT[audience_of(principal)].unmasked:
        return [_redact_view(fields, principal) for fields in map(_as_mapping, views) if _visible(fields, principal)]
    return [
        _redact_view(fields, principal, identity(fields))
        for fields in map(_as_mapping, views)
        if _visible(fields, principal)
    ]


def reporter_identity(
    vault: Vault, state: ComplaintState | None, principal: Principal | None
) -> Mapping[str, Any] | None:
    """The reporter's identity from the vault, for `redact_event_data` to scrub from what officials wrote (an
    officer may name the reporter in a note or a draft, and the detector does not know every name); None, without
    reading the vault, for an audience that reads the texts as written (the national admin), and None for a report
    without one or whose entry was erased."""
    if state is None or SIGHT[audience_of(principal)].unmasked:
        return None
    return vault.identity(state.reporter_ref)


def redact_event_data(
    event_type: str,
    data: Mapping[str, Any],
    principal: Principal | None,
    *,
    anonymous: bool | None = None,
    identity: Mapping[str, Any] | None = None,
    detect: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """An event's data as the principal may see it (timelines, audit listings, the live stream). The caller has
    decided the principal may see the report. `anonymous` is the report's flag; ComplaintSubmitted carries its
    own, and when neither says, the report is treated as anonymous. `identity` is the reporter's (the vault
    record): never shown, its values are scrubbed from every text as a view's own identity is, since events never
    carry it. An internal event (public=False) keeps its facts but loses its text for audiences that may not read
    internal notes. `detect` stands in for `mask_text(text)[0]` (which it must equal on every text: the live
    stream's cache of its results, shared by every feed of a process)."""
    if anonymous is None:
        anonymous = data.get("anonymous") is not False
    try:
        return _redact(data, principal, anonymous=anonymous, channel=data.get("channel"), identity=identity,
                       detect=detect)
    except TypeError as e:
        raise TypeError(f"{event_type}: {e}") from e


def redact_metadata(metadata: Mapping[str, Any], principal: Principal | None) -> dict[str, Any]:
    """Event metadata as the principal may see it: outside the national admin, the actor of a reporter's own action
    is shown as "pelapor" (officials' actors stay: auditors must see who decided), and the vault references that
    lead to the unmasked text and intake's digests are left out."""
    if SIGHT[audience_of(principal)].unmasked:
        return dict(metadata)
    shown = {key: value for key, value in metadata.items() if key not in _WITHHELD_METADATA}
    if shown.get("role") == Role.reporter and "actor" in shown:
        shown["actor"] = REPORTER_ACTOR
    return shown


def conceal_requester(anonymous: bool) -> None:
    """The request in progress files, reads or acts on a report whose reporter may be the one asking (a submission
    by any channel, the tracking view, the reporter's actions): when the report is anonymous, unlink the request
    from the address it came from (`lapor.correlation.withhold_client`). Its log line otherwise names the address
    beside the correlation id, and the path (the tracking ID): the report's events carry both, and whoever reads
    the log and the events (operators, auditors, the live stream) could join them."""
    if anonymous:
        withhold_client()


def conceal_reporter_of(store: EventStore, text: str) -> tuple[str, list[RecordedEvent]] | None:
    """Whoever asks about report `text` (a tracking ID as typed in a path) may be its reporter: when the report is
    anonymous, unlink the request from its address (`conceal_requester`). Nothing to hide for an ID that names no
    report. Returns the report's stream and its submission as read (none: no such report), None for a text that
    is no tracking ID."""
    try:
        tracking_id = parse_tracking_id(text)
    except InvalidTrackingId:
        return None
    stream = stream_of(tracking_id)
    submitted = store.read_stream(stream, limit=1)
    # Anonymity is the submission's, never changed later; one without the flag is taken as anonymous (fail closed).
    conceal_requester(bool(submitted) and submitted[0].data.get("anonymous") is not False)
    return stream, submitted


# The submission of the report the request in progress names, as `ConcealReporterMiddleware` read it: (stream,
# [its first event] or [] for no report). A submission never changes once written, so the route takes it from here
# (`submission_read`) instead of reading it a second time.
_SUBMISSION: ContextVar[tuple[str, list[RecordedEvent]] | None] = ContextVar("lapor_submission", default=None)


def submission_read(stream: str) -> list[RecordedEvent] | None:
    """The first event of `stream` as the request in progress read it already (a list of at most one), else None."""
    read = _SUBMISSION.get()
    return read[1] if read is not None and read[0] == stream else None


class ReporterRoute(APIRoute):
    """A route the reporter of the report its path names calls (`/api/complaints/{tracking_id}`: the tracking view
    and the reporter's actions). Its requests are the reporter's (`ReportRequests`), as are those of a path below a
    report that no route serves; those of the other routes below a report (the officials' decisions) are not."""


# A path below a report: the report's own resource, or anything under it.
_REPORT_PATH = re.compile(r"/api/complaints/(?P<tracking_id>[^/]+)(?:/.*)?")


class ReportRequests:
    """Which requests name a report as its reporter's may (session 30): a path below `/api/complaints/{tracking_id}`
    that is not an officials' route. So the reporter's routes (`ReporterRoute`), a method they do not take (405),
    a trailing slash (a redirect), a sub-resource no route serves (404: `/attachments`), whatever a client asks.
    Until session 30 only what reached a reporter's route was unlinked, and those others were logged with the
    client's address beside the tracking ID. The officials' routes below a report (verify, dispose, follow-ups,
    ...) keep the address (session 29's rule): they are asked with a bearer token, by an official."""

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self._officials = [
            route.path_regex for route in routes
            if isinstance(route, APIRoute) and not isinstance(route, ReporterRoute)
            and _REPORT_PATH.fullmatch(route.path)
        ]

    def tracking_id(self, path: str) -> str | None:
        """The tracking ID (as typed) a request for `path` names as its reporter's may; None for any other."""
        below = _REPORT_PATH.fullmatch(path)
        if below is None or any(regex.match(path) for regex in self._officials):
            return None
        return below["tracking_id"]


class ConcealReporterMiddleware:
    """Unlinks every request that names an anonymous report as its reporter's may (`ReportRequests`) from its
    client's address before anything of it runs (`conceal_reporter_of`), whether a route then takes it or not; and
    runs every such request, whatever the report, under a correlation id of its own, not one the client chose.
    Inside the input guard: what the guard refuses is not worth a read of the store, and it withholds the address
    of those requests whatever the report (`lapor.limits`)."""

    def __init__(self, app: ASGIApp, report_requests: ReportRequests) -> None:
        self.app = app
        self.report_requests = report_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (text := self.report_requests.tracking_id(scope["path"])) is not None:
            # Whatever the report, and whether there is one: the answer's X-Correlation-ID was the client's own for
            # an unknown ID and a fresh one for an anonymous report, so it told who sent one whether a confidential
            # report exists (session 30).
            decline_chosen_correlation_id()
            read = await run_in_threadpool(conceal_reporter_of, scope["app"].state.context.store, text)
            token = _SUBMISSION.set(read)
            try:
                await self.app(scope, receive, send)
            finally:
                _SUBMISSION.reset(token)
            return
        await self.app(scope, receive, send)


def _as_mapping(view: ComplaintView) -> Mapping[str, Any]:
    if isinstance(view, Mapping):
        return view
    if dataclasses.is_dataclass(view) and not isinstance(view, type):
        return dataclasses.asdict(view)
    raise TypeError(f"a complaint view is a mapping or a dataclass, not a {type(view).__name__}")


def _redact_view(
    view: Mapping[str, Any], principal: Principal | None, identity: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    anonymous = view.get("anonymous") is not False
    return _redact(view, principal, anonymous=anonymous, channel=view.get("channel"), identity=identity)


def _visible(view: Mapping[str, Any], principal: Principal | None) -> bool:
    return can_see_report(
        principal,
        confidential=view.get("confidential") is not False,
        agency_id=view.get("agency_id"),
        unit_id=view.get("unit_id"),
        tracking_id=view.get("tracking_id"),
        involved_agencies=_involved_agencies(view),
        channel=source_channel(view.get("channel"), view.get("channel_ref")),
    )


def _involved_agencies(view: Mapping[str, Any]) -> Iterator[str]:
    """Agencies besides the owner that work on the report: listed ones, those above the owner, and the escalation
    targets of the present holding (`escalated_to`)."""
    yield from view.get("involved_agencies") or ()
    yield from agencies_above(view.get("agency_id"))
    yield from escalated_to(
        view.get("escalations") or (), agency_id=view.get("agency_id"), disposed_at=view.get("disposed_at")
    )


def ancestors_and_self(agency_id: str) -> list[str]:
    """`pemda-53.71/dinkes/pkm-oepoi` -> [`pemda-53.71`, `pemda-53.71/dinkes`, `pemda-53.71/dinkes/pkm-oepoi`]."""
    parts = agency_id.split("/")
    return ["/".join(parts[: n + 1]) for n in range(len(parts))]


def involved_agencies(state: Any) -> list[str]:
    """For a folded `ComplaintState`: the agencies besides its holder that may see the report, those above the
    holder and those it was escalated to in the present holding."""
    above = agencies_above(state.agency_id)
    return above + escalated_to(state.escalations, agency_id=state.agency_id, disposed_at=state.disposed_at)


def agencies_above(agency_id: str | None) -> list[str]:
    """The agencies above a holder, which see what it holds: a pemda's admin sees what its OPD holds."""
    return [] if agency_id is None else ancestors_and_self(agency_id)[:-1]


def escalated_to(escalations: Iterable[Any], *, agency_id: str | None, disposed_at: datetime | None) -> list[str]:
    """The agencies the report was escalated to while its present holder has it (a provincial coordinator
    watching an overdue follow-up, the Ombudsman office): `escalations` are the fold's (`Escalation`s or their
    dicts), `disposed_at` is its latest disposition. An escalation belongs to the holding it was made in: once
    the report is returned as "bukan wewenang" (no holder) or disposed elsewhere, its target has no part in
    the report, or an agency a report was escalated to and that then returned it would follow the next
    agency's handling, internal notes included. An escalation at the very moment of the latest disposition
    counts as the earlier holding's: a training clock stands still between an operator's moves, so the order is
    unknown there, and the side that shows less is the safe one (in one append with a disposition comes only
    routing's `bounce_limit` flag, naming the national admin, who sees every report anyway). An escalation to the
    national level names the national admin agency: the national admin watches it there, not `kemenpanrb`'s own
    agency staff, an agency taking dispositions like any other (they followed a ministry's escalated report,
    internal notes included, until a bug hunt found it)."""
    if agency_id is None:
        return []
    return [record["to_agency_id"] for record in present_escalations(escalations, disposed_at)
            if record.get("to_agency_id") not in (None, NATIONAL_ADMIN_AGENCY)]


def present_escalations(escalations: Iterable[Any], disposed_at: datetime | None) -> list[Mapping[str, Any]]:
    """The escalations (as dicts) made in the present holding: after the latest disposition (`disposed_at`; none
    without one), and after an Ombudsman takeover, which starts a holding too: it changes the holder, not
    `disposed_at` (until session 24 a province red-marked before the takeover went on seeing the Ombudsman's
    handling, internal notes included). One rule for who sees the report (`escalated_to`) and for the level an
    assignment keeps (`services.followup.decide`)."""
    if disposed_at is None:
        return []
    records = [escalation if isinstance(escalation, Mapping) else dataclasses.asdict(escalation)
               for escalation in escalations]
    began = max([disposed_at, *(record["at"] for record in records if record.get("kind") == _TAKEOVER)])
    return [record for record in records if record["at"] > began]


_TAKEOVER = "ombudsman"  # the escalation kind by which the Ombudsman takes a report over


def _detected(text: str) -> str:
    return mask_text(text)[0]


@dataclasses.dataclass(frozen=True, slots=True)
class _Scope:
    dropped: frozenset[str]
    internal: bool
    masked: bool
    known: re.Pattern[str] | None
    detect: Callable[[str], str] = _detected  # the detector's masking of a (scrubbed) text


def _redact(
    data: Mapping[str, Any],
    principal: Principal | None,
    *,
    anonymous: bool,
    channel: str | None,
    identity: Mapping[str, Any] | None = None,
    detect: Callable[[str], str] | None = None,
) -> dict:
    sight = SIGHT[audience_of(principal)]
    if sight.unmasked:
        return _walk_mapping(data, _Scope(SECRET_FIELDS, internal=True, masked=False, known=None))
    dropped = SECRET_FIELDS | IDENTITY_FIELDS
    if anonymous or channel in IDENTIFYING_CHANNELS or not sight.linking:
        dropped |= LINKING_FIELDS
    # Identity values the view itself carries (or the caller gives) are scrubbed wherever they appear, even where
    # the detector would not recognise them (a bare name without "nama saya" before it).
    carried = _identity_values(data, dropped - SECRET_FIELDS)
    known = _known_values_pattern([*carried, *_identity_values(identity or {}, dropped, under_identity=True)])
    return _walk_mapping(data, _Scope(dropped, internal=sight.internal, masked=True, known=known,
                                      detect=detect or _detected))


def _walk_mapping(data: Mapping[str, Any], scope: _Scope, *, free: bool = False) -> dict[str, Any]:
    hidden_internal = not scope.internal and data.get(INTERNAL_MARKER) is False
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in scope.dropped:
            continue
        free_text = free or key in FREE_TEXT_FIELDS
        if hidden_internal and (free_text or key in INTERNAL_ONLY_FIELDS):
            continue
        out[key] = _walk(value, scope, free=free_text)
    return out


def _walk(value: Any, scope: _Scope, *, free: bool = False) -> Any:
    """`free`: the value sits under a free-text field, so every string in it is masked, not only scrubbed."""
    if isinstance(value, str):
        return _mask(value, scope) if free else _scrub(value, scope)
    if isinstance(value, _SCALARS):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return _walk_mapping(value, scope, free=free)
    if isinstance(value, list | tuple | set | frozenset):
        return [
            _walk(item, scope, free=free)
            for item in value
            if scope.internal or not (isinstance(item, Mapping) and item.get(INTERNAL_MARKER) is False)
        ]
    # Fail closed: a value we cannot look inside could carry personal data.
    raise TypeError(f"cannot redact a {type(value).__name__}")


def _mask(text: str, scope: _Scope) -> str:
    if not scope.masked:
        return text
    scrubbed = _scrub(text, scope)
    return scrubbed if isinstance(text, MaskedText) else scope.detect(scrubbed)


def _scrub(text: str, scope: _Scope) -> str:
    """The identity values replaced, matched in the folded text (`_fold` keeps every position)."""
    if scope.known is None:
        return text
    pieces: list[str] = []
    last = 0
    for match in scope.known.finditer(_fold(text)):
        pieces += (text[last : match.start()], IDENTITY_MASK)
        last = match.end()
    return "".join(pieces) + text[last:] if pieces else text


def _identity_values(data: Any, fields: frozenset[str], under_identity: bool = False) -> Iterator[str]:
    if isinstance(data, str):
        if under_identity:
            yield data
    elif dataclasses.is_dataclass(data) and not isinstance(data, type):
        yield from _identity_values(dataclasses.asdict(data), fields, under_identity)
    elif isinstance(data, Mapping):
        for key, value in data.items():
            yield from _identity_values(value, fields, under_identity or key in fields)
    elif isinstance(data, list | tuple | set | frozenset):
        for item in data:
            yield from _identity_values(item, fields, under_identity)


def _known_values_pattern(values: Iterable[str]) -> re.Pattern[str] | None:
    words = {_fold(v).strip() for v in values if len(v.strip()) >= _MIN_KNOWN_VALUE}
    numbers = {word: digits for word in words if (digits := _number_of(word)) is not None}
    texts = words - numbers.keys()
    alternatives = []
    if numbers:
        # A number is its digits with any separators between them, and no digit on either side: 0812-3456-7890,
        # HP0812.3456.7890, NIK5371014508850001.
        numbers_spelled = map(_spelled, sorted(set(numbers.values()), key=len, reverse=True))
        alternatives.append(r"(?<!\d)(?:" + "|".join(numbers_spelled) + r")(?!\d)")
    if texts:
        # Longest first, so "Budi Santoso" is replaced whole rather than leaving "Santoso"; any run of whitespace,
        # underscores or invisible characters matches the spaces of the stored value.
        spelled = (_NAME_SPACE.join(map(_letters, w.split())) for w in sorted(texts, key=len, reverse=True))
        alternatives.append(r"(?<!\w)(?:" + "|".join(spelled) + r")(?!\w)")
    return re.compile("|".join(alternatives), re.IGNORECASE) if alternatives else None


def identity_values_in(values: Iterable[str], text: str) -> list[str]:
    """Those of the identity `values` that can occur in `text` as the scrub matches them (folded; a number's
    digits in order, whatever is between them): a cheap test that spares compiling a pattern for the others."""
    folded = _without_marks(_fold(text).lower())
    digits_in_text: str | None = None
    found = []
    for value in values:
        number = _number_of(_fold(value).strip())
        if number is not None:
            if digits_in_text is None:
                digits_in_text = _NOT_DIGITS.sub("", folded)
            if _phone_core(number)[1] in digits_in_text:
                found.append(value)
        elif all(word in folded for word in _without_marks(_fold(value).lower()).split()):
            found.append(value)
    return found


# Characters that show nothing (`lapor.patterns.INVISIBLE`: zero width space, the joiners, soft hyphen, word joiner,
# the BOM, the marks, embeddings and isolates of direction), which a text may carry anywhere (session 31). Pasted
# text brings them (a soft hyphen from a web page, a word joiner from a phone), and one between the digits of the
# reporter's own NIK or number, or inside their name, shows it to the reader as written: `5371\u200b0145...` was not
# the NIK to the scrub, nor to the detector, and reached the public whole. They count as separators between digits,
# and are passed over inside a name as marks are.
# What people put between the digits of a number: 0812-3456-7890, 5371.0145.0885.0001, 5371/0145, (0380) 821 123,
# the dashes a phone's keyboard puts for "-", and invisible characters.
_SEPARATOR = rf"[\s._\-\u2010-\u2015/(){INVISIBLE}]"
_SEPARATORS = _SEPARATOR + "*"
_SEPARATOR_CHARACTERS = re.compile(_SEPARATOR + "+")
_NOT_DIGITS = re.compile(r"\D+")
# An Indonesian number written with its country code (62, +62, 0062) or its trunk prefix (0), or both ("+62 (0)812").
_PHONE_PREFIX = rf"(?:(?:(?:\+|00){_SEPARATORS})?6{_SEPARATORS}2{_SEPARATORS})?(?:0{_SEPARATORS})?"
# Phone numbers have 8 to 15 digits with their prefix (E.164 allows 15); a NIK has 16.
_PHONE_DIGITS = range(8, 16)


# A number shorter than this is matched as its digits together (still with no digit on either side, so glued to
# a word too): spelled with separators, a short sender code ("2024") would also blank "20-24 Desember".
_MIN_SPELLED_DIGITS = 6


def _number_of(value: str) -> str | None:
    """The digits of an identity value that is a number (a NIK, a phone number with or without its "+"), else
    None."""
    digits = _SEPARATOR_CHARACTERS.sub("", value.removeprefix("+"))
    return digits if digits.isascii() and digits.isdigit() else None


def _phone_core(digits: str) -> tuple[bool, str]:
    """Whether `digits` are an Indonesian phone number, and the digits that must appear whatever prefix it is
    written with: 6281234567890 and 081234567890 are both 81234567890."""
    if len(digits) in _PHONE_DIGITS and digits.startswith(("62", "0")):
        return True, digits[2:] if digits.startswith("62") else digits[1:]
    return False, digits


def _spelled(digits: str) -> str:
    """The pattern of a number: its digits with any separators between them, a phone number's after any prefix;
    a short one's digits together."""
    if len(digits) < _MIN_SPELLED_DIGITS:
        return re.escape(digits)
    phone, core = _phone_core(digits)
    return (_PHONE_PREFIX if phone else "") + _SEPARATORS.join(core)


# A name is matched whatever diacritics its letters carry, in either form, and whichever apostrophe it is written
# with (session 29): an anonymous reporter named "Dede Sunarya" who wrote "Dédé Sunarya" in the report, text in
# decomposed form (a letter, then its combining mark), or "Nur’aini" with the apostrophe a phone's keyboard puts
# for "'" reached the public as written. `_fold` reads a letter with diacritics as its letter and those apostrophes
# as "'"; a combining mark standing alone (it keeps its position) is passed over where a name's letters are matched,
# and so is an invisible character (session 31: `B\u200budi Santoso` showed the name and was not scrubbed).
_APOSTROPHES = dict.fromkeys("\u2018\u2019\u02bc\u00b4", "'")
_MARK = "[\u0300-\u036f]"  # the combining diacritical marks
# A combining mark or an invisible character, one class: what `_without_marks` leaves out, and what may stand between
# the letters of a name's word (a quantifier of marks followed by one of marks and invisibles would try every split
# of a long run of marks: quadratic). Between its words: spaces, underscores, or an invisible character alone.
_MARK_OR_INVISIBLE = f"[\u0300-\u036f{INVISIBLE}]"
_MARKS = re.compile(_MARK_OR_INVISIBLE)
_WITHIN_A_WORD = _MARK_OR_INVISIBLE + "*"
_NAME_SPACE = rf"[\s_{INVISIBLE}]+"


def _letters(word: str) -> str:
    """The pattern of one word of a name, folded: its letters with any combining marks and invisible characters
    between them, and combining marks after the last (not invisible ones: an isolate or embedding closing the name
    stays)."""
    return _WITHIN_A_WORD.join(map(re.escape, _without_marks(word))) + _MARK + "*"


def _without_marks(text: str) -> str:
    return text if text.isascii() else _MARKS.sub("", text)


class _FoldTable(dict[int, str]):
    """`str.translate`'s table for `_fold`, filled as characters are met (up to `_FOLD_CACHE` of them)."""

    def __missing__(self, code: int) -> str:
        character = chr(code)
        folded = unicodedata.normalize("NFKC", character)
        if len(folded) != 1:
            folded = character
        decomposed = unicodedata.normalize("NFD", folded)
        if len(decomposed) > 1 and all(unicodedata.combining(mark) for mark in decomposed[1:]):
            folded = decomposed[0]
        folded = _APOSTROPHES.get(folded, folded)
        digit = unicodedata.decimal(folded, None)
        if digit is not None:
            folded = str(digit)
        if len(self) < _FOLD_CACHE:
            self[code] = folded
        return folded


_FOLD_CACHE = 4096
_FOLD_TABLE = _FoldTable()


def _fold(text: str) -> str:
    """`text` with each character in its NFKC compatibility form where that is a single character, and every
    decimal digit as an ASCII digit (full-width ５３７１, Arabic-Indic ٥٣٧١: 5371), a letter with diacritics as its
    letter (é: e) and a typographic apostrophe as "'", so a value cannot hide behind another way of writing its
    characters. One character for one, so positions in the result are positions in `text`."""
    return text if text.isascii() else text.translate(_FOLD_TABLE)
