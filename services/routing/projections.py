"""Routing's read models, each kept by one checkpointed subscription.

- `routing_agencies`, `routing_keywords`, `routing_rules` (subscription `routing.directory`, category
  `directory`): the directory for `GET /api/agencies` and the rules and keywords the proposals use.
  Idempotent through `routing_directory_applied` (the last applied version of each directory stream).
- `routing_complaints` (subscription `routing.complaints`): one row per report with what the verification queue
  and the proposals show, and the last applied version of its stream (older or repeated events are ignored).
- `routing_deadlines` (same subscription): the open deadlines the scheduler watches, one row per report and
  kind, with the version of the event that started the deadline (`cause_version`): the scheduler derives its
  event ids from it, so a deadline leads to one reaction whatever happens to the scheduler.

The rows are built from the one fold (`lapor.complaint.evolve`), never by re-implementing it: the handler takes
the states from the process's shared `lapor.states.ComplaintStates`, which folds the stream from the store on a
miss. Every value comes from the log (times are the events' `recorded_at`), so `lapor rebuild` finds the same
rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lapor.complaint import ComplaintState, Status
from lapor.db import Tx, setup_tables, sortable_moment
from lapor.directory import carried_record
from lapor.states import ComplaintStates
from lapor.store import RecordedEvent
from services.routing.decide import DeadlineKind, RoutingFacts, Rule, running_deadlines
from services.routing.directory import RULES_STREAM, Agency, is_top_level

DIRECTORY_TABLES = (
    "CREATE TABLE IF NOT EXISTS routing_directory_applied (stream TEXT PRIMARY KEY, version BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS routing_agencies ("
    " agency_id TEXT PRIMARY KEY, name TEXT NOT NULL, name_key TEXT NOT NULL, parent_id TEXT, kind TEXT NOT NULL,"
    " region_code TEXT, sms_keywords TEXT NOT NULL, liaisons TEXT NOT NULL, active INTEGER NOT NULL,"
    " top_level INTEGER NOT NULL, version BIGINT NOT NULL, updated_at TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS routing_agencies_by_parent ON routing_agencies (parent_id, agency_id)",
    "CREATE TABLE IF NOT EXISTS routing_keywords (keyword TEXT PRIMARY KEY, agency_id TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS routing_rules ("
    " rule_id TEXT PRIMARY KEY, keyword TEXT, region_code TEXT, category TEXT, agency_id TEXT NOT NULL,"
    " active INTEGER NOT NULL, changed_at TEXT NOT NULL, changed_by TEXT, version BIGINT NOT NULL)",
)
# The tables the directory projection alone writes (dropped and rebuilt when its version changes).
DIRECTORY_TABLE_NAMES = ("routing_directory_applied", "routing_agencies", "routing_keywords", "routing_rules")

COMPLAINT_TABLES = (
    "CREATE TABLE IF NOT EXISTS routing_complaints ("
    " tracking_id TEXT PRIMARY KEY, version BIGINT NOT NULL, status TEXT NOT NULL, level TEXT NOT NULL,"
    " kind TEXT, title TEXT, category TEXT, tags TEXT NOT NULL, region_code TEXT, channel TEXT,"
    " anonymous INTEGER NOT NULL, confidential INTEGER NOT NULL, agency_id TEXT,"
    " submitted_suggestion TEXT, suggested_agency_id TEXT, returned_from TEXT, return_reason TEXT,"
    " returned_by TEXT NOT NULL, bounce_count INTEGER NOT NULL, duplicate_suspect_of TEXT NOT NULL,"
    " information_requested TEXT, submitted_at TEXT NOT NULL, verification_due TEXT, archive_due TEXT,"
    " last_event_at TEXT NOT NULL, reporter_ref TEXT)",
    "CREATE INDEX IF NOT EXISTS routing_complaints_queue ON routing_complaints (status, submitted_at, tracking_id)",
    "CREATE TABLE IF NOT EXISTS routing_deadlines ("
    " tracking_id TEXT NOT NULL, kind TEXT NOT NULL, due TEXT NOT NULL, cause_version BIGINT NOT NULL,"
    " cause_event_id TEXT NOT NULL, correlation_id TEXT, PRIMARY KEY (tracking_id, kind))",
    "CREATE INDEX IF NOT EXISTS routing_deadlines_by_due ON routing_deadlines (due, tracking_id, kind)",
)


setup_directory = setup_tables(DIRECTORY_TABLES)
setup_complaints = setup_tables(COMPLAINT_TABLES)
moment = sortable_moment


def _moment_or_none(at: datetime | None) -> str | None:
    return None if at is None else moment(at)


def parse_moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


# -- the directory ------------------------------------------------------------------------------------------


def apply_directory_event(event: RecordedEvent, tx: Tx) -> None:
    applied = tx.scalar("SELECT version FROM routing_directory_applied WHERE stream = ?", (event.stream,))
    if applied is not None and applied >= event.version:
        return
    if (record := carried_record(event)) is not None:
        _apply_agency(Agency.from_record(record), event.recorded_at, tx)
    elif event.type == "RoutingRuleChanged" and event.stream == RULES_STREAM:
        data = event.data
        match = data["match"]
        tx.execute(
            "INSERT INTO routing_rules (rule_id, keyword, region_code, category, agency_id, active, changed_at, "
            "changed_by, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (rule_id) DO UPDATE SET "
            "keyword = excluded.keyword, region_code = excluded.region_code, category = excluded.category, "
            "agency_id = excluded.agency_id, active = excluded.active, changed_at = excluded.changed_at, "
            "changed_by = excluded.changed_by, version = excluded.version",
            (
                data["rule_id"],
                match.get("keyword"),
                match.get("region_code"),
                match.get("category"),
                data["agency_id"],
                int(data.get("active", True)),
                moment(event.recorded_at),
                event.metadata.get("actor"),
                event.version,
            ),
        )
    tx.execute(
        "INSERT INTO routing_directory_applied (stream, version) VALUES (?, ?) "
        "ON CONFLICT (stream) DO UPDATE SET version = excluded.version",
        (event.stream, event.version),
    )


def _apply_agency(agency: Agency, at: datetime, tx: Tx) -> None:
    tx.execute(
        "INSERT INTO routing_agencies (agency_id, name, name_key, parent_id, kind, region_code, sms_keywords, "
        "liaisons, active, top_level, version, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (agency_id) DO UPDATE SET name = excluded.name, name_key = excluded.name_key, "
        "parent_id = excluded.parent_id, kind = excluded.kind, region_code = excluded.region_code, "
        "sms_keywords = excluded.sms_keywords, liaisons = excluded.liaisons, active = excluded.active, "
        "top_level = excluded.top_level, version = excluded.version, updated_at = excluded.updated_at",
        (
            agency.agency_id,
            agency.name,
            agency.name.casefold(),
            agency.parent_id,
            agency.kind.value,
            agency.region_code,
            json.dumps(list(agency.sms_keywords)),
            json.dumps([dict(contact) for contact in agency.liaisons]),
            int(agency.active),
            int(is_top_level(agency.agency_id)),
            agency.version,
            moment(at),
        ),
    )
    # A retired agency keeps its record but no longer answers to its keywords.
    tx.execute("DELETE FROM routing_keywords WHERE agency_id = ?", (agency.agency_id,))
    if agency.active:
        for keyword in agency.sms_keywords:
            tx.execute(
                "INSERT INTO routing_keywords (keyword, agency_id) VALUES (?, ?) "
                "ON CONFLICT (keyword) DO UPDATE SET agency_id = excluded.agency_id",
                (keyword, agency.agency_id),
            )


AGENCY_COLUMNS = "agency_id, name, parent_id, kind, region_code, sms_keywords, liaisons, active, version, updated_at"


@dataclass(frozen=True)
class AgencyRow:
    agency_id: str
    name: str
    parent_id: str | None
    kind: str
    region_code: str | None
    sms_keywords: list[str]
    liaisons: list[dict[str, Any]]
    active: bool
    version: int
    updated_at: str

    @classmethod
    def from_row(cls, row: tuple) -> AgencyRow:
        return cls(
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            json.loads(row[5]),
            json.loads(row[6]),
            bool(row[7]),
            row[8],
            row[9],
        )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def find_agencies(
    tx: Tx,
    *,
    kind: str | None = None,
    parent_id: str | None = None,
    region_code: str | None = None,
    q: str | None = None,
    keyword: str | None = None,
    include_inactive: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> tuple[int, list[AgencyRow]]:
    """Agencies by id, filtered; returns (how many match, the requested page)."""
    where: list[str] = []
    params: list[Any] = []
    if not include_inactive:
        where.append("active = 1")
    if kind:
        where.append("kind = ?")
        params.append(kind)
    if parent_id:
        where.append("parent_id = ?")
        params.append(parent_id)
    if region_code:
        where.append("(region_code = ? OR region_code LIKE ? ESCAPE '\\')")
        params += [region_code, _escape_like(region_code) + ".%"]
    if q:
        where.append("name_key LIKE ? ESCAPE '\\'")
        params.append("%" + _escape_like(q.casefold()) + "%")
    if keyword:
        where.append("agency_id IN (SELECT agency_id FROM routing_keywords WHERE keyword = ?)")
        params.append(keyword.upper())
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    total = int(tx.scalar(f"SELECT count(*) FROM routing_agencies{clause}", params) or 0)
    rows = tx.fetchall(
        f"SELECT {AGENCY_COLUMNS} FROM routing_agencies{clause} ORDER BY agency_id LIMIT ? OFFSET ?",
        [*params, limit, offset],
    )
    return total, [AgencyRow.from_row(row) for row in rows]


def get_agency(tx: Tx, agency_id: str) -> AgencyRow | None:
    row = tx.fetchone(f"SELECT {AGENCY_COLUMNS} FROM routing_agencies WHERE agency_id = ?", (agency_id,))
    return None if row is None else AgencyRow.from_row(row)


def child_agencies(tx: Tx, agency_id: str) -> list[AgencyRow]:
    rows = tx.fetchall(
        f"SELECT {AGENCY_COLUMNS} FROM routing_agencies WHERE parent_id = ? ORDER BY agency_id", (agency_id,)
    )
    return [AgencyRow.from_row(row) for row in rows]


def keyword_owners(tx: Tx, keywords: Iterable[str]) -> dict[str, str]:
    wanted = sorted(set(keywords))
    if not wanted:
        return {}
    marks = ", ".join("?" for _ in wanted)
    rows = tx.fetchall(f"SELECT keyword, agency_id FROM routing_keywords WHERE keyword IN ({marks})", wanted)
    return {keyword: agency_id for keyword, agency_id in rows}


def disposable_agencies(tx: Tx) -> frozenset[str]:
    """Active agencies that take dispositions (not OPD or units)."""
    rows = tx.fetchall("SELECT agency_id FROM routing_agencies WHERE active = 1 AND top_level = 1")
    return frozenset(row[0] for row in rows)


@dataclass(frozen=True)
class RuleRow:
    rule: Rule
    active: bool
    changed_at: str
    changed_by: str | None
    version: int  # of its latest change in the rules stream: what a change's If-Match names


def load_rules(tx: Tx, *, include_inactive: bool = False) -> list[RuleRow]:
    sql = (
        "SELECT rule_id, agency_id, keyword, region_code, category, active, changed_at, changed_by, version "
        "FROM routing_rules"
    )
    if not include_inactive:
        sql += " WHERE active = 1"
    return [
        RuleRow(Rule(row[0], row[1], row[2], row[3], row[4]), bool(row[5]), row[6], row[7], row[8])
        for row in tx.fetchall(sql + " ORDER BY rule_id")
    ]


# -- complaints and their deadlines -------------------------------------------------------------------------


COMPLAINT_COLUMNS = (
    "tracking_id, version, status, level, kind, title, category, tags, region_code, channel, anonymous, "
    "confidential, agency_id, submitted_suggestion, suggested_agency_id, returned_from, return_reason, returned_by, "
    "bounce_count, duplicate_suspect_of, information_requested, submitted_at, verification_due, archive_due, "
    "last_event_at, reporter_ref"
)
_COMPLAINT_UPDATE = ", ".join(
    f"{column} = excluded.{column}" for column in COMPLAINT_COLUMNS.split(", ") if column != "tracking_id"
)


@dataclass
class _Known:
    """What a report's row keeps beyond the fold: the last applied version and facts only the events hold."""

    version: int
    submitted_suggestion: str | None
    returned_by: list[str]
    suspects: list[str]


# A deadline row: kind -> (due, cause_version, cause_event_id, correlation_id).
Deadlines = dict[str, tuple[str, int, str, str | None]]
_CHUNK = 500  # ids per IN (...) list


def _chunks(ids: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


class HeldComplaints:
    """Handler of `routing.complaints` (a `lapor.subscriptions.Holding`): the queue row and the running deadlines
    of each report. Each report's row and deadlines are loaded once, every event is folded in, and each changed
    report is written once by `write`: once per batch live, once per rebuild (see `holding_subscription`)."""

    def __init__(self, states: ComplaintStates) -> None:
        self.states = states
        self._looked_up: set[str] = set()  # reports whose rows were loaded (or found missing)
        self._known: dict[str, _Known] = {}
        self._deadlines: dict[str, Deadlines] = {}
        self._changed: dict[str, ComplaintState] = {}

    def apply(self, events: Sequence[RecordedEvent], tx: Tx) -> None:
        known, deadlines, changed = self._known, self._deadlines, self._changed
        ids = sorted({event.stream.removeprefix("complaint-") for event in events} - self._looked_up)
        self._load(tx, ids)
        self._looked_up.update(ids)
        for event in events:
            tracking_id = event.stream.removeprefix("complaint-")
            row = known.get(tracking_id)
            if row is not None and row.version >= event.version:
                continue  # applied before: a replayed batch
            state = self.states.after(event)
            known[tracking_id] = _advance(row, event)
            deadlines[tracking_id] = _running(deadlines.get(tracking_id, {}), state, event)
            changed[tracking_id] = state

    def held(self) -> int:
        return len(self._looked_up)

    def _load(self, tx: Tx, ids: Sequence[str]) -> None:
        for chunk in _chunks(ids):
            marks = ", ".join("?" for _ in chunk)
            for row in tx.fetchall(
                "SELECT tracking_id, version, submitted_suggestion, returned_by, duplicate_suspect_of "
                f"FROM routing_complaints WHERE tracking_id IN ({marks})",
                chunk,
            ):
                self._known[row[0]] = _Known(row[1], row[2], json.loads(row[3]), json.loads(row[4]))
            for row in tx.fetchall(
                "SELECT tracking_id, kind, due, cause_version, cause_event_id, correlation_id FROM routing_deadlines "
                f"WHERE tracking_id IN ({marks})",
                chunk,
            ):
                self._deadlines.setdefault(row[0], {})[row[1]] = (row[2], row[3], row[4], row[5])

    def write(self, tx: Tx) -> None:
        states, known, deadlines = self._changed, self._known, self._deadlines
        if states:
            marks = ", ".join("?" for _ in COMPLAINT_COLUMNS.split(", "))
            touched = sorted(states)
            tx.executemany(
                f"INSERT INTO routing_complaints ({COMPLAINT_COLUMNS}) VALUES ({marks}) "
                f"ON CONFLICT (tracking_id) DO UPDATE SET {_COMPLAINT_UPDATE}",
                [_row(states[tracking_id], known[tracking_id]) for tracking_id in touched],
            )
            for chunk in _chunks(touched):
                tx.execute(
                    f"DELETE FROM routing_deadlines WHERE tracking_id IN ({', '.join('?' for _ in chunk)})", chunk
                )
            rows = [
                (tracking_id, kind, *deadline)
                for tracking_id in touched
                for kind, deadline in sorted(deadlines[tracking_id].items())
            ]
            if rows:
                tx.executemany(
                    "INSERT INTO routing_deadlines (tracking_id, kind, due, cause_version, cause_event_id, "
                    "correlation_id) VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
        self._looked_up, self._known, self._deadlines, self._changed = set(), {}, {}, {}


def _advance(row: _Known | None, event: RecordedEvent) -> _Known:
    """The row's own facts after `event`."""
    known = row or _Known(event.version, None, [], [])
    data = event.data
    submitted_suggestion, returned_by, suspects = known.submitted_suggestion, known.returned_by, known.suspects
    if event.type == "ComplaintSubmitted":
        submitted_suggestion = data.get("suggested_agency_id")
        suspects = list(data.get("duplicate_suspect_of", ()))
    elif event.type == "DispositionReturned" and data["agency_id"] not in returned_by:
        returned_by = [*returned_by, data["agency_id"]]
    return _Known(event.version, submitted_suggestion, returned_by, suspects)


def _running(existing: Deadlines, state: ComplaintState, event: RecordedEvent) -> Deadlines:
    """Exactly the deadlines running after `event`. One whose due moment is unchanged keeps its cause; a new or
    moved one is caused by this event."""
    running: Deadlines = {}
    for kind, due in running_deadlines(state).items():
        key = _KIND_VALUES[kind]
        current = existing.get(key)
        # None: due at once, from the moment it started running
        started = current[0] if current is not None else moment(event.recorded_at)
        due_text = started if due is None else moment(due)
        if current is not None and current[0] == due_text:
            running[key] = current
        else:
            running[key] = (due_text, event.version, event.event_id_text, event.metadata.get("correlation_id"))
    return running


_KIND_VALUES = {kind: kind.value for kind in DeadlineKind}  # a member's `.value` is a slow descriptor in 3.11


def _json_list(values: Sequence[str]) -> str:
    return json.dumps(list(values)) if values else "[]"  # most are empty: skip the encoder


def _row(s: ComplaintState, known: _Known) -> tuple[Any, ...]:
    assert s.status is not None, "a stream starts with ComplaintSubmitted"
    assert s.submitted_at is not None
    assert s.last_event_at is not None
    return (
        s.tracking_id,
        s.version,
        s.status.value,
        s.level.value,
        s.kind.value if s.kind else None,
        s.title,
        s.category,
        _json_list(s.tags),
        s.region_code,
        s.channel.value if s.channel else None,
        int(s.anonymous),
        int(s.confidential),
        s.agency_id,
        known.submitted_suggestion,
        s.suggested_agency_id,
        s.returned_from,
        s.return_reason,
        _json_list(known.returned_by),
        s.bounce_count,
        _json_list(known.suspects),
        s.information_requested,
        moment(s.submitted_at),
        _moment_or_none(s.verification_due),
        _moment_or_none(s.archive_due),
        moment(s.last_event_at),
        s.reporter_ref,
    )


@dataclass(frozen=True)
class QueuedReport:
    """A report waiting for routing, as the queue row holds it."""

    tracking_id: str
    version: int
    status: Status
    level: str
    kind: str | None
    title: str | None
    category: str | None
    tags: list[str]
    region_code: str | None
    channel: str | None
    anonymous: bool
    confidential: bool
    agency_id: str | None
    submitted_suggestion: str | None
    suggested_agency_id: str | None
    returned_from: str | None
    return_reason: str | None
    returned_by: list[str]
    bounce_count: int
    duplicate_suspect_of: list[str]
    information_requested: str | None
    submitted_at: datetime
    verification_due: datetime | None
    archive_due: datetime | None
    last_event_at: datetime
    reporter_ref: str | None  # the vault entry whose values are scrubbed from what officials wrote

    @classmethod
    def from_row(cls, row: tuple) -> QueuedReport:
        return cls(
            tracking_id=row[0],
            version=row[1],
            status=Status(row[2]),
            level=row[3],
            kind=row[4],
            title=row[5],
            category=row[6],
            tags=json.loads(row[7]),
            region_code=row[8],
            channel=row[9],
            anonymous=bool(row[10]),
            confidential=bool(row[11]),
            agency_id=row[12],
            submitted_suggestion=row[13],
            suggested_agency_id=row[14],
            returned_from=row[15],
            return_reason=row[16],
            returned_by=json.loads(row[17]),
            bounce_count=row[18],
            duplicate_suspect_of=json.loads(row[19]),
            information_requested=row[20],
            submitted_at=datetime.fromisoformat(row[21]),
            verification_due=parse_moment(row[22]),
            archive_due=parse_moment(row[23]),
            last_event_at=datetime.fromisoformat(row[24]),
            reporter_ref=row[25],
        )

    @property
    def facts(self) -> RoutingFacts:
        return RoutingFacts(
            status=self.status,
            region_code=self.region_code,
            category=self.category,
            channel=self.channel,
            submitted_suggestion=self.submitted_suggestion,
            suggested_agency_id=self.suggested_agency_id,
            returned_by=tuple(self.returned_by),
        )


def queued_reports(
    tx: Tx, statuses: Sequence[Status], *, region_code: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[int, list[QueuedReport]]:
    """Reports in `statuses`, oldest submission first; returns (how many, the requested page)."""
    marks = ", ".join("?" for _ in statuses)
    where = f"status IN ({marks})"
    params: list[Any] = [status.value for status in statuses]
    if region_code:
        where += " AND (region_code = ? OR region_code LIKE ? ESCAPE '\\')"
        params += [region_code, _escape_like(region_code) + ".%"]
    total = int(tx.scalar(f"SELECT count(*) FROM routing_complaints WHERE {where}", params) or 0)
    rows = tx.fetchall(
        f"SELECT {COMPLAINT_COLUMNS} FROM routing_complaints WHERE {where} "
        "ORDER BY submitted_at, tracking_id LIMIT ? OFFSET ?",
        [*params, limit, offset],
    )
    return total, [QueuedReport.from_row(row) for row in rows]


def queued_report(tx: Tx, tracking_id: str) -> QueuedReport | None:
    row = tx.fetchone(f"SELECT {COMPLAINT_COLUMNS} FROM routing_complaints WHERE tracking_id = ?", (tracking_id,))
    return None if row is None else QueuedReport.from_row(row)


@dataclass(frozen=True)
class OpenDeadline:
    tracking_id: str
    kind: DeadlineKind
    due: datetime
    cause_version: int
    cause_event_id: str
    correlation_id: str | None

    @property
    def key(self) -> tuple[str, str, str]:
        return moment(self.due), self.tracking_id, self.kind.value
