"""Intake's read models: what it needs to know of the directory, and the recent reports duplicates are looked for in.

- `intake_agencies` / `intake_sms_keywords`: from category `directory` (AgencyRegistered, AgencyUpdated, written
  by routing): agency names for the tracking view, and SMS keyword -> agency. A retired agency
  (`active=False`) keeps its name but loses its keywords. Idempotent: the agency row keeps the last applied
  version of its stream and older or repeated events are ignored.
- `intake_recent_reports` / `intake_recent_reporter_keys`: from ComplaintSubmitted, the comparable text (see
  `duplicates.comparable_text`) and its length, area and time of each report of the last `RETENTION`, and
  pseudonyms of its reporter's NIK, phone and e-mail (read from the vault: an erased identity is not matched
  again). Only version 0 of a stream is a submission, so its primary key makes it idempotent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from lapor.db import Tx, setup_tables, sortable_moment
from lapor.directory import carried_record
from lapor.store import RecordedEvent
from lapor.store.vault import Vault
from services.intake.duplicates import (
    MAX_CANDIDATES,
    SAME_TEXT_SCORE,
    WINDOW,
    Report,
    area_of,
    comparable_lengths,
    comparable_text,
)
from services.intake.sms import KeywordAgency

RETENTION = 2 * WINDOW  # rows older than this (by event time) are pruned; the window is all that is read

DIRECTORY_TABLES = (
    "CREATE TABLE IF NOT EXISTS intake_agencies ("
    " agency_id TEXT PRIMARY KEY, name TEXT NOT NULL, region_code TEXT, active INTEGER NOT NULL,"
    " stream_version BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS intake_sms_keywords (keyword TEXT PRIMARY KEY, agency_id TEXT NOT NULL)",
)

RECENT_REPORT_TABLES = (
    "CREATE TABLE IF NOT EXISTS intake_recent_reports ("
    " tracking_id TEXT PRIMARY KEY, area TEXT NOT NULL, submitted_at TEXT NOT NULL, text TEXT NOT NULL,"
    " length INTEGER NOT NULL)",
    # Covers duplicate_candidates' scan of an area's newest reports: one index range, no row lookups.
    "CREATE INDEX IF NOT EXISTS intake_recent_reports_by_area"
    " ON intake_recent_reports (area, submitted_at, length, tracking_id, text)",
    "CREATE INDEX IF NOT EXISTS intake_recent_reports_by_time ON intake_recent_reports (submitted_at)",
    "CREATE TABLE IF NOT EXISTS intake_recent_reporter_keys ("
    " reporter_key TEXT NOT NULL, tracking_id TEXT NOT NULL, submitted_at TEXT NOT NULL,"
    " PRIMARY KEY (reporter_key, tracking_id))",
    "CREATE INDEX IF NOT EXISTS intake_recent_reporter_keys_by_time ON intake_recent_reporter_keys (submitted_at)",
)


setup_directory = setup_tables(DIRECTORY_TABLES)
setup_recent_reports = setup_tables(RECENT_REPORT_TABLES)
moment = sortable_moment


# -- the directory ------------------------------------------------------------------------------------------


def apply_directory_event(event: RecordedEvent, tx: Tx) -> None:
    record = carried_record(event)
    if record is None:
        return
    data = record.data
    agency_id = data["agency_id"]
    applied = tx.scalar("SELECT stream_version FROM intake_agencies WHERE agency_id = ?", (agency_id,))
    if applied is not None and applied >= record.version:
        return
    tx.execute(
        "INSERT INTO intake_agencies (agency_id, name, region_code, active, stream_version) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (agency_id) DO UPDATE SET name = excluded.name, region_code = excluded.region_code, "
        "active = excluded.active, stream_version = excluded.stream_version",
        (agency_id, data["name"], data.get("region_code"), int(record.active), record.version),
    )
    tx.execute("DELETE FROM intake_sms_keywords WHERE agency_id = ?", (agency_id,))
    if record.active:
        for keyword in data.get("sms_keywords") or ():
            tx.execute(
                "INSERT INTO intake_sms_keywords (keyword, agency_id) VALUES (?, ?) "
                "ON CONFLICT (keyword) DO UPDATE SET agency_id = excluded.agency_id",
                (keyword.upper(), agency_id),
            )


def keyword_agency(tx: Tx, keyword: str) -> KeywordAgency | None:
    row = tx.fetchone(
        "SELECT k.keyword, a.agency_id, a.name, a.region_code FROM intake_sms_keywords k "
        "JOIN intake_agencies a ON a.agency_id = k.agency_id WHERE k.keyword = ?",
        (keyword.upper(),),
    )
    return None if row is None else KeywordAgency(*row)


def agency_name(tx: Tx, agency_id: str | None) -> str | None:
    if agency_id is None:
        return None
    return tx.scalar("SELECT name FROM intake_agencies WHERE agency_id = ?", (agency_id,))


# -- recent submissions -------------------------------------------------------------------------------------


_ReportRow = tuple[str, str, str, str, int]  # intake_recent_reports: tracking_id, area, submitted_at, text, length
_KeyRow = tuple[str, str, str]  # intake_recent_reporter_keys: reporter_key, tracking_id, submitted_at


class RecentReports:
    """The `intake.recent_reports` projection: `handle` for one event, `handle_batch` for many (old rows are
    pruned once per batch, by the time of its last event)."""

    def __init__(self, vault: Vault, reporter_keys: Callable[[dict | None], list[str]]) -> None:
        self._vault = vault
        self._reporter_keys = reporter_keys

    def handle(self, event: RecordedEvent, tx: Tx) -> None:
        self.handle_batch([event], tx)

    def handle_batch(self, events: Sequence[RecordedEvent], tx: Tx) -> None:
        reports: list[_ReportRow] = []
        keys: list[_KeyRow] = []
        for event in events:
            if event.type == "ComplaintSubmitted" and event.version == 0:
                self._add(event, reports, keys)
        if reports:  # one statement each for the batch
            tx.executemany(
                "INSERT INTO intake_recent_reports (tracking_id, area, submitted_at, text, length) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (tracking_id) DO NOTHING",
                reports,
            )
        if keys:
            tx.executemany(
                "INSERT INTO intake_recent_reporter_keys (reporter_key, tracking_id, submitted_at) VALUES (?, ?, ?) "
                "ON CONFLICT (reporter_key, tracking_id) DO NOTHING",
                keys,
            )
        if events:
            horizon = moment(events[-1].recorded_at - RETENTION)
            tx.execute("DELETE FROM intake_recent_reports WHERE submitted_at < ?", (horizon,))
            tx.execute("DELETE FROM intake_recent_reporter_keys WHERE submitted_at < ?", (horizon,))

    def _add(self, event: RecordedEvent, reports: list[_ReportRow], keys: list[_KeyRow]) -> None:
        data = event.data
        at = moment(event.recorded_at)
        tracking_id = data["tracking_id"]
        text = comparable_text(data["title"], data["body"])
        reports.append((tracking_id, area_of(data.get("region_code")), at, text, len(text)))
        for key in self._reporter_keys(self._vault.identity(data.get("reporter_ref"))):
            keys.append((key, tracking_id, at))


# Between the fields and rows packed below: a control character, which no report text holds
# (lapor.limits.check_plain_text), so splitting on it gives back tracking_id, text, tracking_id, text, ...
_SEPARATOR = "\x1f"


def _packed(tx: Tx, rows_sql: str, params: tuple) -> list[Report]:
    """The (tracking_id, text) rows of `rows_sql`, fetched as one packed string. Python's sqlite3 releases and
    re-takes the GIL for every row it steps to; with many request threads waiting for the GIL, a few hundred
    rows cost far more than the query. One aggregate row does not."""
    concat = "group_concat({}, ?)" if tx.dialect == "sqlite" else "string_agg({}, ?)"
    packed = tx.scalar(
        f"SELECT {concat.format('tracking_id || ? || text')} FROM ({rows_sql}) AS rows",
        (_SEPARATOR, _SEPARATOR, *params),
    )
    if not packed:
        return []
    fields = packed.split(_SEPARATOR)
    return list(zip(fields[::2], fields[1::2], strict=True))


def duplicate_candidates(
    tx: Tx, text: str, area: str, reporter_keys: list[str], now: datetime
) -> tuple[list[Report], list[Report]]:
    """(tracking_id, text) of the area's MAX_CANDIDATES newest reports of the window that are long enough and
    short enough to reach SAME_TEXT_SCORE with `text`, and of the same reporter's reports anywhere."""
    since = moment(now - WINDOW)
    shortest, longest = comparable_lengths(len(text), SAME_TEXT_SCORE)
    area_reports = _packed(
        tx,
        "SELECT tracking_id, text FROM ("
        " SELECT tracking_id, text, length FROM intake_recent_reports WHERE area = ? AND submitted_at >= ?"
        " ORDER BY submitted_at DESC LIMIT ?"
        ") AS recent WHERE length BETWEEN ? AND ?",
        (area, since, MAX_CANDIDATES, shortest, longest),
    )
    own_reports: list[Report] = []
    if reporter_keys:
        marks = ", ".join("?" for _ in reporter_keys)
        own_reports = _packed(
            tx,
            "SELECT DISTINCT s.tracking_id, s.text FROM intake_recent_reporter_keys r "
            "JOIN intake_recent_reports s ON s.tracking_id = r.tracking_id "
            f"WHERE r.reporter_key IN ({marks}) AND r.submitted_at >= ?",
            (*reporter_keys, since),
        )
    return area_reports, own_reports
