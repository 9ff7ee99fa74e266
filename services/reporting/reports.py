"""The figures of the national, agency and public views, computed from the reporting read models.

Two kinds of figure, each with its own period rule (docs/reporting.md):
- *about reports* (by status, kind, channel, category, province, agency; SLA compliance; time to the first
  follow-up; backlog; the scoreboard's held/followed-up/overdue): the reports **submitted** in the period;
- *about happenings* (received, verified, disposed, followed up, closed per day; escalations, bounces, red
  marks): what **happened** in the period, whenever the report came in.
A region filter is a Kemendagri code and takes every region inside it ("35" is Jawa Timur and its cities).

Every view says which log position it reflects (`as_of.position`: the projection's checkpoint, read in the
same snapshot as the figures), so a client can tell how fresh it is.
"""

from __future__ import annotations

import calendar
import math
import statistics
import threading
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import lokal
from cachetools import LRUCache, cached
from pydantic import BaseModel, Field

from lapor.calendar import jakarta_date
from lapor.complaint import OPEN_STATUSES, Status
from lapor.db import Tx
from lapor.limits import NO_CATEGORY, OTHER_CATEGORY, like_a_category_label
from lapor.policy import Sp4nPolicy
from lapor.principal import Principal
from lapor.privacy import SIGHT, audience_of, redact_text
from services.reporting.projections import COMPLAINTS_SUBSCRIPTION, HOLDER_COLUMNS, agency_names, in_byte_order

# -- filters ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """What a view is about: a period of Jakarta days (both ends included) and a region."""

    start: date | None = None
    end: date | None = None
    region: str | None = None


@dataclass
class _Where:
    """A WHERE clause built from parts that work on SQLite and PostgreSQL alike."""

    clauses: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def add(self, clause: str, *params: Any) -> None:
        self.clauses.append(clause)
        self.params.extend(params)

    def within(self, column: str, code: str, separator: str, *more_columns: str) -> None:
        """`column` (or one of `more_columns`) is `code` or lies inside it (`pemda-53.71/dinkes` in `pemda-53.71`,
        `35.73` in `35`). A prefix compare rather than LIKE: ids may hold `_`, which LIKE reads as a wildcard."""
        prefix = code + separator
        columns = (column, *more_columns)
        self.add(" OR ".join(f"{name} = ? OR substr({name}, 1, ?) = ?" for name in columns).join("()"),
                 *[value for _ in columns for value in (code, len(prefix), prefix)])

    def and_(self, clause: str, *params: Any) -> _Where:
        """A copy with one more clause."""
        return _Where([*self.clauses, clause], [*self.params, *params])

    def and_in(self, column: str, values: Sequence[Any]) -> _Where:
        return self.and_(f"{column} IN {_placeholders(values)}", *values)

    @property
    def sql(self) -> str:
        return " WHERE " + " AND ".join(self.clauses) if self.clauses else ""


def _reports_where(filters: Filters, agency_id: str | None = None) -> _Where:
    where = _Where()
    if filters.start is not None:
        where.add("submitted_day >= ?", filters.start.isoformat())
    if filters.end is not None:
        where.add("submitted_day <= ?", filters.end.isoformat())
    if filters.region:
        where.within("region_code", filters.region, ".")
    if agency_id is not None:
        # Its reports and its units' (a unit's own view: the reports assigned to it, `agency_id` being its agency's).
        where.within("agency_id", agency_id, "/", "unit_id")
    return where


def _happenings_where(filters: Filters, agency_id: str | None = None) -> _Where:
    where = _Where()
    if filters.start is not None:
        where.add("day >= ?", filters.start.isoformat())
    if filters.end is not None:
        where.add("day <= ?", filters.end.isoformat())
    if filters.region:
        where.within("region_code", filters.region, ".")
    if agency_id is not None:
        # What happened while it or its units held a report (a unit's own view: while the unit held it).
        where.within("agency_id", agency_id, "/", "unit_id")
    return where


# -- response models -------------------------------------------------------------------------------------------


class AsOf(BaseModel):
    position: int = Field(description="the log position the figures reflect (the projection's checkpoint)")
    generated_at: datetime


class Applied(BaseModel):
    start: date | None = Field(None, alias="from", description="first Jakarta day of the period")
    end: date | None = Field(None, alias="to", description="last Jakarta day of the period")
    region: str | None = Field(None, description="Kemendagri region code, with every region inside it")

    model_config = {"populate_by_name": True}


# Public statistics withhold what could single a report out (statistical disclosure control): a cell of the public
# grid (a month by a city) of fewer reports than this is left out, and a category held by fewer reports of a cell
# is counted under OTHER_CATEGORY there (`public`).
PUBLIC_MIN_REPORTS = 5


class Totals(BaseModel):
    reports: int = Field(description="reports submitted in the period")
    open: int
    closed: int = Field(description="closed after a resolution")
    archived: int = Field(description="archived, or marked as a duplicate")


class Province(BaseModel):
    code: str
    name: str | None
    reports: int


class AgencyCount(BaseModel):
    agency_id: str
    name: str | None
    reports: int


class Breakdown(BaseModel):
    by_status: dict[str, int]
    by_kind: dict[str, int]
    by_channel: dict[str, int]
    by_category: dict[str, int]
    by_province: list[Province]


class Day(BaseModel):
    day: date
    received: int = 0
    verified: int = 0
    disposed: int = 0
    assigned: int = Field(0, description="reports an agency assigned to one of its units")
    followed_up: int = 0
    closed: int = 0


class StageCompliance(BaseModel):
    stage: str = Field(description="verification (telaah) or follow_up (tindak lanjut)")
    deadline_working_days: int
    on_time: int = Field(description="stage done by its deadline")
    late: int = Field(description="stage done after its deadline")
    overdue: int = Field(description="not done yet, deadline passed (follow-up: or red-marked)")
    compliance: float | None = Field(description="on_time / (on_time + late + overdue); null when none is due")


class Durations(BaseModel):
    reports: int = Field(description="reports with a first follow-up")
    median_hours: float | None
    p90_hours: float | None


class AgeBucket(BaseModel):
    bucket: str = Field(description="age since submission, in calendar days")
    min_days: int
    max_days: int | None
    reports: int


class Escalations(BaseModel):
    total: int
    by_kind: dict[str, int]
    bounces: int = Field(description="returns as 'bukan wewenang' (disposition bounced back to routing)")
    red_marks: int = Field(description="follow-up deadlines missed and escalated (nilai merah)")


class AgencyScore(BaseModel):
    agency_id: str
    name: str | None
    reports: int = Field(description="reports held now (submitted in the period)")
    open: int
    followed_up: int = Field(description="held reports the agency has answered since they reached it")
    follow_up_rate: float | None
    overdue: int = Field(description="open reports past their follow-up deadline, or red-marked and not answered since")
    red_marks: int = Field(description="follow-up deadlines missed and escalated in the period (nilai merah)")
    bounces: int = Field(description="reports it returned as 'bukan wewenang' in the period")
    dispositions: int = Field(description="dispositions it received in the period")


class NationalReport(BaseModel):
    as_of: AsOf
    filters: Applied
    totals: Totals
    breakdown: Breakdown
    by_agency: list[AgencyCount]
    daily: list[Day]
    sla: list[StageCompliance]
    time_to_first_follow_up: Durations
    backlog: list[AgeBucket]
    escalations: Escalations


class Scoreboard(BaseModel):
    as_of: AsOf
    filters: Applied
    agencies: list[AgencyScore] = Field(description="worst first: red marks, then overdue, then follow-up rate")


class UnitSummary(BaseModel):
    unit_id: str
    name: str | None
    reports: int = Field(description="reports it holds now (submitted in the period)")
    open: int
    followed_up: int
    overdue: int
    assigned: int = Field(description="reports assigned to it in the period")
    red_marks: int = Field(description="follow-up deadlines missed and escalated while it held a report, in the period")


class AgencyReport(BaseModel):
    as_of: AsOf
    filters: Applied
    agency_id: str
    name: str | None
    score: AgencyScore
    totals: Totals
    breakdown: Breakdown
    daily: list[Day]
    sla: list[StageCompliance]
    time_to_first_follow_up: Durations = Field(
        description="from the report reaching the agency (its disposition, or an Ombudsman takeover) to the "
        "agency's first answer to the reporter (a public follow-up or the resolution): its own, not an earlier "
        "holder's"
    )
    backlog: list[AgeBucket]
    escalations: Escalations
    units: list[UnitSummary] = Field(description="units and offices (OPD) inside the agency holding its reports")


class PublicCells(BaseModel):
    shown: int = Field(description=f"month × city cells of the selection holding at least {PUBLIC_MIN_REPORTS} "
                       "reports: every figure is theirs")
    withheld: int = Field(description="cells holding fewer: left out of every figure")


class PublicMonth(BaseModel):
    month: str = Field(description="YYYY-MM (Jakarta)", examples=["2026-11"])
    received: int = Field(description="reports submitted in the month")
    disposed: int = Field(description="reports first disposed to an agency in the month")
    followed_up: int = Field(description="reports first answered with a public follow-up in the month")


class PublicStatistics(BaseModel):
    """Aggregates only: confidential reports are counted, nothing of them is shown. The figures are built from a
    fixed grid of cells, a month (of submission, Jakarta) by a city (the first two levels of the region code):
    the period is widened to whole months and the region to its city, and a cell of fewer than
    PUBLIC_MIN_REPORTS reports is left out whole, so no two selections differ by less than a cell. Every figure,
    the monthly series too, counts a report under its own cell."""

    as_of: AsOf
    filters: Applied = Field(description="the selection as applied: whole months, a region no finer than a city")
    totals: Totals | None = Field(description="null when withheld")
    withheld: bool = Field(
        description=f"every cell of the selection holds fewer than {PUBLIC_MIN_REPORTS} reports: no figure is "
        "shown, since every figure, even how many are open, would describe the reports themselves"
    )
    cells: PublicCells
    breakdown: Breakdown = Field(
        description=f"a category held by fewer than {PUBLIC_MIN_REPORTS} reports of a cell is counted under "
        f"{OTHER_CATEGORY!r} there (a category may be the reporter's own words)"
    )
    monthly: list[PublicMonth] = Field(
        description="what happened to the shown cells' reports, month by month (a day-by-day series would tell a "
        "lone report's timeline apart inside its cell)"
    )
    follow_up_rate: float | None = Field(description="disposed reports with a public follow-up post")
    time_to_first_follow_up: Durations | None = Field(
        description=f"over the cells with {PUBLIC_MIN_REPORTS} answered reports or more (a cell with fewer would "
        f"move the median by one report's own wait); the 90th percentile from {2 * PUBLIC_MIN_REPORTS} answers"
    )
    sla: list[StageCompliance]


# -- the figures -----------------------------------------------------------------------------------------------

_OPEN = tuple(sorted(status.value for status in OPEN_STATUSES))
_WAITING_FOR_FOLLOW_UP = (Status.disposed.value, Status.in_progress.value)
_ARCHIVED = (Status.archived.value, Status.duplicate.value)
AGE_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("0-3", 0, 3),
    ("4-7", 4, 7),
    ("8-14", 8, 14),
    ("15-30", 15, 30),
    ("31-60", 31, 60),
    ("61+", 61, None),
)
DAILY_METRICS = ("received", "verified", "disposed", "assigned", "followed_up", "closed")
_NONE = "(none)"


def _placeholders(values: Sequence[Any]) -> str:
    return "(" + ", ".join("?" * len(values)) + ")"


# The reports' dimensions, and what is summed per combination of them: one scan of rpt_complaints gives every
# figure about reports but the durations (a wide table read once instead of once per figure).
_DIMENSIONS = ("status", "kind", "channel", "category", "province", "agency_id", "unit_id")
_SUMS = (
    "verification_on_time",
    "verification_late",
    "verification_overdue",
    "follow_up_on_time",
    "follow_up_late",
    "follow_up_overdue",
    "followed_up",
    "overdue",
    *(f"age:{label}" for label, _, _ in AGE_BUCKETS),
)


def _sums_sql(now: datetime) -> tuple[str, list[Any]]:
    moment = now.timestamp()
    is_open = f"status IN {_placeholders(_OPEN)}"
    waiting = f"status IN {_placeholders(_WAITING_FOR_FOLLOW_UP)}"
    # A red-marked report not answered since is overdue from the red mark: the escalation moved `follow_up_due` on
    # to the next level's deadline, but the stage's has passed. On the scoreboard, only for the holder marked.
    past_due = "(follow_up_due < ? OR red_marked_agency IS NOT NULL)"
    holder_past_due = "(follow_up_due < ? OR red_marked_agency = agency_id)"
    cases: list[tuple[str, list[Any]]] = [
        ("verification_on_time = 1", []),
        ("verification_on_time = 0", []),
        # (After a pend answered on time, the stage runs again: still NULL, back in `submitted`, a new deadline.)
        ("verification_on_time IS NULL AND status = ? AND verification_due < ?", [Status.submitted.value, moment]),
        ("follow_up_on_time = 1", []),
        ("follow_up_on_time = 0", []),
        (f"follow_up_on_time IS NULL AND {waiting} AND {past_due}", [*_WAITING_FOR_FOLLOW_UP, moment]),
        ("followed_up = 1", []),
        # The scoreboard's overdue: past the follow-up deadline running now (after a reopening too).
        (f"{waiting} AND {holder_past_due}", [*_WAITING_FOR_FOLLOW_UP, moment]),
    ]
    today = jakarta_date(now)
    for _, low, high in AGE_BUCKETS:
        # Open reports by calendar days since submission: Jakarta dates, like every other day of the reports
        # (ISO dates compare as text alike on SQLite and PostgreSQL). Counting 24-hour periods back from now put
        # a report of 23:00 four days ago in 0-3 at 01:00 today.
        clause, params = is_open, list[Any](_OPEN)
        if low:
            clause, params = f"{clause} AND submitted_day <= ?", [*params, (today - timedelta(days=low)).isoformat()]
        if high is not None:
            clause, params = f"{clause} AND submitted_day >= ?", [*params, (today - timedelta(days=high)).isoformat()]
        cases.append((clause, params))
    sql = ", ".join(f"sum(CASE WHEN {clause} THEN 1 ELSE 0 END)" for clause, _ in cases)
    return sql, [param for _, params in cases for param in params]


@dataclass(frozen=True)
class _Group:
    """Reports sharing every dimension, with their count and sums."""

    status: str
    kind: str | None
    channel: str | None
    category: str | None
    province: str | None
    agency_id: str | None
    unit_id: str | None
    reports: int
    sums: Mapping[str, int]

    @property
    def open(self) -> bool:
        return self.status in _OPEN


def _scan(tx: Tx, where: _Where, now: datetime, *, units: bool = False) -> list[_Group]:
    """The groups of reports sharing every dimension; by unit too only when `units` (the agency view lists them):
    otherwise `unit_id` is None, and there are far fewer groups to read and add up (on the benchmark's 127,000
    reports: 5,288 groups instead of 14,516, and the national view took 414 ms median instead of 630, in
    interleaved runs)."""
    sums, params = _sums_sql(now)
    chosen = _DIMENSIONS if units else _DIMENSIONS[:-1]  # unit_id last: a prefix of the covering index's order
    dimensions = ", ".join(chosen)
    rows = tx.fetchall(
        f"SELECT {dimensions}, count(*), {sums} FROM rpt_complaints{where.sql} GROUP BY {dimensions}",
        [*params, *where.params],
    )
    width = len(chosen)
    return [
        _Group(
            *row[:width],  # type: ignore[misc]  # the dimensions; mypy cannot count a slice of a row
            *((None,) * (len(_DIMENSIONS) - width)),
            reports=int(row[width]),
            sums={name: int(value or 0) for name, value in zip(_SUMS, row[width + 1 :], strict=True)},
        )
        for row in rows
    ]


def _total(groups: Iterable[_Group], name: str) -> int:
    return sum(group.sums[name] for group in groups)


def _as_counted(key: Any) -> str:
    return _NONE if key is None else str(key)


def _counted(groups: Iterable[_Group], dimension: str, name: Callable[[Any], str] = _as_counted) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for group in groups:
        counts[name(getattr(group, dimension))] += group.reports
    return dict(sorted(counts.items()))


def counted_category(category: str | None) -> str:
    """The name a report's category is counted under: NO_CATEGORY without one, a recorded name that reads like a
    label (`lapor.limits.like_a_category_label`: refused since session 31, given before) in quotes, any other name
    as it is. A category named `(none)` was counted with the reports without one, one named `(other)` with the
    public statistics' rest: now it stays apart, and no two names are counted as one."""
    if category is None:
        return NO_CATEGORY
    return f'"{category}"' if like_a_category_label(category) else category


def as_of(tx: Tx, now: datetime) -> AsOf:
    position = tx.scalar("SELECT position FROM subscription_checkpoints WHERE name = ?", (COMPLAINTS_SUBSCRIPTION,))
    return AsOf(position=int(position or 0), generated_at=now)


def _applied(filters: Filters) -> Applied:
    return Applied(start=filters.start, end=filters.end, region=filters.region)


def _totals(groups: Sequence[_Group]) -> Totals:
    return Totals(
        reports=sum(group.reports for group in groups),
        open=sum(group.reports for group in groups if group.open),
        closed=sum(group.reports for group in groups if group.status == Status.closed.value),
        archived=sum(group.reports for group in groups if group.status in _ARCHIVED),
    )


def _breakdown(groups: Sequence[_Group], by_category: dict[str, int]) -> Breakdown:
    """`by_category`: the categories as the reader may read them (`categories_as_read`)."""
    return Breakdown(
        by_status=_counted(groups, "status"),
        by_kind=_counted(groups, "kind"),
        by_channel=_counted(groups, "channel"),
        by_category=by_category,
        by_province=[
            Province(code=code, name=lokal.PROVINCES.get(code), reports=count)
            for code, count in _counted(groups, "province").items()
        ],
    )


def _daily(tx: Tx, where: _Where) -> list[Day]:
    where = where.and_in("metric", DAILY_METRICS)
    rows = tx.fetchall(
        f"SELECT day, metric, sum(count) FROM rpt_daily{where.sql} GROUP BY day, metric ORDER BY day", where.params
    )
    days: dict[str, dict[str, int]] = defaultdict(dict)
    for day, metric, count in rows:
        days[day][metric] = int(count)
    return [Day(day=date.fromisoformat(day), **counts) for day, counts in days.items()]


def _sla(groups: Sequence[_Group], policy: Sp4nPolicy, stages: Iterable[str]) -> list[StageCompliance]:
    def stage(name: str, days: int) -> StageCompliance:
        on_time, late, overdue = (_total(groups, f"{name}_{part}") for part in ("on_time", "late", "overdue"))
        return StageCompliance(stage=name, deadline_working_days=days, on_time=on_time, late=late, overdue=overdue,
                               compliance=_rate(on_time, on_time + late + overdue))

    days = {"verification": policy.verification_days, "follow_up": policy.follow_up_days}
    return [stage(name, days[name]) for name in stages]


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of sorted `values` (the smallest value with at least `fraction` of them at or
    below it); None for no values."""
    if not values:
        return None
    return values[max(0, math.ceil(fraction * len(values)) - 1)]


def _durations(tx: Tx, where: _Where, *, holder: bool = False) -> Durations:
    """Hours from the first disposition to the first public follow-up (the reporter's wait), or with `holder`
    from the report reaching its present holder to that holder's first answer (an agency's own pace)."""
    answered, reached = ("answered_at", "reached_at") if holder else ("first_follow_up_at", "first_disposed_at")
    where = where.and_(f"{answered} IS NOT NULL").and_(f"{reached} IS NOT NULL")
    return _durations_of(
        (float(end) - float(start)) / 3600
        for end, start in tx.fetchall(f"SELECT {answered}, {reached} FROM rpt_complaints{where.sql}", where.params)
    )


def _durations_of(hours: Iterable[float]) -> Durations:
    ordered = sorted(hours)
    median = statistics.median(ordered) if ordered else None
    p90 = percentile(ordered, 0.9)
    return Durations(
        reports=len(ordered),
        median_hours=None if median is None else round(median, 2),
        p90_hours=None if p90 is None else round(p90, 2),
    )


def _backlog(groups: Sequence[_Group]) -> list[AgeBucket]:
    return [AgeBucket(bucket=label, min_days=low, max_days=high, reports=_total(groups, f"age:{label}"))
            for label, low, high in AGE_BUCKETS]


def _happenings(tx: Tx, where: _Where) -> dict[str, int]:
    rows = tx.fetchall(f"SELECT metric, sum(count) FROM rpt_daily{where.sql} GROUP BY metric", where.params)
    return {metric: int(count) for metric, count in rows}


ByHolder = dict[tuple[str, str, str], int]  # (agency_id, unit_id, metric) -> count


def _happenings_by_holder(tx: Tx, where: _Where) -> ByHolder:
    """The happenings by the agency and unit that held the report: one read of `rpt_daily` from which an agency's
    view takes its escalations, its score and its units' lines."""
    rows = tx.fetchall(
        f"SELECT agency_id, unit_id, metric, sum(count) FROM rpt_daily{where.sql} GROUP BY agency_id, unit_id, metric",
        where.params,
    )
    return {(agency_id, unit_id, metric): int(count) for agency_id, unit_id, metric, count in rows}


def _by_metric(by_holder: ByHolder) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for (_, _, metric), count in by_holder.items():
        counts[metric] += count
    return counts


def _escalations(counts: Mapping[str, int]) -> Escalations:
    return Escalations(
        total=counts.get("escalated", 0),
        by_kind={metric.split(":", 1)[1]: count for metric, count in sorted(counts.items())
                 if metric.startswith("escalated:")},
        bounces=counts.get("returned", 0),
        red_marks=counts.get("red_mark", 0),
    )


@dataclass
class _Held:
    reports: int = 0
    open: int = 0
    followed_up: int = 0
    overdue: int = 0

    def add(self, group: _Group) -> None:
        self.reports += group.reports
        self.open += group.reports if group.open else 0
        self.followed_up += group.sums["followed_up"]
        self.overdue += group.sums["overdue"]


_SCORED = ("red_mark", "returned", "disposed")


def _scores(tx: Tx, groups: Sequence[_Group], happenings: ByHolder) -> list[AgencyScore]:
    """One line per agency holding reports or named in the period's scored happenings."""
    held: dict[str, _Held] = defaultdict(_Held)
    for group in groups:
        if group.agency_id is not None:
            held[group.agency_id].add(group)
    counted: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (agency, _, metric), count in happenings.items():
        if agency and metric in _SCORED:
            counted[agency][metric] += count
    agencies = held.keys() | counted.keys()
    names = agency_names(tx, agencies)
    scores = [
        AgencyScore(
            agency_id=agency,
            name=names.get(agency),
            reports=held[agency].reports,
            open=held[agency].open,
            followed_up=held[agency].followed_up,
            follow_up_rate=_rate(held[agency].followed_up, held[agency].reports),
            overdue=held[agency].overdue,
            red_marks=counted[agency].get("red_mark", 0),
            bounces=counted[agency].get("returned", 0),
            dispositions=counted[agency].get("disposed", 0),
        )
        for agency in agencies
    ]
    scores.sort(key=lambda s: (-s.red_marks, -s.overdue, s.follow_up_rate if s.follow_up_rate is not None else 2.0,
                               s.agency_id))
    return scores


def national(
    tx: Tx, filters: Filters, now: datetime, policy: Sp4nPolicy, reader: Principal | None
) -> NationalReport:
    """`reader`: who asks, for the categories (`categories_as_read`)."""
    where = _reports_where(filters)
    groups = _scan(tx, where, now)
    by_agency = _counted(groups, "agency_id")
    by_agency.pop(_NONE, None)  # with routing: not yet disposed, or returned
    names = agency_names(tx, by_agency)
    happenings = _happenings_where(filters)
    return NationalReport(
        as_of=as_of(tx, now),
        filters=_applied(filters),
        totals=_totals(groups),
        breakdown=_breakdown(groups, categories_as_read(_counted(groups, "category", counted_category), reader)),
        by_agency=[
            AgencyCount(agency_id=agency, name=names.get(agency), reports=count)
            for agency, count in sorted(by_agency.items(), key=lambda item: (-item[1], item[0]))
        ],
        daily=_daily(tx, happenings),
        sla=_sla(groups, policy, ("verification", "follow_up")),
        time_to_first_follow_up=_durations(tx, where),
        backlog=_backlog(groups),
        escalations=_escalations(_happenings(tx, happenings)),
    )


def scoreboard(tx: Tx, filters: Filters, now: datetime) -> Scoreboard:
    groups = _scan(tx, _reports_where(filters).and_("agency_id IS NOT NULL"), now)
    happenings = _happenings_by_holder(tx, _happenings_where(filters).and_("agency_id <> ''").and_in("metric", _SCORED))
    return Scoreboard(as_of=as_of(tx, now), filters=_applied(filters), agencies=_scores(tx, groups, happenings))


def agency_known(tx: Tx, agency_id: str) -> bool:
    """In the directory, or holding (or having held) a report, as an agency or a unit. Each lookup is an index search
    (see `projections.setup_complaints`)."""
    if tx.fetchone("SELECT 1 FROM rpt_agencies WHERE agency_id = ?", (agency_id,)) is not None:
        return True
    # (An Ombudsman holding a report taken over has no happening of its own until it answers: rpt_complaints.)
    inside = f"{agency_id}/"
    for sql, params in holder_lookups(agency_id, tx.dialect):
        row = tx.fetchone(sql, params)
        if row is not None and any(first == agency_id or first.startswith(inside) for first in row if first):
            return True
    return False


def holder_lookups(agency_id: str, dialect: str) -> list[tuple[str, list[str]]]:
    """The statements by which `agency_known` asks rpt_daily, then rpt_complaints, whether a row's agency or unit is
    `agency_id` or lies inside it (`pemda-53.71/dinkes` in `pemda-53.71`): for each column, the first id from
    `agency_id` on and the first from `agency_id/` on, in byte order. A `min()` from a bound is one step down the
    column's index on either database, whatever the planner's statistics say (a LIMIT 1 under an OR of ranges can
    be planned as a scan that expects to meet a row soon, and for an unknown id reads the whole table); and a
    bound is not a LIKE pattern, where `_` in an id is a wildcard (and SQLite ignores case)."""
    statements = []
    for table in ("rpt_daily", "rpt_complaints"):
        columns = [in_byte_order(column, dialect) for holder, column in HOLDER_COLUMNS if holder == table]
        firsts = ", ".join(f"(SELECT min({column}) FROM {table} WHERE {column} >= ?)" for column in columns
                           for _ in range(2))
        statements.append((f"SELECT {firsts}", [agency_id, f"{agency_id}/"] * len(columns)))
    return statements


def agency(
    tx: Tx, agency_id: str, filters: Filters, now: datetime, policy: Sp4nPolicy, reader: Principal | None
) -> AgencyReport:
    """`reader`: who asks, for the categories (`categories_as_read`)."""
    where = _reports_where(filters, agency_id)
    groups = _scan(tx, where, now, units=True)
    happenings = _happenings_where(filters, agency_id)
    by_holder = _happenings_by_holder(tx, happenings)
    name = agency_names(tx, [agency_id]).get(agency_id)
    return AgencyReport(
        as_of=as_of(tx, now),
        filters=_applied(filters),
        agency_id=agency_id,
        name=name,
        score=_combined(agency_id, name, _scores(tx, groups, by_holder)),
        totals=_totals(groups),
        breakdown=_breakdown(groups, categories_as_read(_counted(groups, "category", counted_category), reader)),
        daily=_daily(tx, happenings),
        sla=_sla(groups, policy, ("follow_up",)),
        time_to_first_follow_up=_durations(tx, where, holder=True),
        backlog=_backlog(groups),
        escalations=_escalations(_by_metric(by_holder)),
        units=_units(tx, groups, by_holder),
    )


def _combined(agency_id: str, name: str | None, scores: Iterable[AgencyScore]) -> AgencyScore:
    """The agency's line with its offices' (OPD disposed to directly) added in."""
    scores = list(scores)
    total = {
        key: sum(getattr(score, key) for score in scores)
        for key in ("reports", "open", "followed_up", "overdue", "red_marks", "bounces", "dispositions")
    }
    return AgencyScore(
        agency_id=agency_id, name=name, follow_up_rate=_rate(total["followed_up"], total["reports"]), **total
    )


def _unit_of(agency_id: str | None, unit_id: str | None) -> str | None:
    """The unit working on a report: its assigned unit, or an office disposed to directly (its own unit)."""
    return unit_id or (agency_id if agency_id and "/" in agency_id else None)


def _units(tx: Tx, groups: Sequence[_Group], happenings: ByHolder) -> list[UnitSummary]:
    """The agency's units holding its reports, or assigned or red-marked in the period."""
    held: dict[str, _Held] = defaultdict(_Held)
    for group in groups:
        unit = _unit_of(group.agency_id, group.unit_id)
        if unit is not None:
            held[unit].add(group)
    counted: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (agency_id, unit_id, metric), count in happenings.items():
        unit = _unit_of(agency_id, unit_id)
        if unit is not None and metric in ("assigned", "red_mark"):
            counted[unit][metric] += count
    units = sorted(held.keys() | counted.keys())
    names = agency_names(tx, units)
    return [
        UnitSummary(unit_id=unit, name=names.get(unit), reports=held[unit].reports, open=held[unit].open,
                    followed_up=held[unit].followed_up, overdue=held[unit].overdue,
                    assigned=counted[unit]["assigned"], red_marks=counted[unit]["red_mark"])
        for unit in units
    ]


def public(tx: Tx, filters: Filters, now: datetime, policy: Sp4nPolicy) -> PublicStatistics:
    """The public figures, built from the cells of a fixed grid (docs/reporting.md, "Public statistics"): a month
    of submission by a city. The selection is widened to whole cells, and a cell of fewer than PUBLIC_MIN_REPORTS
    reports is left out of every figure, so that two selections never differ by a few reports whose figures the
    difference would describe; a category is named only where a cell holds enough reports of it."""
    filters = public_grid(filters)
    selected = _reports_where(filters)
    # One scan gives each cell's size and its categories.
    by_cell_category = tx.fetchall(
        f"SELECT {_CELL}, category, count(*) FROM rpt_complaints{selected.sql} GROUP BY 1, 2", selected.params
    )
    cells: dict[str, int] = defaultdict(int)
    for cell, _, count in by_cell_category:
        cells[cell] += count
    shown = {cell for cell, count in cells.items() if count >= PUBLIC_MIN_REPORTS}
    grid = PublicCells(shown=len(shown), withheld=len(cells) - len(shown))
    if not shown:
        return PublicStatistics(
            as_of=as_of(tx, now),
            filters=_applied(filters),
            totals=None,
            withheld=True,
            cells=grid,
            breakdown=Breakdown(by_status={}, by_kind={}, by_channel={}, by_category={}, by_province=[]),
            monthly=[],
            follow_up_rate=None,
            time_to_first_follow_up=None,
            sla=[],
        )
    named: dict[str, int] = defaultdict(int)
    for cell, category, count in by_cell_category:
        if cell in shown:
            named[counted_category(category) if count >= PUBLIC_MIN_REPORTS else OTHER_CATEGORY] += count
    by_category = categories_as_read(named, None)  # each name masked once, however many cells name it
    where = _in_cells(selected, shown, cells.keys() - shown)
    groups = _scan(tx, where, now)
    durations, answered = _public_durations(tx, where)
    monthly = _public_monthly(tx, where, {cell: count for cell, count in cells.items() if cell in shown})
    return PublicStatistics(
        as_of=as_of(tx, now),
        filters=_applied(filters),
        totals=_totals(groups),
        withheld=False,
        cells=grid,
        breakdown=_breakdown(groups, by_category),
        monthly=monthly,
        follow_up_rate=_rate(answered, sum(month.disposed for month in monthly)),
        time_to_first_follow_up=durations,
        sla=_sla(groups, policy, ("verification", "follow_up")),
    )


def categories_as_read(counts: Mapping[str, int], reader: Principal | None) -> dict[str, int]:
    """Reports by category as `reader` may read the names (None: the public), in order: each name shown as the
    privacy policy shows free text to the reader (`redact_text`): as written to the national admin, masked to
    everyone else. The verifier's category is logged as typed (only the reporter's is masked at source), and the
    public list, then the national and agency views printed it so, a name or phone number in it included (session
    30). Names that mask alike are counted together."""
    if SIGHT[audience_of(reader)].unmasked:
        return dict(sorted(counts.items()))
    shown: dict[str, int] = defaultdict(int)
    for category, count in counts.items():
        shown[category if category in (NO_CATEGORY, OTHER_CATEGORY) else _masked_category(category)] += count
    return dict(sorted(shown.items()))


# Category names masked (`_masked_category`) kept for the process, the least recently used dropped first: the
# detector takes ~0.4 ms a name and a national selection may have thousands of names, each read again by every
# view of every reader but the national admin. A name is at most 80 characters (`lapor.limits.Category`), so
# this many names and their masks are ~20 MB at most.
MASKED_CATEGORIES = 65_536
_masked_lock = threading.Lock()


@cached(LRUCache(MASKED_CATEGORIES), lock=_masked_lock, condition=threading.Condition(_masked_lock))
def _masked_category(category: str) -> str:
    """A category name masked as everyone but the national admin reads free text (the public's sight, which is
    theirs: `redact_text` masks alike for each of them). Deterministic per name, so kept by the name: what anyone
    sees is what `redact_text` gives; a name being masked is waited for, not masked again (`condition`)."""
    return redact_text(category, None)


# A report's cell of the public grid: the month it was submitted in (Jakarta) and its city (`35.73` of
# `35.73.01`; a province-level code is a cell of its own).
_CELL = "coalesce(substr(submitted_day, 1, 7), '') || '|' || coalesce(substr(region_code, 1, 5), '')"
_CITY_CODE_LENGTH = 5
# Up to this many cells are named in the query; more (a national selection over years, most cells withheld) are
# chosen by a subquery instead, which costs another scan but has no limit on the database's parameters.
LISTED_CELLS_MAX = 1000
_JAKARTA_OFFSET = 7 * 3600  # seconds; Asia/Jakarta has kept UTC+7 since 1964


def _in_cells(where: _Where, shown: Collection[str], withheld: Collection[str]) -> _Where:
    """`where` narrowed to the reports of its `shown` cells (those of PUBLIC_MIN_REPORTS reports or more)."""
    if not withheld:
        return where
    listed, verb = (withheld, "NOT IN") if len(withheld) <= len(shown) else (shown, "IN")
    if len(listed) <= LISTED_CELLS_MAX:
        return where.and_(f"{_CELL} {verb} {_placeholders(sorted(listed))}", *sorted(listed))
    return where.and_(
        f"{_CELL} IN (SELECT {_CELL} FROM rpt_complaints{where.sql} GROUP BY 1 HAVING count(*) >= ?)",
        *where.params, PUBLIC_MIN_REPORTS,
    )


def _public_durations(tx: Tx, where: _Where) -> tuple[Durations, int]:
    """The time to a first follow-up over the cells with PUBLIC_MIN_REPORTS answered reports or more, and how many
    reports of `where` were answered in all (for the follow-up rate), from one read of the answered reports. A cell
    with fewer answers is left out of the durations: added to a selection, it would move the median by one report's
    own wait (found in review), and the 90th percentile is shown from twice as many answers."""
    answered = where.and_("first_follow_up_at IS NOT NULL").and_("first_disposed_at IS NOT NULL")
    by_cell: dict[str, list[float]] = defaultdict(list)
    for cell, followed_up, disposed in tx.fetchall(
        f"SELECT {_CELL}, first_follow_up_at, first_disposed_at FROM rpt_complaints{answered.sql}", answered.params
    ):
        by_cell[cell].append((float(followed_up) - float(disposed)) / 3600)
    durations = _durations_of(
        hours for waits in by_cell.values() if len(waits) >= PUBLIC_MIN_REPORTS for hours in waits
    )
    if durations.reports < 2 * PUBLIC_MIN_REPORTS:
        durations = durations.model_copy(update={"p90_hours": None})
    return durations, sum(len(waits) for waits in by_cell.values())


def _jakarta_month(column: str, dialect: str) -> str:
    """SQL for the Jakarta month (YYYY-MM) of an epoch-seconds column."""
    # Whole seconds first, as a Jakarta day is taken elsewhere: SQLite's `unixepoch` rounds to the millisecond, so
    # the last half millisecond of a month would otherwise fall in the next (found in review).
    if dialect == "sqlite":
        return f"strftime('%Y-%m', CAST({column} AS INTEGER) + {_JAKARTA_OFFSET}, 'unixepoch')"
    return f"to_char(to_timestamp(floor({column}) + {_JAKARTA_OFFSET}) AT TIME ZONE 'UTC', 'YYYY-MM')"


def _public_monthly(tx: Tx, where: _Where, shown: Mapping[str, int]) -> list[PublicMonth]:
    """The shown cells' reports month by month: submitted (the cells' own sizes), first disposed, first followed
    up. Counted per report, so a report of a withheld cell never appears, whenever it was handled."""
    months: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for cell, count in shown.items():
        submitted = cell.split("|", 1)[0]
        if submitted:  # a report without a submission day (none is made so) has no month to count in
            months[submitted]["received"] += count
    disposed_where = where.and_("first_disposed_at IS NOT NULL")  # a first follow-up comes after a disposition
    for disposed, followed_up, count in tx.fetchall(
        f"SELECT {_jakarta_month('first_disposed_at', tx.dialect)}, {_jakarta_month('first_follow_up_at', tx.dialect)},"
        f" count(*) FROM rpt_complaints{disposed_where.sql} GROUP BY 1, 2",
        disposed_where.params,
    ):
        months[disposed]["disposed"] += int(count)
        if followed_up is not None:
            months[followed_up]["followed_up"] += int(count)
    return [PublicMonth(month=key, **{metric: counts[metric] for metric in ("received", "disposed", "followed_up")})
            for key, counts in sorted(months.items())]


def public_grid(filters: Filters) -> Filters:
    """`filters` widened to whole cells of the public grid: from the first of its month to the last of its
    month, and a region finer than a city to its city."""
    start = filters.start.replace(day=1) if filters.start is not None else None
    end = None
    if filters.end is not None:
        end = filters.end.replace(day=calendar.monthrange(filters.end.year, filters.end.month)[1])
    region = filters.region[:_CITY_CODE_LENGTH] if filters.region is not None else None
    return Filters(start=start, end=end, region=region)
