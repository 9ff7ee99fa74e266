"""An oracle for the reporting figures: what docs/reporting.md says each figure is, computed the plain way from the
complaint events themselves, with the shared fold (`lapor.complaint.evolve`) and the Jakarta calendar. It knows
nothing of the projections, their columns or SQL: every report's history is walked event by event, what each
figure needs is noted in a `Walked` record, and the views are counted from those records with ordinary Python.

Where the docs leave a figure open, the reading chosen (from the code's comments) is written beside it:
- the per-day `followed_up` counts reports, not posts: the holder's first answer (a public follow-up or the
  resolution) since the report reached it (a disposition, or an Ombudsman takeover);
- an escalation counts for the holder it escalated from: its unit only when it left from the unit's level, and
  the bounce-limit flag for national routing; a return is the agency's, never its unit's; a red mark from the unit's
  level is the unit's that held the report when the marked deadline passed (none: the agency's), whichever holds it
  when routing marks it (session 30);
- "followed up" on the scoreboard is the present holder's answer since the report reached it.

Answers are shaped like the API's JSON without names and `as_of` (`compare` strips those from the API's).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from lapor.calendar import jakarta_date
from lapor.complaint import ComplaintEvent, ComplaintState, Status, evolve, initial_state
from lapor.policy import Sp4nPolicy

TERMINAL = {Status.closed, Status.archived, Status.duplicate}
WAITING = {Status.disposed, Status.in_progress}  # the follow-up stage can be overdue only while the agency works
AGE_BUCKETS = (("0-3", 0, 3), ("4-7", 4, 7), ("8-14", 8, 14), ("15-30", 15, 30), ("31-60", 31, 60), ("61+", 61, None))
DAILY = ("received", "verified", "disposed", "assigned", "followed_up", "closed")
NONE = "(none)"
# A category recorded with a label's name, bare or quoted (refused since session 31), is counted in quotes.
LABEL_LIKE = re.compile(r'"*\((none|other)\)"*', re.IGNORECASE)
MIN_CELL = 5  # the public grid's smallest shown cell


@dataclass(frozen=True)
class Happening:
    day: date
    region: str | None
    agency: str  # '' for national routing
    unit: str  # '' unless a unit held the report (for escalations: escalated from the unit's level)
    metric: str


@dataclass
class Walked:
    """One report after its whole history: its final state and what the figures need that the state forgets."""

    state: ComplaintState
    submitted_day: date
    first_disposed_at: datetime | None = None
    verification: str | None = None  # on_time / late once the stage ended (or a pend was late)
    follow_up: str | None = None  # on_time / late once the present holding's stage was answered
    marked_by: str | None = None  # the agency red-marked in the present stage and not answered since
    missed: bool = False  # the present stage's deadline had passed unanswered when the Ombudsman took it over
    reached_at: datetime | None = None  # when the present holder got it
    answered_at: datetime | None = None  # the present holder's first answer since
    # (deadline, unit) of the last follow-up deadline that passed, noted at the first event after it
    missed_by: tuple[datetime, str | None] | None = None
    happenings: list[Happening] = field(default_factory=list)

    @property
    def tracking_id(self) -> str:
        return self.state.tracking_id


def _on_time(at: datetime, due: datetime | None) -> str:
    return "on_time" if due is None or at <= due else "late"


def walk(events: Sequence[ComplaintEvent]) -> Walked:
    """One report's events in version order."""
    state: ComplaintState = initial_state("")
    walked: Walked | None = None
    for event in events:
        before, state = state, evolve(state, event)
        at, data, kind = event.recorded_at, event.data, event.type
        if walked is None:
            walked = Walked(state, jakarta_date(at))
        walked.state = state
        region = state.region_code

        def happened(metric: str, holder: ComplaintState | None, *, unit: bool = True,
                     at: datetime = at, region: str | None = region, w: Walked = walked,
                     unit_id: str | None = None) -> None:
            agency = holder.agency_id or "" if holder is not None else ""
            held_by = (unit_id or holder.unit_id or "") if holder is not None and unit else ""
            w.happenings.append(Happening(jakarta_date(at), region, agency, held_by, metric))

        # Who held the report when its follow-up deadline passed: the unit before the first event after it.
        passed = before.follow_up_due
        if passed is not None and at > passed and (walked.missed_by is None or walked.missed_by[0] != passed):
            walked.missed_by = (passed, before.unit_id)

        def answered(w: Walked = walked, at: datetime = at, before: ComplaintState = before,
                     state: ComplaintState = state) -> None:
            if w.answered_at is None:
                w.answered_at = at
                happened("followed_up", state)
            if w.follow_up is None:
                missed = w.marked_by is not None or w.missed
                w.follow_up = "late" if missed else _on_time(at, before.follow_up_due)
            w.marked_by = None

        if kind == "ComplaintSubmitted":
            happened("received", None)
        elif kind in ("ComplaintVerified", "ComplaintArchived", "DuplicateMarked"):
            if walked.verification is None:
                walked.verification = _on_time(at, before.verification_due)
            if kind == "ComplaintVerified":
                happened("verified", None)
        elif kind == "ComplaintPended":
            if walked.verification is None and _on_time(at, before.verification_due) == "late":
                walked.verification = "late"
        elif kind == "ComplaintDisposed":
            walked.first_disposed_at = walked.first_disposed_at or at
            walked.follow_up = walked.marked_by = walked.answered_at = walked.missed_by = None
            walked.missed = False
            walked.reached_at = at
            happened("disposed", state)
        elif kind == "ComplaintAssigned":
            happened("assigned", state)
        elif kind == "DispositionReturned":
            happened("returned", before, unit=False)
        elif kind == "FollowUpPosted":
            if data.get("public", True):
                answered()
        elif kind == "ComplaintResolved":
            answered()
        elif kind == "ComplaintClosed":
            happened("closed", before)
        elif kind == "ComplaintEscalated":
            escalation = data["kind"]
            holder = None if escalation == "bounce_limit" else before
            from_unit = data["from_level"] == "unit"
            missed_unit = None
            if escalation == "follow_up_overdue":
                missed_unit = walked.missed_by[1] if walked.missed_by is not None else before.unit_id
                if not missed_unit:  # the agency held it at its own level: no unit's mark
                    from_unit = False
                walked.missed_by = None
            happened("escalated", holder, unit=from_unit, unit_id=missed_unit)
            happened(f"escalated:{escalation}", holder, unit=from_unit, unit_id=missed_unit)
            if escalation == "follow_up_overdue":
                happened("red_mark", before, unit=from_unit, unit_id=missed_unit)
                if data.get("follow_up_due") is not None:  # a deadline answered late, marked later, starts nothing
                    walked.marked_by = before.agency_id
            if state.agency_id != before.agency_id:  # the Ombudsman took it over: it has not answered yet
                walked.reached_at, walked.answered_at, walked.missed_by = at, None, None
                # "The stage the earlier holder missed stays overdue until the Ombudsman answers, late then":
                # missed when its deadline had passed, whether or not routing had red-marked it yet.
                due = before.follow_up_due
                if walked.follow_up is None and due is not None and at > due:
                    walked.missed = True
    assert walked is not None
    return walked


def walk_all(events: Iterable[Any]) -> list[Walked]:
    """Every report of a log's complaint events (any interleaving; each stream in version order)."""
    streams: dict[str, list[Any]] = defaultdict(list)
    for event in events:
        streams[event.stream].append(event)
    return [walk(sorted(stream, key=lambda e: e.version)) for _, stream in sorted(streams.items())]


# -- selections ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    start: date | None = None
    end: date | None = None
    region: str | None = None

    def in_region(self, code: str | None) -> bool:
        return self.region is None or (code is not None and (code == self.region or code.startswith(self.region + ".")))

    def in_period(self, day: date) -> bool:
        return (self.start is None or day >= self.start) and (self.end is None or day <= self.end)

    def reports(self, walked: Iterable[Walked]) -> list[Walked]:
        return [w for w in walked if self.in_period(w.submitted_day) and self.in_region(w.state.region_code)]

    def happenings(self, walked: Iterable[Walked]) -> list[Happening]:
        return [h for w in walked for h in w.happenings if self.in_period(h.day) and self.in_region(h.region)]

    def applied(self) -> dict[str, Any]:
        return {"from": self.start and self.start.isoformat(), "to": self.end and self.end.isoformat(),
                "region": self.region}


def within(agency_id: str | None, scope: str) -> bool:
    return agency_id is not None and (agency_id == scope or agency_id.startswith(scope + "/"))


# -- per report figures ---------------------------------------------------------------------------------------


def verification_now(w: Walked, now: datetime) -> str | None:
    if w.verification is not None:
        return w.verification
    due = w.state.verification_due
    return "overdue" if w.state.status is Status.submitted and due is not None and due < now else None


def follow_up_now(w: Walked, now: datetime) -> str | None:
    if w.follow_up is not None:
        return w.follow_up
    due = w.state.follow_up_due
    if w.state.status in WAITING and (w.marked_by is not None or w.missed or (due is not None and due < now)):
        return "overdue"
    return None


def holder_overdue(w: Walked, now: datetime) -> bool:
    """The scoreboard's overdue: waiting for the holder, past the deadline running now, or red-marked while this
    holder had it and not answered since."""
    due = w.state.follow_up_due
    return w.state.status in WAITING and ((due is not None and due < now) or w.marked_by == w.state.agency_id)


def is_open(w: Walked) -> bool:
    return w.state.status not in TERMINAL


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _median(values: Sequence[float]) -> float | None:
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        return None
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def _nearest_rank(values: Sequence[float], fraction: float) -> float | None:
    ordered = sorted(values)
    return ordered[math.ceil(fraction * len(ordered)) - 1] if ordered else None


def durations(hours: Sequence[float]) -> dict[str, Any]:
    median, p90 = _median(hours), _nearest_rank(hours, 0.9)
    return {"reports": len(hours), "median_hours": None if median is None else round(median, 2),
            "p90_hours": None if p90 is None else round(p90, 2)}


def _hours(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / 3600


# -- view parts ------------------------------------------------------------------------------------------------


def totals(reports: Sequence[Walked]) -> dict[str, int]:
    statuses = Counter(w.state.status for w in reports)
    return {"reports": len(reports), "open": sum(1 for w in reports if is_open(w)),
            "closed": statuses[Status.closed], "archived": statuses[Status.archived] + statuses[Status.duplicate]}


def _counted(values: Iterable[Any]) -> dict[str, int]:
    counts = Counter(NONE if value is None else str(getattr(value, "value", value)) for value in values)
    return dict(sorted(counts.items()))


def counted_category(category: str | None) -> str:
    if category is None:
        return NONE
    return f'"{category}"' if LABEL_LIKE.fullmatch(category) else category


def breakdown(reports: Sequence[Walked]) -> dict[str, Any]:
    provinces = _counted(w.state.region_code.split(".")[0] if w.state.region_code else None for w in reports)
    return {
        "by_status": _counted(w.state.status for w in reports),
        "by_kind": _counted(w.state.kind for w in reports),
        "by_channel": _counted(w.state.channel for w in reports),
        "by_category": _counted(counted_category(w.state.category) for w in reports),
        "by_province": [{"code": code, "reports": count} for code, count in provinces.items()],
    }


def daily(happenings: Iterable[Happening]) -> list[dict[str, Any]]:
    days: dict[date, Counter[str]] = defaultdict(Counter)
    for h in happenings:
        if h.metric in DAILY:
            days[h.day][h.metric] += 1
    return [{"day": day.isoformat(), **{metric: counts[metric] for metric in DAILY}}
            for day, counts in sorted(days.items())]


def sla(reports: Sequence[Walked], now: datetime, policy: Sp4nPolicy, stages: Sequence[str]) -> list[dict[str, Any]]:
    judged = {"verification": (verification_now, policy.verification_days),
              "follow_up": (follow_up_now, policy.follow_up_days)}
    lines = []
    for stage in stages:
        judge, days = judged[stage]
        outcomes = Counter(judge(w, now) for w in reports)
        on_time, late, overdue = outcomes["on_time"], outcomes["late"], outcomes["overdue"]
        lines.append({"stage": stage, "deadline_working_days": days, "on_time": on_time, "late": late,
                      "overdue": overdue, "compliance": _rate(on_time, on_time + late + overdue)})
    return lines


def backlog(reports: Sequence[Walked], now: datetime) -> list[dict[str, Any]]:
    today = jakarta_date(now)
    ages = [(today - w.submitted_day).days for w in reports if is_open(w)]
    return [{"bucket": label, "min_days": low, "max_days": high,
             "reports": sum(1 for age in ages if age >= low and (high is None or age <= high))}
            for label, low, high in AGE_BUCKETS]


def escalations(happenings: Sequence[Happening]) -> dict[str, Any]:
    metrics = Counter(h.metric for h in happenings)
    return {"total": metrics["escalated"],
            "by_kind": {m.split(":", 1)[1]: n for m, n in sorted(metrics.items()) if m.startswith("escalated:")},
            "bounces": metrics["returned"], "red_marks": metrics["red_mark"]}


def scores(reports: Sequence[Walked], happenings: Sequence[Happening], now: datetime) -> list[dict[str, Any]]:
    """Per agency holding reports of the selection, or holding one when it was red-marked, returned it or was
    disposed it in the period; worst first."""
    held: dict[str, list[Walked]] = defaultdict(list)
    for w in reports:
        if w.state.agency_id is not None:
            held[w.state.agency_id].append(w)
    counted: dict[str, Counter[str]] = defaultdict(Counter)
    for h in happenings:
        if h.agency and h.metric in ("red_mark", "returned", "disposed"):
            counted[h.agency][h.metric] += 1
    lines = []
    for agency in held.keys() | counted.keys():
        mine = held.get(agency, [])
        answered = sum(1 for w in mine if w.answered_at is not None)
        lines.append({
            "agency_id": agency, "reports": len(mine), "open": sum(1 for w in mine if is_open(w)),
            "followed_up": answered, "follow_up_rate": _rate(answered, len(mine)),
            "overdue": sum(1 for w in mine if holder_overdue(w, now)),
            "red_marks": counted[agency]["red_mark"], "bounces": counted[agency]["returned"],
            "dispositions": counted[agency]["disposed"],
        })
    lines.sort(key=lambda s: (-s["red_marks"], -s["overdue"],
                              2.0 if s["follow_up_rate"] is None else s["follow_up_rate"], s["agency_id"]))
    return lines


# -- the views -------------------------------------------------------------------------------------------------


def national(walked: Sequence[Walked], selection: Selection, now: datetime, policy: Sp4nPolicy) -> dict[str, Any]:
    reports = selection.reports(walked)
    happenings = selection.happenings(walked)
    by_agency = Counter(w.state.agency_id for w in reports if w.state.agency_id is not None)
    first_answers = [_hours(w.first_disposed_at, w.state.first_follow_up_at) for w in reports
                     if w.first_disposed_at is not None and w.state.first_follow_up_at is not None]
    return {
        "filters": selection.applied(),
        "totals": totals(reports),
        "breakdown": breakdown(reports),
        "by_agency": [{"agency_id": agency_id, "reports": count}
                      for agency_id, count in sorted(by_agency.items(), key=lambda item: (-item[1], item[0]))],
        "daily": daily(happenings),
        "sla": sla(reports, now, policy, ("verification", "follow_up")),
        "time_to_first_follow_up": durations(first_answers),
        "backlog": backlog(reports, now),
        "escalations": escalations(happenings),
    }


def scoreboard(walked: Sequence[Walked], selection: Selection, now: datetime) -> dict[str, Any]:
    return {"filters": selection.applied(),
            "agencies": scores(selection.reports(walked), selection.happenings(walked), now)}


def agency(walked: Sequence[Walked], agency_id: str, selection: Selection, now: datetime,
           policy: Sp4nPolicy) -> dict[str, Any]:
    """An agency's view (or a unit's): the reports it or its units hold, what happened while they held them."""
    reports = [w for w in selection.reports(walked) if within(w.state.agency_id, agency_id)
               or within(w.state.unit_id, agency_id)]
    happenings = [h for h in selection.happenings(walked) if within(h.agency, agency_id) or within(h.unit, agency_id)]
    lines = scores(reports, happenings, now)
    score = {key: sum(line[key] for line in lines)
             for key in ("reports", "open", "followed_up", "overdue", "red_marks", "bounces", "dispositions")}
    own_answers = [_hours(w.reached_at, w.answered_at) for w in reports
                   if w.reached_at is not None and w.answered_at is not None]
    return {
        "filters": selection.applied(),
        "agency_id": agency_id,
        "score": {"agency_id": agency_id, **score, "follow_up_rate": _rate(score["followed_up"], score["reports"])},
        "totals": totals(reports),
        "breakdown": breakdown(reports),
        "daily": daily(happenings),
        "sla": sla(reports, now, policy, ("follow_up",)),
        "time_to_first_follow_up": durations(own_answers),
        "backlog": backlog(reports, now),
        "escalations": escalations(happenings),
        "units": units(reports, happenings, now),
    }


def known(walked: Iterable[Walked], agency_id: str) -> bool:
    """Whether the agency (or unit) ever held a report: an agency view of one that never did and is not in the
    directory is a 404. (The oracle's histories use the directory's agencies only as holders.)"""
    return any(within(h.agency, agency_id) or within(h.unit, agency_id) for w in walked for h in w.happenings) or any(
        within(w.state.agency_id, agency_id) or within(w.state.unit_id, agency_id) for w in walked)


def _unit_of(agency_id: str | None, unit_id: str | None) -> str | None:
    """The unit working on a report: its assigned unit, or an office disposed to directly."""
    return unit_id or (agency_id if agency_id and "/" in agency_id else None)


def units(reports: Sequence[Walked], happenings: Sequence[Happening], now: datetime) -> list[dict[str, Any]]:
    held: dict[str, list[Walked]] = defaultdict(list)
    for w in reports:
        unit = _unit_of(w.state.agency_id, w.state.unit_id)
        if unit is not None:
            held[unit].append(w)
    counted: dict[str, Counter[str]] = defaultdict(Counter)
    for h in happenings:
        unit = _unit_of(h.agency, h.unit)
        if unit is not None and h.metric in ("assigned", "red_mark"):
            counted[unit][h.metric] += 1
    return [
        {"unit_id": unit, "reports": len(held.get(unit, [])), "open": sum(1 for w in held.get(unit, []) if is_open(w)),
         "followed_up": sum(1 for w in held.get(unit, []) if w.answered_at is not None),
         "overdue": sum(1 for w in held.get(unit, []) if holder_overdue(w, now)),
         "assigned": counted[unit]["assigned"], "red_marks": counted[unit]["red_mark"]}
        for unit in sorted(held.keys() | counted.keys())
    ]


def _month(moment: datetime) -> str:
    return jakarta_date(moment).strftime("%Y-%m")


def public(walked: Sequence[Walked], selection: Selection, now: datetime, policy: Sp4nPolicy) -> dict[str, Any]:
    """The public statistics on the grid of month (of submission) by city: widened to whole cells, cells of fewer
    than five reports left out, a category named only where five of a cell's reports share it."""
    start = selection.start.replace(day=1) if selection.start else None
    end = None
    if selection.end:
        after = (selection.end.replace(day=28) + timedelta(days=4)).replace(day=1)
        end = after - timedelta(days=1)
    widened = Selection(start, end, selection.region[:5] if selection.region else None)
    cells: dict[tuple[str, str], list[Walked]] = defaultdict(list)
    for w in widened.reports(walked):
        cells[(w.submitted_day.strftime("%Y-%m"), (w.state.region_code or "")[:5])].append(w)
    shown = {cell: reports for cell, reports in cells.items() if len(reports) >= MIN_CELL}
    grid = {"shown": len(shown), "withheld": len(cells) - len(shown)}
    if not shown:
        return {"filters": widened.applied(), "totals": None, "withheld": True, "cells": grid,
                "breakdown": {"by_status": {}, "by_kind": {}, "by_channel": {}, "by_category": {}, "by_province": []},
                "monthly": [], "follow_up_rate": None, "time_to_first_follow_up": None, "sla": []}
    reports = [w for reports in shown.values() for w in reports]
    categories: Counter[str] = Counter()
    for cell_reports in shown.values():
        for category, count in Counter(counted_category(w.state.category) for w in cell_reports).items():
            categories[category if count >= MIN_CELL else "(other)"] += count
    months: dict[str, Counter[str]] = defaultdict(Counter)
    for (month, _), cell_reports in shown.items():
        months[month]["received"] += len(cell_reports)
    waits: list[float] = []
    answered = 0
    for cell_reports in shown.values():
        cell_waits = []
        for w in cell_reports:
            if w.first_disposed_at is None:
                continue
            months[_month(w.first_disposed_at)]["disposed"] += 1
            if w.state.first_follow_up_at is not None:
                months[_month(w.state.first_follow_up_at)]["followed_up"] += 1
                cell_waits.append(_hours(w.first_disposed_at, w.state.first_follow_up_at))
        answered += len(cell_waits)
        if len(cell_waits) >= MIN_CELL:
            waits.extend(cell_waits)
    wait = durations(waits)
    if len(waits) < 2 * MIN_CELL:
        wait["p90_hours"] = None
    national_parts = breakdown(reports)
    national_parts["by_category"] = dict(sorted(categories.items()))
    return {
        "filters": widened.applied(),
        "totals": totals(reports),
        "withheld": False,
        "cells": grid,
        "breakdown": national_parts,
        "monthly": [{"month": month, **{m: counts[m] for m in ("received", "disposed", "followed_up")}}
                    for month, counts in sorted(months.items())],
        "follow_up_rate": _rate(answered, sum(counts["disposed"] for counts in months.values())),
        "time_to_first_follow_up": wait,
        "sla": sla(reports, now, policy, ("verification", "follow_up")),
    }


# -- comparing -------------------------------------------------------------------------------------------------


def without_names(value: Any) -> Any:
    """The API's answer without what the oracle does not compute: names and `as_of`."""
    if isinstance(value, Mapping):
        return {key: without_names(item) for key, item in value.items() if key not in ("name", "as_of")}
    if isinstance(value, list):
        return [without_names(item) for item in value]
    return value


def _flat(value: Any, path: str, into: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flat(item, f"{path}.{key}", into)
    elif isinstance(value, list) and value and all(isinstance(item, Mapping) for item in value):
        for item in value:  # a list of lines is keyed by its identity, so one missing line is one difference
            key = next((item[k] for k in ("agency_id", "unit_id", "day", "month", "bucket", "stage", "code")
                        if k in item), None)
            _flat(item, f"{path}[{key}]", into)
    else:
        into[path] = value


def differences(expected: Any, actual: Any) -> list[str]:
    """Figure by figure: `path: expected (oracle) != actual (API)`, and lines out of order."""
    flat_expected: dict[str, Any] = {}
    flat_actual: dict[str, Any] = {}
    _flat(expected, "", flat_expected)
    _flat(without_names(actual), "", flat_actual)
    found = [f"{path}: oracle {flat_expected.get(path, '<absent>')!r} != API {flat_actual.get(path, '<absent>')!r}"
             for path in sorted(flat_expected.keys() | flat_actual.keys())
             if flat_expected.get(path, "<absent>") != flat_actual.get(path, "<absent>")]
    if not found and expected != without_names(actual):
        found.append("the same figures in another order")
    return found
