"""The working-day calendar (hari kerja): Monday–Friday minus libur nasional and cuti bersama, plus the dates an
operator adds. Every SP4N deadline is counted here.

Sources, per year:
- `lokal-id` for the years it carries (the SKB 3 Menteri decree, named as the holiday's source);
- the `holidays` package (country ID, categories public and government) for every other year. Its "government"
  category holds the cuti bersama it knows of; for years whose SKB is not out yet it has only the (estimated)
  libur nasional, so an operator adds the cuti bersama when the decree is published;
- the operator's own dates (a small JSON file, see `WorkingCalendar.from_file`).

How a deadline is computed from a moment (see docs/calendar-and-privacy.md):
the moment is read as a date D in Asia/Jakarta time; "n working days" ends at the END of the n-th working day
after D (23:59:59.999999 WIB), returned as an aware UTC datetime. A moment on a weekend or holiday is counted the
same way, so a report sent on Saturday and one sent on Friday both have the same 3-day deadline (Wednesday).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Literal

import holidays as holidays_package
import lokal
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from lapor.clock import JAKARTA

HOLIDAYS_PACKAGE_SOURCE = "holidays package"
OPERATOR_SOURCE = "operator"

HolidayKind = Literal["libur_nasional", "cuti_bersama", "operator"]

_END_OF_DAY = time.max  # 23:59:59.999999
_SATURDAY = 5


@dataclass(frozen=True, slots=True)
class Holiday:
    """A day off: its date, its name, and where the calendar learnt it (decree text, package, or operator)."""

    date: date
    name: str
    kind: HolidayKind
    source: str


class OperatorHoliday(BaseModel):
    """A date an operator declares a day off, e.g. a cuti bersama decreed after the package was released."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    date: date
    name: str = Field(min_length=1, max_length=200)


class _OperatorFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    holidays: list[OperatorHoliday] = Field(default_factory=list)


_OPERATOR_FILE = TypeAdapter(_OperatorFile)


def jakarta_date(moment: datetime) -> date:
    """The calendar date a moment falls on in Jakarta."""
    if moment.tzinfo is None:
        raise ValueError("working-day arithmetic needs an aware datetime")
    return moment.astimezone(JAKARTA).date()


def end_of_day(day: date) -> datetime:
    """23:59:59.999999 WIB of `day`, as an aware UTC datetime: the instant a deadline on that day expires."""
    return datetime.combine(day, _END_OF_DAY, tzinfo=JAKARTA).astimezone(UTC)


def _published_holidays(year: int) -> list[Holiday]:
    if year in lokal.HOLIDAY_YEARS:
        decreed = lokal.get_holidays(year)
        return [Holiday(date.fromisoformat(h.date), h.name, h.type, decreed.decree) for h in decreed.holidays]
    found = holidays_package.country_holidays("ID", years=year, categories=("public", "government"), language="id")
    return [
        Holiday(
            day, name, "cuti_bersama" if "cuti bersama" in name.lower() else "libur_nasional", HOLIDAYS_PACKAGE_SOURCE
        )
        for day, name in sorted(found.items())
    ]


class WorkingCalendar:
    """Working days of Indonesian government offices. Thread-safe; the per-year sets of days off are built once
    and cached, so deadline arithmetic stays cheap enough to run on every command."""

    def __init__(self, extra_holidays: Iterable[OperatorHoliday] = ()) -> None:
        self._lock = threading.Lock()
        self._operator: list[OperatorHoliday] = list(extra_holidays)
        self._published: dict[int, list[Holiday]] = {}
        self._days_off: dict[int, frozenset[date]] = {}

    @classmethod
    def from_file(cls, path: Path) -> WorkingCalendar:
        """A calendar with the operator dates of `path` (JSON: {"holidays": [{"date": ..., "name": ...}]}).
        A missing file means no operator dates yet."""
        if not path.exists():
            return cls()
        return cls(_OPERATOR_FILE.validate_json(path.read_bytes()).holidays)

    def save(self, path: Path) -> None:
        """Write the operator dates to `path`, atomically (a crash never leaves half a file)."""
        with self._lock:
            entries = sorted(self._operator, key=lambda h: (h.date, h.name))
        body = _OPERATOR_FILE.dump_json(_OperatorFile(holidays=entries), indent=2) + b"\n"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(body)
        os.replace(tmp, path)

    def add_holiday(self, day: date, name: str) -> None:
        """Declare `day` a day off (with its name or reason). Deadlines already carried in events do not move."""
        entry = OperatorHoliday(date=day, name=name)
        with self._lock:
            self._operator.append(entry)
            self._days_off.pop(day.year, None)

    def holidays_in(self, year: int) -> list[Holiday]:
        """Every day off of `year` with its source, by date. A date can appear twice (e.g. an operator date that
        is also a libur nasional)."""
        with self._lock:
            found = list(self._published_locked(year))
            found += [
                Holiday(h.date, h.name, "operator", OPERATOR_SOURCE) for h in self._operator if h.date.year == year
            ]
        return sorted(found, key=lambda h: h.date)

    def is_working_day(self, day: date) -> bool:
        """Monday–Friday and not a day off. A datetime counts as its date in Jakarta."""
        if isinstance(day, datetime):
            day = jakarta_date(day)
        return day.weekday() < _SATURDAY and day not in self._days_off_in(day.year)

    def add_working_days(self, start: datetime, n: int) -> datetime:
        """The deadline `n` working days after `start`: the end (WIB) of the n-th working day after start's date.
        `n == 0` is the end of the first working day on or after that date, so a deadline never falls on a
        day off."""
        if n < 0:
            raise ValueError("a deadline counts forward: n must be >= 0")
        day = jakarta_date(start)
        if n == 0:
            while not self.is_working_day(day):
                day += timedelta(days=1)
            return end_of_day(day)
        left = n
        while left:
            day += timedelta(days=1)
            if self.is_working_day(day):
                left -= 1
        return end_of_day(day)

    def working_days_between(self, a: datetime, b: datetime) -> int:
        """Working days whose date lies after a's date and up to b's date (Jakarta), negative when b is before a.

        `working_days_between(now, deadline)` is the time left (0: due today); `working_days_between(deadline,
        now)` is how many working days it is overdue. `working_days_between(t, add_working_days(t, n)) == n`."""
        first, last = jakarta_date(a), jakarta_date(b)
        sign = 1
        if last < first:
            first, last, sign = last, first, -1
        count = 0
        day = first
        while day < last:
            day += timedelta(days=1)
            if self.is_working_day(day):
                count += 1
        return sign * count

    def _days_off_in(self, year: int) -> frozenset[date]:
        cached = self._days_off.get(year)
        if cached is not None:
            return cached
        with self._lock:
            days = {h.date for h in self._published_locked(year)}
            days |= {h.date for h in self._operator if h.date.year == year}
            self._days_off[year] = frozen = frozenset(days)
        return frozen

    def _published_locked(self, year: int) -> list[Holiday]:
        published = self._published.get(year)
        if published is None:
            published = self._published[year] = _published_holidays(year)
        return published
