"""Value types, errors and the abstract store every adapter implements."""

from __future__ import annotations

import hashlib
import itertools
import re
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import orjson
from uuid_utils.compat import uuid7

from lapor.patterns import CONTROL, WHITESPACE

if TYPE_CHECKING:
    from lapor.store.vault import Vault

_Decoded = TypeVar("_Decoded")

# Expected-version sentinels, numbered as in EventStoreDB's gRPC API.
NO_STREAM = -1
ANY = -2
EXISTS = -4
ExpectedVersion: TypeAlias = int

GENESIS_HASH = "0" * 64
# The largest version and schema version an append may name: a stream's versions are 64-bit (SQLite INTEGER), an
# event's schema version 32-bit (PostgreSQL `integer`). A larger one failed the insert of a whole group commit.
VERSION_MAX = 2**63 - 1
SCHEMA_VERSION_MAX = 2**31 - 1
_EVENT_TYPE = re.compile(f"[^{CONTROL}]+")
# A stream is named `<category>-<id>`: the category letters and digits, the id anything without spaces or control
# characters (`lapor.patterns`), 200 characters at most. The exported envelope's schema publishes the same.
STREAM_PATTERN = f"^[A-Za-z0-9]+-[^{WHITESPACE}{CONTROL}]+$"
STREAM_MAX_LENGTH = 200
_STREAM = re.compile(STREAM_PATTERN)


def category_of(stream: str) -> str:
    """`complaint-ABC` -> `complaint` (the part before the first dash)."""
    return stream.split("-", 1)[0]


SHARE_BUCKETS = 1024  # the buckets a category's streams fall in, for `StreamShare`
SHARE_DIGITS = 7  # hex digits of the stream name's MD5 that pick its bucket: 28 bits, a plain int in SQL too


@dataclass(frozen=True, slots=True)
class StreamShare:
    """A share of one category's streams: those whose bucket (`stream_bucket`) lies in [start, stop); events of
    every other category belong to every share. `lapor rebuild --processes N` hands one to each process, so each
    reads and folds only its complaints (and the whole directory), and the store drops the others before
    decoding them. Every adapter puts a stream in the same bucket."""

    start: int
    stop: int
    category: str = "complaint"

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.stop <= SHARE_BUCKETS:
            raise ValueError(f"a share is a range of the buckets 0..{SHARE_BUCKETS}, not {self.start}..{self.stop}")

    @classmethod
    def split(cls, weights: Sequence[float], category: str = "complaint") -> list[StreamShare]:
        """Shares of all buckets, in proportion to `weights` (at least one bucket each)."""
        if not 0 < len(weights) <= SHARE_BUCKETS or min(weights) <= 0:
            raise ValueError(f"between 1 and {SHARE_BUCKETS} shares of positive weight, not {list(weights)}")
        total, reached, bounds = sum(weights), 0.0, [0]
        for index, weight in enumerate(weights):
            reached += weight
            least, most = bounds[-1] + 1, SHARE_BUCKETS - (len(weights) - index - 1)
            bounds.append(min(max(round(SHARE_BUCKETS * reached / total), least), most))
        return [cls(start, stop, category) for start, stop in itertools.pairwise(bounds)]

    @property
    def first(self) -> bool:
        return self.start == 0

    def holds(self, stream: str) -> bool:
        """Whether an event of `stream` belongs to this share."""
        return category_of(stream) != self.category or self.start <= stream_bucket(stream) < self.stop

    def __str__(self) -> str:
        return f"{self.category} streams in buckets {self.start}-{self.stop - 1} of {SHARE_BUCKETS}"


def stream_bucket(stream: str) -> int:
    """The bucket of `stream` (see `StreamShare`): the first 28 bits of its name's MD5, modulo SHARE_BUCKETS. MD5
    because PostgreSQL computes it in SQL; nothing depends on it being secure."""
    return int(hashlib.md5(stream.encode(), usedforsecurity=False).hexdigest()[:SHARE_DIGITS], 16) % SHARE_BUCKETS


ReadAllShape = tuple[bool, bool]  # (category given, share given)


def read_all_statements(select: str, bucket: str, mark: str) -> dict[ReadAllShape, str]:
    """The SQL adapters' `read_all` statements, one per shape, taking `read_all_query`'s parameters: `select` the
    columns from `events`, `bucket` the SQL for `stream_bucket(stream)`, `mark` the driver's placeholder."""
    in_share = f" AND (category <> {mark} OR {bucket} BETWEEN {mark} AND {mark})"
    return {
        (category, share): f"{select} WHERE "
        + (f"category = {mark} AND position >= {mark}" if category else f"position >= {mark}")
        + (in_share if share else "")
        + f" ORDER BY position LIMIT {mark}"
        for category in (False, True)
        for share in (False, True)
    }


def read_window(start: int, limit: int | None) -> tuple[int, int]:
    """A read's first position (or version) and its limit as every adapter hands them to its database: no limit is
    the largest; a negative limit is refused (SQLite read it as no limit, PostgreSQL failed), and a number past 64
    bits is taken as the largest 64-bit one (SQLite failed on it, PostgreSQL on a limit): a read from there finds
    nothing, such a limit reads everything."""
    if limit is None:
        return min(start, VERSION_MAX), VERSION_MAX
    if limit < 0:
        raise ValueError(f"a read's limit is 0 or more, not {limit}")
    return min(start, VERSION_MAX), min(limit, VERSION_MAX)


def read_all_query(
    from_position: int, category: str | None, limit: int, share: StreamShare | None
) -> tuple[ReadAllShape, tuple[Any, ...]]:
    """A `read_all` as the SQL adapters ask it: which of `read_all_statements` and its parameters in their order:
    category, from_position, the share's category and first and last bucket, limit."""
    from_position, limit = read_window(from_position, limit)
    params: tuple[Any, ...] = (from_position,) if category is None else (category, from_position)
    if share is not None:
        params += (share.category, share.start, share.stop - 1)
    return (category is not None, share is not None), (*params, limit)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the bytes the hash chain is computed over."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def describe_expected(expected: ExpectedVersion) -> str:
    return {NO_STREAM: "no stream", ANY: "any", EXISTS: "stream exists"}.get(expected, str(expected))


class StoreError(Exception):
    """Base of every error the store raises on purpose. A plain StoreError from `append` says nothing of whether
    the append was recorded (the connection lost during COMMIT, a writer process gone before it answered)."""

    # The kind of its cause (`error_kind`) when that cause was raised in another process, the SQLite store's writer,
    # which sends its words and this, not the exception.
    remote_cause: str | None = None


# Causes `error_kind` follows at most: a cause's cause's ... is the database driver's by then.
KIND_DEPTH = 4


def error_kind(error: BaseException) -> str:
    """The kind of failure `error` is, in words safe to show whoever asks: its class's name and its causes' (the
    `raise ... from` chain, or the error it was raised while handling), outermost first ("AppendNotRecorded from
    OperationalError"), with SQLite's code name where there is one ("OperationalError SQLITE_FULL"), and a driver's
    private class by a readable name (`_kind_name`: psycopg's wait that ran out is "timeout"). Never an error's
    message: a driver's words may hold host names, user names, paths."""
    kinds: list[str] = []
    for current in causes(error):
        code = getattr(current, "sqlite_errorname", None)
        kinds.append(_kind_name(type(current)) + (f" {code}" if isinstance(code, str) else ""))
        remote = current.remote_cause if isinstance(current, StoreError) else None
        if remote is not None and current.__cause__ is None:
            # Its cause is the writer process's, whatever it was raised while handling (session 31: an append retried
            # in an `except` block was named after the error handled there).
            kinds.append(remote)
            break
    return " from ".join(kinds)


def causes(error: BaseException) -> Iterator[BaseException]:
    """`error` and what it was raised from or while handling, outermost first: at most KIND_DEPTH of them."""
    current: BaseException | None = error
    for _ in range(KIND_DEPTH):
        if current is None:
            return
        yield current
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)


# Private classes of the drivers, by the kind `error_kind` shows for them. Session 31: /readyz showed psycopg's
# `_WaitTimeout` (a wait for the server's answer that ran out) by its private name.
_KIND_NAMES = {"psycopg.errors._WaitTimeout": "timeout"}


def _kind_name(cls: type[BaseException]) -> str:
    """A class's name as `error_kind` shows it: its own, or for a private one (a leading "_") the readable name
    `_KIND_NAMES` gives it, else its nearest public base's."""
    name = _KIND_NAMES.get(f"{cls.__module__}.{cls.__qualname__}")
    if name is not None:
        return name
    return next(base.__name__ for base in cls.__mro__ if not base.__name__.startswith("_"))


class AppendNotRecorded(StoreError):
    """The store knows the append was not recorded and never will be: refused before its transaction (the store
    closed, the write lock not taken) or its transaction rolled back. What was prepared for it (vault entries) may
    be dropped at once; after a plain StoreError it may not, since the append may have committed."""


class LockWaitExpired(StoreError):
    """PostgreSQL gave up a statement's wait for a lock another session holds (`lock_timeout`, which the store and
    the read models keep a little below their answer timeout: `lapor.store.postgres.AnsweredConnection`). The server
    answered, so the statement failed and its transaction rolled back, and the connection stays usable. An append
    whose group meets it before COMMIT (the wait for `lapor_head`'s row, which another process's writer holds) is an
    `AppendNotRecorded` with this as its cause (decided, session 31: the transaction rolled back, nothing of the
    group was recorded, as for any failure before COMMIT); at COMMIT it stays a plain `StoreError`, as every failure
    there does on PostgreSQL (no lock is waited for there but NOTIFY's queue's, held only by commits under way).
    Tried again like any `StoreError`: the lock is someone else's, for a while."""


class WrongExpectedVersion(StoreError):
    """The stream is not at the version the writer expected; `actual_version` is -1 for no stream."""

    def __init__(self, stream: str, expected_version: ExpectedVersion, actual_version: int) -> None:
        self.stream = stream
        self.expected_version = expected_version
        self.actual_version = actual_version
        super().__init__(f"{stream}: expected version {describe_expected(expected_version)}, actual {actual_version}")


class DuplicateEventId(StoreError):
    """Some, but not all, of the event ids of an append were already recorded (or elsewhere)."""


class UndecodableField(ValueError):
    """A stored field of an event (`field`: data, metadata, recorded_at) that does not decode; the decode's own error
    is its `__cause__`. Raised by the adapters' slow paths (`decoded`), for `UnreadableEvent` to say which field."""

    def __init__(self, field: str, cause: Exception) -> None:
        self.field = field
        self.cause = cause
        super().__init__(f"{field}: {type(cause).__name__}: {cause}")


def decoded(field: str, decode: Callable[[Any], _Decoded], value: Any) -> _Decoded:
    """`decode(value)`, or `UndecodableField` naming `field` when it does not decode."""
    try:
        return decode(value)
    except (ValueError, TypeError) as error:
        raise UndecodableField(field, error) from error


class UnreadableEvent(ValueError):
    """A read met an event whose stored fields do not decode (data that is not JSON, a `recorded_at` that is not a
    time): SQLite keeps whatever bytes it is given, and PostgreSQL's `json` and `timestamptz` hold values that Python
    cannot (a lone surrogate, a number past a double, a year past 9999). `readable`: the events that read met before
    it, in order, so a reader handles them and then passes it by `position` (a subscription parks it), where it
    used to fail every read of the page for good. `stream`, `version` and `type` are those stored with it, None
    when they are not of their kind either. A ValueError, as the decode's own error was: never a `StoreError`, which
    says the store cannot be used just now and is tried again.

    `problem` (and `reason`, which parks it) says what kind of error and which field, never the decode's words:
    they quote the stored content ("Invalid isoformat string: 'kemarin sore'"), which may hold a reporter's personal
    data, and they are shown to auditors and kept in the parked events (session 31). The exception's own text has
    them, for the server's log. `then`: what follows from it, added to both."""

    def __init__(self, readable: list[RecordedEvent], row: Sequence[Any], cause: Exception, then: str = "") -> None:
        self.readable = readable
        self.position: int = row[_POSITION]
        self.stream: str | None = row[_STREAM_FIELD] if isinstance(row[_STREAM_FIELD], str) else None
        self.version: int | None = row[_VERSION] if _is_int(row[_VERSION]) else None
        self.type: str | None = row[_TYPE] if isinstance(row[_TYPE], str) else None
        self.field = cause.field if isinstance(cause, UndecodableField) else None
        kind = type(cause.cause if isinstance(cause, UndecodableField) else cause).__name__
        after = f"; {then}" if then else ""
        self.problem = (f"it does not decode ({kind})" if self.field is None
                        else f"its {self.field} does not decode ({kind})") + after
        self.reason = f"cannot be read: {self.problem}"
        self.where = f"position {self.position}" if self.stream is None else (
            f"{self.stream} version {self.version} (position {self.position})")
        # What the terminal and the parked events say of it (`lapor.subscriptions.describe_failure`; session 32).
        self.described = f"the event at {self.where} {self.reason}"
        error = f"{type(cause).__name__}: {' '.join(str(cause).split())}"  # why, in one line: the log's only
        super().__init__(f"the event at {self.where} cannot be read: {error}{after}")

    @property
    def category(self) -> str | None:
        return None if self.stream is None else category_of(self.stream)


def unreadable_of(error: BaseException) -> UnreadableEvent | None:
    """The `UnreadableEvent` `error` is, or was raised from or while handling (a service may wrap it)."""
    return next((cause for cause in causes(error) if isinstance(cause, UnreadableEvent)), None)


# Where the adapters' rows (`lapor.store.sqlite.COLUMNS`, `lapor.store.postgres.SELECT_EVENTS`) hold what
# `UnreadableEvent` names.
_STREAM_FIELD, _VERSION, _POSITION, _TYPE = 1, 2, 3, 4


def decoded_events(
    rows: Iterable[Sequence[Any]], decode: Callable[[Sequence[Any]], RecordedEvent]
) -> list[RecordedEvent]:
    """The events of `rows`, decoded one by one, up to the first that does not decode: `UnreadableEvent` then. The
    adapters decode a whole read at once and come here only when that failed (the fast path stays as it was)."""
    events: list[RecordedEvent] = []
    for row in rows:
        try:
            events.append(decode(row))
        except (ValueError, TypeError) as error:
            raise UnreadableEvent(events, row, error) from error
    return events


def read_readable(
    store: EventStore, from_position: int, category: str | None, limit: int, share: StreamShare | None = None
) -> tuple[list[RecordedEvent], UnreadableEvent | None]:
    """`store.read_all`, and None; or, where the read meets an event that cannot be read, the events before it and
    that one (`UnreadableEvent`), which the reader handles and then passes by its position (the subscriptions and
    the rebuild park it, the live stream leaves it out)."""
    try:
        return store.read_all(from_position, category, limit, share), None
    except UnreadableEvent as unreadable:
        return unreadable.readable, unreadable


def new_event_id() -> uuid.UUID:
    """A fresh event id: a UUIDv7 (RFC 9562), which starts with the time in milliseconds. The stores keep a unique
    index on event ids; time-ordered ids land on its last pages, where random (v4) ids dirtied one page of it per
    append, each written to the log at commit (measured on SQLite, 32 threads appending: 8,300–9,700 events/s
    with v4 ids, 12,400–13,200 with time-ordered ones). Ids derived from a cause or an idempotency key
    (`lapor.commands.caused_event_id`, intake's) stay as they are: a retry must find the same id."""
    return uuid7()


@dataclass(frozen=True, slots=True)
class NewEvent:
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    event_id: uuid.UUID = field(default_factory=new_event_id)
    schema_version: int = 1


class RecordedEvent:
    """An event as the store recorded it.

    Replaying a log reads millions of these and a fold looks only at `type`, `data`, `version` and
    `recorded_at`, so an adapter may hand over `event_id` as text and `metadata` as raw JSON: they are
    decoded on first access (each decode costs about as much as the whole fold step)."""

    __slots__ = (
        "_event_id",
        "_metadata",
        "data",
        "hash",
        "position",
        "prev_hash",
        "recorded_at",
        "schema_version",
        "stream",
        "type",
        "version",
    )

    def __init__(
        self,
        event_id: uuid.UUID | str,
        stream: str,
        version: int,
        position: int,
        type: str,
        schema_version: int,
        data: dict[str, Any],
        metadata: dict[str, Any] | bytes | str,
        recorded_at: datetime,
        prev_hash: str,
        hash: str,
    ) -> None:
        self._event_id = event_id
        self.stream = stream
        self.version = version
        self.position = position
        self.type = type
        self.schema_version = schema_version
        self.data = data
        self._metadata = metadata
        self.recorded_at = recorded_at
        self.prev_hash = prev_hash
        self.hash = hash

    @property
    def event_id(self) -> uuid.UUID:
        value = self._event_id
        if not isinstance(value, uuid.UUID):
            value = self._event_id = uuid.UUID(value)
        return value

    @property
    def event_id_text(self) -> str:
        """`str(event_id)`, without parsing the stored text into a UUID first (a projection that only writes it)."""
        value = self._event_id
        return value if isinstance(value, str) else str(value)

    @property
    def metadata(self) -> dict[str, Any]:
        value = self._metadata
        if not isinstance(value, dict):
            value = self._metadata = orjson.loads(value)
        return value

    @metadata.setter
    def metadata(self, value: dict[str, Any]) -> None:
        self._metadata = value

    def _fields(self) -> tuple[Any, ...]:
        return (
            self.event_id,
            self.stream,
            self.version,
            self.position,
            self.type,
            self.schema_version,
            self.data,
            self.metadata,
            self.recorded_at,
            self.prev_hash,
            self.hash,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecordedEvent):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces

    def __repr__(self) -> str:
        return (
            f"RecordedEvent(stream={self.stream!r}, version={self.version}, position={self.position}, "
            f"type={self.type!r}, event_id={str(self._event_id)!r})"
        )

    @property
    def category(self) -> str:
        return category_of(self.stream)

    def expected_hash(self) -> str:
        return chain_hash(
            self.prev_hash,
            self.event_id,
            self.stream,
            self.version,
            self.type,
            self.schema_version,
            self.data,
            self.metadata,
            self.recorded_at,
        )


@dataclass(frozen=True, slots=True)
class AppendResult:
    stream: str
    first_version: int
    last_version: int  # the stream's version after the append: pass it as the next expected_version
    first_position: int
    last_position: int


def chain_hash(
    prev_hash: str,
    event_id: uuid.UUID,
    stream: str,
    version: int,
    type_: str,
    schema_version: int,
    data: dict[str, Any],
    metadata: dict[str, Any],
    recorded_at: datetime,
) -> str:
    """SHA-256 over the previous link and the canonical JSON of the event (position excluded: it is the
    store's bookkeeping, not the event's content)."""
    body = canonical_json(
        {
            "event_id": str(event_id),
            "stream": stream,
            "version": version,
            "type": type_,
            "schema_version": schema_version,
            "data": data,
            "metadata": metadata,
            "recorded_at": recorded_at.isoformat(),
        }
    )
    return hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()


def check_expected(stream: str, expected: ExpectedVersion, current: int) -> None:
    """`current` is the stream's last version, -1 when it does not exist."""
    if expected == ANY:
        return
    if expected == NO_STREAM:
        ok = current == -1
    elif expected == EXISTS:
        ok = current >= 0
    elif expected >= 0:
        ok = current == expected
    else:
        raise ValueError(f"invalid expected_version {expected}")
    if not ok:
        raise WrongExpectedVersion(stream, expected, current)


def validate_append(stream: str, events: Sequence[NewEvent], expected: ExpectedVersion) -> None:
    """Refuse (ValueError, or DuplicateEventId for an id given twice) an append no store could record, in the
    caller's thread: one that reached a group commit failed the whole group, other callers' appends included."""
    if not (isinstance(stream, str) and len(stream) <= STREAM_MAX_LENGTH and _STREAM.fullmatch(stream)):
        raise ValueError(
            f"stream name {stream!r} must look like '<category>-<id>': letters or digits, a dash, then at most "
            f"{STREAM_MAX_LENGTH} characters in all with no space or control character"
        )
    if not (_is_int(expected) and (0 <= expected <= VERSION_MAX or expected in (NO_STREAM, ANY, EXISTS))):
        raise ValueError(
            f"expected_version {expected!r} is neither a version (0 to 2^63-1) nor NO_STREAM, ANY or EXISTS"
        )
    if not events:
        raise ValueError("append needs at least one event")
    for n, event in enumerate(events):
        if not (
            isinstance(event.event_id, uuid.UUID)
            and isinstance(event.type, str)
            and _EVENT_TYPE.fullmatch(event.type)
            and isinstance(event.data, dict)
            and isinstance(event.metadata, dict)
            and _is_int(event.schema_version)
            and 1 <= event.schema_version <= SCHEMA_VERSION_MAX
        ):
            raise ValueError(
                f"event {n}: needs an event_id (UUID), a type (text without control characters), data and metadata "
                f"(JSON objects) and a schema_version (integer, 1 to {SCHEMA_VERSION_MAX})"
            )
    ids = [e.event_id for e in events]
    if len(set(ids)) != len(ids):
        raise DuplicateEventId("the same event id appears twice in one append")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def link_events(
    stream: str,
    events: Sequence[NewEvent],
    *,
    current_version: int,
    prev_hash: str,
    first_position: int,
    recorded_at: datetime,
) -> list[RecordedEvent]:
    """Give an append's events their versions, positions and hash links. `current_version` and `prev_hash` are
    those of the stream's last event (-1 and GENESIS_HASH for a new stream)."""
    linked = []
    for offset, event in enumerate(events):
        version = current_version + 1 + offset
        try:
            digest = chain_hash(
                prev_hash,
                event.event_id,
                stream,
                version,
                event.type,
                event.schema_version,
                event.data,
                event.metadata,
                recorded_at,
            )
        except orjson.JSONEncodeError as error:
            # A ValueError rejects this append alone; anything else would fail the whole group's commit.
            message = f"{stream}: event {offset} ({event.type}): data or metadata is not JSON: {error}"
            raise ValueError(message) from None
        linked.append(
            RecordedEvent(
                event.event_id,
                stream,
                version,
                first_position + offset,
                event.type,
                event.schema_version,
                event.data,
                event.metadata,
                recorded_at,
                prev_hash,
                digest,
            )
        )
        prev_hash = digest
    return linked


def replayed_result(
    stream: str, events: Sequence[NewEvent], recorded: Sequence[tuple[Any, str, int, int]]
) -> AppendResult:
    """The original result of an append that is being retried, given the recorded (event_id, stream, version,
    position) rows, in version order, where its events were found. Anything but these very events, recorded
    together in `stream` in this order, is a DuplicateEventId."""
    first_version = recorded[0][2]
    expected = [(str(event.event_id), stream, first_version + n) for n, event in enumerate(events)]
    if [(str(row[0]), row[1], row[2]) for row in recorded] != expected:
        raise DuplicateEventId(f"{stream}: these event ids were recorded, but not as this same append")
    return AppendResult(stream, recorded[0][2], recorded[-1][2], recorded[0][3], recorded[-1][3])


class EventStore(ABC):
    """Synchronous port. Adapters: `lapor.store.sqlite`, `lapor.store.postgres`, `lapor.store.kurrent`."""

    url: str
    vault: Vault  # the PII vault beside the store: identities live there, never in events (UU PDP)

    @abstractmethod
    def append(self, stream: str, events: Sequence[NewEvent], expected_version: ExpectedVersion = ANY) -> AppendResult:
        """All-or-nothing. Re-appending event ids that are already recorded returns the original result."""

    @abstractmethod
    def read_stream(self, stream: str, from_version: int = 0, limit: int | None = None) -> list[RecordedEvent]:
        """Events of one stream from `from_version` on, in version order; [] for a missing stream."""

    @abstractmethod
    def read_all(
        self, from_position: int = 0, category: str | None = None, limit: int = 1000, share: StreamShare | None = None
    ) -> list[RecordedEvent]:
        """Committed events with position >= from_position, in position order: of `category` when given, and of
        `share` when given (the events of the share's category outside it are skipped). Fewer than `limit` only
        at the end of the log."""

    @abstractmethod
    def head_position(self, *, wait: float | None = None) -> int:
        """The position of the last committed event, 0 when the store is empty. `wait`: the longest, in seconds, to
        wait for the store's server (PostgreSQL: a pooled connection; KurrentDB: its answer) before failing; None is
        the store's own bound, which every other call has. /readyz gives a short one (session 28: on a PostgreSQL
        that went away it waited the pool's 30 s). SQLite reads a local file and has nothing to wait for."""

    @abstractmethod
    def wait_for_events(self, after_position: int, timeout: float) -> bool:
        """Block until an event past `after_position` is committed (True) or `timeout` passes (False).
        Woken by the writer (SQLite: in-process condition + file polling fallback; PostgreSQL: NOTIFY)."""

    @abstractmethod
    def stream_version(self, stream: str) -> int:
        """The stream's last version, -1 when it does not exist."""

    @abstractmethod
    def close(self) -> None: ...

    def changed_while_read(self) -> bool:
        """Whether what was read may not be what the store holds, because it was read as a file at rest and a
        writer opened it meanwhile (a SQLite store opened read-only: `lapor.store.sqlite.read_only_uri`)."""
        return False

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Notifier:
    """In-process wake-up for readers blocked in `wait_for_events`."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._head = 0

    def publish(self, position: int) -> None:
        with self._cond:
            if position > self._head:
                self._head = position
            self._cond.notify_all()

    def wait(self, after_position: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._head > after_position, timeout)

    def wait_for_commit(
        self, head_position: Callable[[], int], after_position: int, timeout: float, poll: float
    ) -> bool:
        """`EventStore.wait_for_events` for an adapter: sleep on this notifier, and every `poll` seconds look at
        the store's real head, for commits this process was not told about (another process's writers, a
        lost NOTIFY)."""
        deadline = time.monotonic() + timeout
        while True:
            if head_position() > after_position:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self.wait(after_position, min(remaining, poll)):
                return True
