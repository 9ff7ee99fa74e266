"""The reporting read models: one row per complaint, per-day event counts, and the agency directory.

- `rpt_complaints`: the complaint as the shared fold (`lapor.complaint.evolve`) sees it, the fields the
  reports group and filter by, and what the fold does not keep but the reports need: when it was first
  disposed, whether its stages met their deadlines, whether the agency holding it has followed it up.
- `rpt_daily`: how many of each happening (received, verified, disposed, assigned, followed up, closed, returned,
  escalated, red marks) per Jakarta day, region, and the agency and unit holding the report.
- `rpt_agencies`: names and parents from the directory's AgencyRegistered / AgencyUpdated events.

Every row keeps the last version it applied (per stream), so an event delivered twice changes nothing, and the
subscription runner commits each batch's rows with its checkpoint. The complaint projection works a batch at
a time (`ComplaintReports`): it loads the rows of the batch's complaints in one query per 500, folds every event
in memory (or takes the state another projection of the process already folded), and writes each changed row
and each day's counts once. A rebuild keeps those rows from batch to batch and writes each once at the end.

Times are stored as epoch seconds (DOUBLE PRECISION), which compare and subtract the same way on SQLite and
PostgreSQL; days as ISO dates in Jakarta time.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson

from lapor.calendar import jakarta_date
from lapor.complaint import ComplaintState, Escalation, Feedback, Status, evolve, initial_state
from lapor.db import Tx, setup_tables
from lapor.directory import DIRECTORY_CATEGORY, carried_record
from lapor.states import ComplaintStates
from lapor.store import RecordedEvent
from lapor.subscriptions import Subscription, holding_batches, holding_subscription
from schemas.events import Channel, ComplaintKind, EscalationKind, Level

COMPLAINTS_SUBSCRIPTION = "reporting.complaints"
# 2 (session 20): an answer after a red mark is late, and an Ombudsman takeover resets "followed up".
# 3 (session 21): `red_marked_agency`, so a red-marked report not answered since is overdue from the red mark; a
# pend pauses the verification stage instead of ending it; a resolution is an answer; a re-disposition starts the
# follow-up stage again.
# 4 (session 22): `rpt_daily.unit_id`, so a unit's view counts what happened while it held a report (and the
# assignments it received); `reached_at` and `answered_at`, so an agency's view times its own first answer; the
# bounce-limit flag is counted for national routing, not for the agency the report had just reached; an escalation
# is a unit's only from the unit's level, and a return is always its agency's.
# 5 (session 27): an Ombudsman takeover after the follow-up deadline passed unanswered keeps the stage missed
# (`red_marked_agency`: the earlier holder) though routing had not red-marked it yet.
# 6 (session 30): a red mark is the unit's that held the report when the deadline passed (`missed_by`), not the one
# holding it when routing looked: a reassignment in between charged the unit it went to.
COMPLAINTS_VERSION = 6
DIRECTORY_SUBSCRIPTION = "reporting.directory"

COMPLAINTS_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS rpt_complaints (
    tracking_id          TEXT PRIMARY KEY,
    version              INTEGER NOT NULL,
    status               TEXT NOT NULL,
    kind                 TEXT,
    category             TEXT,
    channel              TEXT,
    region_code          TEXT,
    confidential         INTEGER NOT NULL,
    agency_id            TEXT,
    unit_id              TEXT,
    submitted_at         DOUBLE PRECISION,
    first_follow_up_at   DOUBLE PRECISION,
    verification_due     DOUBLE PRECISION,
    follow_up_due        DOUBLE PRECISION,
    province             TEXT,
    submitted_day        TEXT,
    first_disposed_at    DOUBLE PRECISION,
    verification_on_time INTEGER,
    follow_up_on_time    INTEGER,
    followed_up          INTEGER NOT NULL,
    red_marked_agency    TEXT,
    reached_at           DOUBLE PRECISION,
    answered_at          DOUBLE PRECISION,
    feedback_rating      INTEGER,
    state                TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS rpt_complaints_by_day ON rpt_complaints (submitted_day)",
    # Covers the reports' one GROUP BY scan (`reports._scan`): read in group order from this narrow index, with
    # every column the sums and filters use, instead of sorting the wide table (~8x faster at 10^5 reports).
    "CREATE INDEX IF NOT EXISTS rpt_complaints_by_group ON rpt_complaints (status, kind, channel, category,"
    " province, agency_id, unit_id, verification_on_time, verification_due, follow_up_on_time, follow_up_due,"
    " followed_up, red_marked_agency, submitted_at, submitted_day, region_code)",
    # Covers the time-to-first-follow-up query (`reports._durations`): only reports that were followed up.
    "CREATE INDEX IF NOT EXISTS rpt_complaints_followed_up ON rpt_complaints (first_follow_up_at, first_disposed_at,"
    " submitted_day, region_code, agency_id) WHERE first_follow_up_at IS NOT NULL",
    # Covers an agency's time to its own first answer (`reports._durations` with `holder=True`).
    "CREATE INDEX IF NOT EXISTS rpt_complaints_answered ON rpt_complaints (agency_id, unit_id, answered_at,"
    " reached_at, submitted_day, region_code) WHERE answered_at IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS rpt_daily (
    day         TEXT NOT NULL,
    region_code TEXT NOT NULL,
    agency_id   TEXT NOT NULL,
    unit_id     TEXT NOT NULL,
    metric      TEXT NOT NULL,
    count       BIGINT NOT NULL,
    PRIMARY KEY (day, region_code, agency_id, unit_id, metric)
)""",
)

# The columns that name who holds (or held) a report, each indexed for `reports.agency_known`, which asks for an id
# or the ids inside it (`pemda-53.71/...`) by range. In byte order on either database: SQLite's default, and on
# PostgreSQL the "C" collation (a language's, e.g. en_US, orders '/' and '.' apart from their bytes).
HOLDER_COLUMNS = (("rpt_daily", "agency_id"), ("rpt_daily", "unit_id"), ("rpt_complaints", "agency_id"),
                  ("rpt_complaints", "unit_id"))


def in_byte_order(column: str, dialect: str) -> str:
    """`column` as `HOLDER_COLUMNS`' indexes hold it: compared in byte order (see there)."""
    return f'{column} COLLATE "C"' if dialect == "postgresql" else column


def setup_complaints(tx: Tx) -> None:
    """The complaint projection's tables, and the indexes `reports.agency_known` searches: until session 29 it
    compared `substr()`s, which no index serves, so every request for an unknown (or mistyped) agency read
    rpt_daily and rpt_complaints whole (seconds at 10^6 rows), and any staff token could ask again and again."""
    setup_tables(COMPLAINTS_SCHEMA)(tx)
    for table, column in HOLDER_COLUMNS:
        tx.execute(f"CREATE INDEX IF NOT EXISTS {table}_by_{column} ON {table} ({in_byte_order(column, tx.dialect)})")


DIRECTORY_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS rpt_agencies (
    agency_id   TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    name        TEXT NOT NULL,
    parent_id   TEXT,
    kind        TEXT NOT NULL,
    region_code TEXT,
    active      INTEGER NOT NULL
)""",
)

# The fold's fields the projection carries from batch to batch: everything a transition reads, and what the
# reports use. Fields left out (texts, tags, references) keep their blank values when a row is read back.
FOLD_FIELDS = (
    "version",
    "status",
    "level",
    "kind",
    "category",
    "channel",
    "region_code",
    "anonymous",
    "confidential",
    "agency_id",
    "unit_id",
    "submitted_at",
    "verified_at",
    "disposed_at",
    "accepted_at",
    "first_follow_up_at",
    "resolved_at",
    "closed_at",
    "last_event_at",
    "verification_due",
    "archive_due",
    "follow_up_due",
    "feedback_due",
    "ombudsman_offer_due",
    "bounce_count",
    "reopen_count",
    "follow_up_count",
    "ombudsman_offered",
    "ombudsman_consent",
)
# What only the reports keep: the fold has no such fields.
EXTRA_FIELDS = (
    "position",
    "province",
    "submitted_day",
    "first_disposed_at",
    "verification_on_time",
    "follow_up_on_time",
    "followed_up",
    "red_marked_agency",
    "reached_at",
    "answered_at",
    "return_count",
    "missed_by",  # [deadline, unit] of the follow-up deadline that passed, see `_passed`
)
# The queryable columns, each the fold field or extra of that name (feedback_rating: of the fold's feedback).
# `state` holds FOLD_FIELDS, escalations, feedback and EXTRA_FIELDS as one JSON list: the projection reads
# back only that (one column is cheaper to fetch than twenty).
COLUMNS = (
    "tracking_id",
    "version",
    "status",
    "kind",
    "category",
    "channel",
    "region_code",
    "confidential",
    "agency_id",
    "unit_id",
    "submitted_at",
    "first_follow_up_at",
    "verification_due",
    "follow_up_due",
    "province",
    "submitted_day",
    "first_disposed_at",
    "verification_on_time",
    "follow_up_on_time",
    "followed_up",
    "red_marked_agency",
    "reached_at",
    "answered_at",
    "feedback_rating",
    "state",
)
# Moments and deadlines, stored as epoch seconds: every field named like one.
_TIMES = frozenset(name for name in FOLD_FIELDS + EXTRA_FIELDS if name.endswith(("_at", "_due")))
_ENUMS: Mapping[str, Mapping[str, Any]] = {
    "status": {s.value: s for s in Status},
    "level": {level.value: level for level in Level},
    "kind": {k.value: k for k in ComplaintKind},
    "channel": {c.value: c for c in Channel},
}
_ESCALATION_KINDS = {k.value: k for k in EscalationKind}
_LEVELS = _ENUMS["level"]

_UPSERT_COMPLAINT = (
    f"INSERT INTO rpt_complaints ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
    "ON CONFLICT (tracking_id) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in COLUMNS[1:])
)
_ADD_DAILY = (
    "INSERT INTO rpt_daily (day, region_code, agency_id, unit_id, metric, count) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (day, region_code, agency_id, unit_id, metric) DO UPDATE SET count = rpt_daily.count + "
    "excluded.count"
)
_LOAD_CHUNK = 500  # ids per SELECT ... IN (...): well under every driver's parameter limit


def _epoch(value: datetime | float) -> float:
    """Times as epoch seconds. The fold holds datetimes for what it changed in this batch and the stored epoch
    seconds for the rest (it copies time fields, never compares them); stored, every time is a float, so a row
    reads the same whichever batch boundaries built it."""
    return value if isinstance(value, float) else value.timestamp()


class _Days:
    """Jakarta dates of moments. Jakarta's offset is whole hours, so a UTC hour falls on one Jakarta date:
    cache per hour rather than converting time zones for every event."""

    def __init__(self) -> None:
        self._by_hour: dict[int, str] = {}

    def of(self, moment: datetime) -> str:
        hour = int(moment.timestamp() // 3600)
        day = self._by_hour.get(hour)
        if day is None:
            day = self._by_hour[hour] = jakarta_date(datetime.fromtimestamp(hour * 3600, UTC)).isoformat()
        return day


def province_of(region_code: str | None) -> str | None:
    """Kemendagri codes start with the province: "53.71" (Kota Kupang) -> "53" (Nusa Tenggara Timur)."""
    return region_code.split(".", 1)[0] if region_code else None


class _Complaint:
    """A complaint being projected: the fold's state and the reports' own fields."""

    __slots__ = ("extra", "state")

    def __init__(self, state: ComplaintState, extra: dict[str, Any]) -> None:
        self.state = state
        self.extra = extra


_BLANK_EXTRA: Mapping[str, Any] = {
    "position": 0,
    "province": None,
    "submitted_day": None,
    "first_disposed_at": None,
    "verification_on_time": None,
    "follow_up_on_time": None,
    "followed_up": 0,
    "red_marked_agency": None,
    "reached_at": None,
    "answered_at": None,
    "return_count": 0,
    "missed_by": None,
}
_BLANK_FIELDS = dict(initial_state("").__dict__)
_STATE_ENUMS = tuple(_ENUMS.items())
_EXTRA_START = len(FOLD_FIELDS) + 2
_FOLD_VALUES = operator.itemgetter(*FOLD_FIELDS)
_EXTRA_VALUES = operator.itemgetter(*EXTRA_FIELDS)
_FOLD_COLUMNS = operator.itemgetter(*COLUMNS[: COLUMNS.index("province")])
_EXTRA_COLUMNS = operator.itemgetter(*COLUMNS[COLUMNS.index("province") : COLUMNS.index("feedback_rating")])
_TIME_COLUMNS = tuple(i for i, name in enumerate(COLUMNS) if name in _TIMES)
_ENUM_COLUMNS = tuple(COLUMNS.index(name) for name in ("status", "kind", "channel"))
_CONFIDENTIAL = COLUMNS.index("confidential")
_PLAIN: Mapping[Any, str] = {member: str(member.value) for members in _ENUMS.values() for member in members.values()}


def _stored_time(value: object) -> float:
    """orjson's hook for the datetimes the fold set in this batch (see `_epoch`)."""
    if isinstance(value, datetime):
        return value.timestamp()
    raise TypeError(f"cannot store a {type(value).__name__}")


def _new(tracking_id: str) -> _Complaint:
    return _Complaint(initial_state(tracking_id), dict(_BLANK_EXTRA))


def _restore(tracking_id: str, stored: str) -> _Complaint:
    """A stored `state` back into the fold's state and the extra fields."""
    values = orjson.loads(stored)
    fields = dict(_BLANK_FIELDS)
    fields["tracking_id"] = tracking_id
    fields.update(zip(FOLD_FIELDS, values, strict=False))
    for name, members in _STATE_ENUMS:
        value = fields[name]
        if value is not None:
            fields[name] = members[value]
    escalations, feedback = values[len(FOLD_FIELDS)], values[len(FOLD_FIELDS) + 1]
    if escalations:
        fields["escalations"] = tuple(
            Escalation(_ESCALATION_KINDS[kind], _LEVELS[src], _LEVELS[dst], agency, at)
            for kind, src, dst, agency, at in escalations
        )
    if feedback:
        fields["feedback"] = Feedback(*feedback)
    # The fold builds its states this way too (lapor.complaint._copy): a frozen dataclass filled directly.
    state = object.__new__(ComplaintState)
    state.__dict__.update(fields)
    return _Complaint(state, dict(zip(EXTRA_FIELDS, values[_EXTRA_START:], strict=True)))


def _row(complaint: _Complaint) -> list[Any]:
    state, extra = complaint.state, complaint.extra
    fields = state.__dict__
    escalations = state.escalations
    feedback = state.feedback
    stored = [
        *_FOLD_VALUES(fields),
        [[e.kind, e.from_level, e.to_level, e.to_agency_id, e.at] for e in escalations] if escalations else None,
        None if feedback is None else [feedback.satisfied, feedback.rating],
        *_EXTRA_VALUES(extra),
    ]
    values = [*_FOLD_COLUMNS(fields), *_EXTRA_COLUMNS(extra)]
    for index in _TIME_COLUMNS:
        value = values[index]
        if value is not None and value.__class__ is not float:
            values[index] = value.timestamp()
    for index in _ENUM_COLUMNS:
        value = values[index]
        if value is not None:
            values[index] = _PLAIN[value]  # plain text for every driver (and cheaper than `.value`)
    values[_CONFIDENTIAL] = int(values[_CONFIDENTIAL])  # psycopg sends a bool as boolean; the column is INTEGER
    values.append(None if feedback is None else feedback.rating)
    values.append(orjson.dumps(stored, default=_stored_time, option=orjson.OPT_PASSTHROUGH_DATETIME).decode())
    return values


def _on_time(moment: datetime, due: datetime | float | None) -> int:
    """1 when `moment` met the deadline running before it (no deadline running counts as met)."""
    return 1 if due is None or moment.timestamp() <= _epoch(due) else 0


def _load(tx: Tx, tracking_ids: Sequence[str]) -> dict[str, _Complaint]:
    found: dict[str, _Complaint] = {}
    for start in range(0, len(tracking_ids), _LOAD_CHUNK):
        chunk = tracking_ids[start : start + _LOAD_CHUNK]
        sql = f"SELECT tracking_id, state FROM rpt_complaints WHERE tracking_id IN ({', '.join('?' * len(chunk))})"
        for tracking_id, stored in tx.fetchall(sql, chunk):
            found[tracking_id] = _restore(tracking_id, stored)
    return found


Daily = dict[tuple[str, str, str, str, str], int]  # (day, region_code, agency_id, unit_id, metric) -> count


class ComplaintReports:
    """The complaint projection's rows in memory (a `lapor.subscriptions.Holding`): each complaint loaded once,
    every event of it folded in, the changed rows and the day's counts written by `write`. With the process's
    shared `states`, a state another projection already folded is taken from there instead of folded again
    (the one fold: the same fields, whichever folded it)."""

    def __init__(self, states: ComplaintStates | None = None) -> None:
        self._states = states
        self._complaints: dict[str, _Complaint] = {}
        self._changed: set[str] = set()
        self._daily: Daily = {}
        self._days = _Days()

    def apply(self, events: Sequence[RecordedEvent], tx: Tx) -> None:
        """The complaint events of a batch, in position order."""
        by_stream: dict[str, list[RecordedEvent]] = {}
        for event in events:
            stream_events = by_stream.get(event.stream)
            if stream_events is None:
                by_stream[event.stream] = [event]
            else:
                stream_events.append(event)
        complaints = self._complaints
        tracking_ids = {stream: stream.removeprefix("complaint-") for stream in by_stream}
        complaints.update(_load(tx, sorted(t for t in tracking_ids.values() if t not in complaints)))
        days, daily, changed, states = self._days, self._daily, self._changed, self._states
        for stream, stream_events in by_stream.items():
            tracking_id = tracking_ids[stream]
            complaint = complaints.get(tracking_id)
            if complaint is None:
                complaint = complaints[tracking_id] = _new(tracking_id)
            for event in stream_events:
                before = complaint.state
                if event.version <= before.version:
                    continue  # applied before: a redelivery
                after = None
                if states is not None and event.version == before.version + 1:  # a gap is evolve's to refuse
                    after = states.remembered_after(event)
                if after is None:
                    after = evolve(before, event)
                complaint.state = after
                complaint.extra["position"] = event.position
                changed.add(tracking_id)
                note = _NOTES.get(event.type)
                if note is not None:
                    note(complaint.extra, before, after, event, days.of(event.recorded_at), daily)

    def held(self) -> int:
        return len(self._complaints)

    def write(self, tx: Tx) -> None:
        if self._changed:
            # In key order the B-tree pages are visited once each, not at random.
            tx.executemany(_UPSERT_COMPLAINT, [_row(self._complaints[t]) for t in sorted(self._changed)])
        if self._daily:
            tx.executemany(_ADD_DAILY, [(*key, count) for key, count in self._daily.items()])
        self._complaints, self._changed, self._daily = {}, set(), {}


# The complaint events of a batch, in position order, into rpt_complaints and rpt_daily (folding every event).
project_complaints = holding_batches(ComplaintReports)


# -- what each event adds to the reports' own fields and to the day's counts ------------------------------------
# A note gets the extra fields, the state before and after the event, the event, its Jakarta day and the counts.

Note = Callable[[dict[str, Any], ComplaintState, ComplaintState, RecordedEvent, str, Daily], None]


def _count(
    daily: Daily, day: str, state: ComplaintState, holder: ComplaintState | None, metric: str, *, unit: bool = True
) -> None:
    """One `metric` on `day`, for the agency and unit holding the report in `holder` (None: routing's; without
    `unit`, the agency's own, its unit having had no part in it)."""
    if holder is None:
        _count_for(daily, day, state, None, None, metric)
    else:
        _count_for(daily, day, state, holder.agency_id, holder.unit_id if unit else None, metric)


def _count_for(
    daily: Daily, day: str, state: ComplaintState, agency_id: str | None, unit_id: str | None, metric: str
) -> None:
    """One `metric` on `day`, for `agency_id` and `unit_id` (None: routing's, or the agency's own)."""
    key = (day, state.region_code or "", agency_id or "", unit_id or "", metric)
    daily[key] = daily.get(key, 0) + 1


def _passed(extra: dict[str, Any], before: ComplaintState, event: RecordedEvent) -> None:
    """Who held the report when its follow-up deadline passed: the unit (None: the agency at its own level) before
    the first event after the deadline that could move the report to another unit or end the deadline (an
    assignment, an answer, an escalation). Routing's red mark may come later (its scheduler looks every 30 s, or
    after an outage), when the report has been reassigned; the mark is the unit's that let the deadline pass
    (session 30: it was charged to the unit the report went to)."""
    due = before.follow_up_due
    if due is None:
        return
    due_at = _epoch(due)
    if event.recorded_at.timestamp() > due_at and (extra["missed_by"] is None or extra["missed_by"][0] != due_at):
        extra["missed_by"] = [due_at, before.unit_id]


def _counting(metric: str) -> Note:
    """A note that only counts `metric`, for the agency (and unit) holding the report when the event happened."""

    def note(extra: dict[str, Any], before: ComplaintState, after: ComplaintState, event: RecordedEvent, day: str,
             daily: Daily) -> None:
        _count(daily, day, after, before, metric)

    return note


def _telaah(metric: str | None, *, ends: bool = True) -> Note:
    """The verification stage (telaah) ends with the first verify, archive or duplicate decision: did it come
    within the deadline running before it? A pend pauses it (no deadline runs while the reporter is asked; the
    answer starts a new one), and a late pend makes it late for good."""

    def note(extra: dict[str, Any], before: ComplaintState, after: ComplaintState, event: RecordedEvent, day: str,
             daily: Daily) -> None:
        if extra["verification_on_time"] is None:
            on_time = _on_time(event.recorded_at, before.verification_due)
            if ends or not on_time:
                extra["verification_on_time"] = on_time
        if metric is not None:
            _count(daily, day, after, None, metric)

    return note


def _submitted(extra: dict[str, Any], before: ComplaintState, after: ComplaintState, event: RecordedEvent, day: str,
               daily: Daily) -> None:
    extra["province"] = province_of(after.region_code)
    extra["submitted_day"] = day
    _count(daily, day, after, None, "received")


def _reached(extra: dict[str, Any], event: RecordedEvent) -> None:
    """The report reached a new holder: it has not answered yet, nor missed its deadline."""
    extra["followed_up"], extra["answered_at"], extra["reached_at"] = 0, None, event.recorded_at
    extra["missed_by"] = None


def _disposed(extra: dict[str, Any], before: ComplaintState, after: ComplaintState, event: RecordedEvent, day: str,
              daily: Daily) -> None:
    if extra["first_disposed_at"] is None:
        extra["first_disposed_at"] = event.recorded_at
    # The new holder's follow-up stage starts.
    _reached(extra, event)
    extra["follow_up_on_time"], extra["red_marked_agency"] = None, None
    _count(daily, day, after, after, "disposed")


def _returned(extra: dict[str, Any], before: ComplaintState, after: ComplaintState, event: RecordedEvent, day: str,
              daily: Daily) -> None:
    extra["return_count"] += 1
    _count(daily, day, after, before, "returned", unit=False)  # the agency returns a report, not its unit


def _follow_up(extra: dict[str, Any], before: ComplaintState, after: ComplaintState, event: RecordedEvent, day: str,
               daily: Daily) -> None:
    if event.data.get("public", True) is False:
        return  # an internal note is no answer to the reporter: it neither counts nor stops the clock
    _answered(extra, before, after, event, day, daily)


def _answered(extra: dict[str, Any], before: ComplaintState, after: ComplaintState, event: RecordedEvent, day: str,
              daily: Daily) -> None:
    """The holder answered the reporter: a public follow-up, or a resolution without one."""
    _passed(extra, before, event)  # answered late: routing's mark comes after, perhaps after a reassignment
    if not extra["followed_up"]:
        # The holder's first answer since the report reached it: "followed up" counts reports, not posts.
        _count(daily, day, after, after, "followed_up")
        extra["followed_up"], extra["answered_at"] = 1, event.recorded_at
    if extra["follow_up_on_time"] is None:
        # Unanswered since the latest disposition, a red mark there is still standing (only an answer or a new
        # disposition clears it): the stage missed its deadline. The escalation's new deadline is the next level's,
        # and an answer by that one is not "followed up within 5 working days".
        missed = extra["red_marked_agency"] is not None
        extra["follow_up_on_time"] = 0 if missed else _on_time(event.recorded_at, before.follow_up_due)
    extra["red_marked_agency"] = None  # answered: overdue again only when the deadline running now passes


def _resolved(extra: dict[str, Any], before: ComplaintState, after: ComplaintState, event: RecordedEvent, day: str,
              daily: Daily) -> None:
    # The resolution is written to the reporter: resolving without a follow-up post answers too (and cannot take a
    # missed deadline out of the figures). A reopening runs a new deadline.
    _answered(extra, before, after, event, day, daily)
    _count(daily, day, after, before, "resolved")


def _assigned(extra: dict[str, Any], before: ComplaintState, after: ComplaintState, event: RecordedEvent, day: str,
              daily: Daily) -> None:
    _passed(extra, before, event)
    _count(daily, day, after, after, "assigned")  # what the unit received (its agency's disposition to it)


def _escalated(extra: dict[str, Any], before: ComplaintState, after: ComplaintState, event: RecordedEvent, day: str,
               daily: Daily) -> None:
    kind = event.data["kind"]
    # The bounce-limit flag is about routing's dispositions, not the agency the report has just reached: national.
    holder = None if kind == EscalationKind.bounce_limit else before
    # The level that missed: a unit's escalation when the report was at the unit's level; once escalated on to its
    # agency's level, the agency's (the report stays assigned to the unit).
    unit = event.data["from_level"] == Level.unit
    if kind == EscalationKind.follow_up_overdue:
        # nilai merah: the holder missed its deadline; of a unit's level, the unit that held the report then
        _passed(extra, before, event)
        missed, extra["missed_by"] = extra["missed_by"], None
        unit_id = (missed[1] if missed is not None else before.unit_id) if unit else None
        for metric in ("escalated", f"escalated:{kind}", "red_mark"):
            _count_for(daily, day, after, before.agency_id, unit_id, metric)
        # Overdue from now until answered, though the escalation runs the next level's (later) deadline. Not when
        # the deadline it marks was answered, late, before routing's scheduler looked: such a mark starts no new
        # deadline (the event carries none), and the answer already made the stage late. Judged from the event, as
        # every mark recorded before session 26 carries a deadline: stored rows stay as they were built.
        if event.data.get("follow_up_due") is not None:
            extra["red_marked_agency"] = before.agency_id
    else:
        _count(daily, day, after, holder, "escalated", unit=unit)
        _count(daily, day, after, holder, f"escalated:{kind}", unit=unit)
    if after.agency_id != before.agency_id:
        # An Ombudsman takeover: the new holder has not answered yet. The stage stays the one the earlier holder
        # missed (overdue until answered, and late then), but the scoreboard blames that holder, not the new one.
        # Missed when its deadline had passed, red-marked or not: until session 30 routing back from an outage
        # handed a consented report over before it marked the passed deadline, whose mark then never came (the
        # takeover's deadline replaced it), and the Ombudsman's deadline judged the stage. (Since, the hand-over
        # red-marks the passed deadline first, in the same append.)
        due = before.follow_up_due
        if extra["follow_up_on_time"] is None and due is not None and event.recorded_at.timestamp() > _epoch(due):
            extra["red_marked_agency"] = extra["red_marked_agency"] or before.agency_id
        _reached(extra, event)


_NOTES: Mapping[str, Note] = {
    "ComplaintSubmitted": _submitted,
    "ComplaintVerified": _telaah("verified"),
    "ComplaintPended": _telaah(None, ends=False),
    "ComplaintArchived": _telaah("archived"),
    "DuplicateMarked": _telaah("duplicate"),
    "ComplaintDisposed": _disposed,
    "DispositionAccepted": _counting("accepted"),
    "ComplaintAssigned": _assigned,
    "DispositionReturned": _returned,
    "FollowUpPosted": _follow_up,
    "ComplaintEscalated": _escalated,
    "ComplaintResolved": _resolved,
    "ComplaintReopened": _counting("reopened"),
    "ComplaintClosed": _counting("closed"),
}


# -- the directory ----------------------------------------------------------------------------------------

_UPSERT_AGENCY = (
    "INSERT INTO rpt_agencies (agency_id, version, name, parent_id, kind, region_code, active) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (agency_id) DO UPDATE SET version = excluded.version, "
    "name = excluded.name, parent_id = excluded.parent_id, kind = excluded.kind, "
    "region_code = excluded.region_code, active = excluded.active WHERE rpt_agencies.version < excluded.version"
)


def project_directory(event: RecordedEvent, tx: Tx) -> None:
    """AgencyRegistered / AgencyUpdated carry the whole record; an older version never overwrites a newer."""
    record = carried_record(event)
    if record is None:
        return
    data = record.data
    tx.execute(
        _UPSERT_AGENCY,
        (
            data["agency_id"],
            record.version,
            data["name"],
            data.get("parent_id"),
            data["kind"],
            data.get("region_code"),
            int(record.active),
        ),
    )


def subscriptions(states: ComplaintStates | None = None) -> list[Subscription]:
    """The reporting projections; with the process's shared `states`, see `ComplaintReports`."""
    return [
        holding_subscription(
            COMPLAINTS_SUBSCRIPTION, partial(ComplaintReports, states), setup=setup_complaints,
            counters={"rpt_daily": "count"}, version=COMPLAINTS_VERSION, tables=("rpt_complaints", "rpt_daily"),
        ),
        Subscription(
            DIRECTORY_SUBSCRIPTION, project_directory, category=DIRECTORY_CATEGORY,
            setup=setup_tables(DIRECTORY_SCHEMA),
        ),
    ]


def agency_names(tx: Tx, agency_ids: Iterable[str]) -> dict[str, str]:
    wanted = sorted(set(agency_ids))
    names: dict[str, str] = {}
    for start in range(0, len(wanted), _LOAD_CHUNK):
        chunk = wanted[start : start + _LOAD_CHUNK]
        rows = tx.fetchall(
            f"SELECT agency_id, name FROM rpt_agencies WHERE agency_id IN ({', '.join('?' * len(chunk))})", chunk
        )
        names.update(dict(rows))
    return names
