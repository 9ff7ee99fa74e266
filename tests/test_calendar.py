"""The working-day calendar: deadlines end at the close of a WIB working day, skip weekends, libur nasional, cuti
bersama and operator dates, and agree with lokal-id's own working-day arithmetic."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import lokal
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from lapor.calendar import OPERATOR_SOURCE, OperatorHoliday, WorkingCalendar, end_of_day
from lapor.clock import JAKARTA


def wib(year: int, month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=JAKARTA)


def closing_utc(year: int, month: int, day: int) -> datetime:
    """23:59:59.999999 WIB written out in UTC (WIB is UTC+7), independent of the code under test."""
    return datetime(year, month, day, 16, 59, 59, 999999, tzinfo=UTC)


@pytest.fixture(scope="module")
def calendar() -> WorkingCalendar:
    return WorkingCalendar()


def test_deadline_is_the_end_of_the_nth_working_day_in_wib_given_in_utc(calendar):
    due = calendar.add_working_days(wib(2026, 1, 5), 3)  # Monday

    assert due == closing_utc(2026, 1, 8)  # Thursday
    assert due.tzinfo is UTC


def test_submission_after_midnight_wib_counts_from_the_jakarta_date(calendar):
    # 18:00 UTC on Monday is already 01:00 on Tuesday in Jakarta.
    due = calendar.add_working_days(datetime(2026, 1, 5, 18, 0, tzinfo=UTC), 3)

    assert due == closing_utc(2026, 1, 9)


def test_weekend_submission_has_the_same_deadline_as_a_friday_one(calendar):
    from_friday = calendar.add_working_days(wib(2026, 1, 9, 16), 3)
    from_saturday = calendar.add_working_days(wib(2026, 1, 10), 3)

    assert from_friday == from_saturday == closing_utc(2026, 1, 14)  # Wednesday


def test_lebaran_libur_nasional_and_cuti_bersama_are_skipped(calendar):
    # 2026: Nyepi 18–19 March, Idulfitri 20–24 March (cuti bersama included), weekend 21–22.
    assert calendar.add_working_days(wib(2026, 3, 17), 3) == closing_utc(2026, 3, 27)


def test_deadline_across_new_year_joins_package_and_decree_years(calendar):
    # 31 Dec 2025 (Wednesday); 1 Jan 2026 is Tahun Baru.
    assert calendar.add_working_days(wib(2025, 12, 31), 3) == closing_utc(2026, 1, 6)
    # 23 Dec 2026: 24 cuti bersama, 25 Natal, then a weekend.
    assert calendar.add_working_days(wib(2026, 12, 23), 3) == closing_utc(2026, 12, 30)


def test_zero_working_days_ends_on_a_working_day(calendar):
    assert calendar.add_working_days(wib(2026, 1, 5), 0) == closing_utc(2026, 1, 5)
    assert calendar.add_working_days(wib(2026, 1, 10), 0) == closing_utc(2026, 1, 12)


def test_a_naive_moment_or_a_negative_count_is_refused(calendar):
    with pytest.raises(ValueError, match="aware"):
        calendar.add_working_days(datetime(2026, 1, 5, 10), 3)
    with pytest.raises(ValueError, match="n must be"):
        calendar.add_working_days(wib(2026, 1, 5), -1)


def test_decreed_years_name_the_skb_as_their_source(calendar):
    days_off = calendar.holidays_in(2026)

    idulfitri = [h for h in days_off if h.date == date(2026, 3, 23)]
    assert [(h.kind, h.source) for h in idulfitri] == [("cuti_bersama", lokal.get_holidays(2026).decree)]
    assert "SKB" in idulfitri[0].source
    assert [h.date for h in days_off] == sorted(h.date for h in days_off)


def test_other_years_come_from_the_holidays_package_with_its_cuti_bersama(calendar):
    days_off = {h.date: h for h in calendar.holidays_in(2025)}

    assert days_off[date(2025, 8, 17)].kind == "libur_nasional"
    assert days_off[date(2025, 4, 2)].kind == "cuti_bersama"  # Idulfitri 1446 H
    assert {h.source for h in days_off.values()} == {"holidays package"}
    assert not calendar.is_working_day(date(2025, 4, 2))
    assert calendar.is_working_day(date(2025, 4, 8))


def test_weekends_are_never_working_days(calendar):
    assert not calendar.is_working_day(date(2026, 1, 10))
    assert not calendar.is_working_day(date(2026, 1, 11))
    assert calendar.is_working_day(date(2026, 1, 12))


def test_operator_date_becomes_a_day_off_and_moves_new_deadlines():
    calendar = WorkingCalendar()
    before = calendar.add_working_days(wib(2026, 1, 5), 3)  # warms the cache for 2026

    calendar.add_holiday(date(2026, 1, 7), "Cuti bersama tambahan (Keppres)")

    assert not calendar.is_working_day(date(2026, 1, 7))
    assert before == closing_utc(2026, 1, 8)
    assert calendar.add_working_days(wib(2026, 1, 5), 3) == closing_utc(2026, 1, 9)
    added = [h for h in calendar.holidays_in(2026) if h.date == date(2026, 1, 7)]
    assert [(h.name, h.kind, h.source) for h in added] == [
        ("Cuti bersama tambahan (Keppres)", "operator", OPERATOR_SOURCE)
    ]


def test_operator_dates_survive_a_save_and_load(tmp_path):
    path = tmp_path / "config" / "holidays.json"
    calendar = WorkingCalendar(extra_holidays=[OperatorHoliday(date=date(2028, 1, 3), name="Banjir Jakarta")])
    calendar.add_holiday(date(2028, 1, 4), "Hari berkabung nasional")
    calendar.save(path)

    loaded = WorkingCalendar.from_file(path)

    assert not loaded.is_working_day(date(2028, 1, 3))
    assert not loaded.is_working_day(date(2028, 1, 4))
    assert [h.name for h in loaded.holidays_in(2028) if h.source == OPERATOR_SOURCE] == [
        "Banjir Jakarta",
        "Hari berkabung nasional",
    ]


def test_missing_operator_file_means_no_operator_dates(tmp_path):
    calendar = WorkingCalendar.from_file(tmp_path / "absent.json")

    assert all(h.source != OPERATOR_SOURCE for h in calendar.holidays_in(2026))


def test_a_broken_operator_file_is_refused_with_the_bad_field(tmp_path):
    path = tmp_path / "holidays.json"
    path.write_text('{"holidays": [{"date": "2026-02-30", "name": "Tanggal salah"}]}')

    with pytest.raises(ValidationError, match="date"):
        WorkingCalendar.from_file(path)


def test_time_left_and_overdue_in_working_days(calendar):
    deadline = closing_utc(2026, 1, 8)  # Thursday

    assert calendar.working_days_between(wib(2026, 1, 5), deadline) == 3
    assert calendar.working_days_between(wib(2026, 1, 8, 9), deadline) == 0  # due today
    assert calendar.working_days_between(deadline, wib(2026, 1, 12)) == 2  # Friday and Monday
    assert calendar.working_days_between(wib(2026, 1, 12), deadline) == -2


def test_end_of_day_is_the_last_instant_before_midnight_wib():
    closing = end_of_day(date(2026, 1, 5))

    assert closing.astimezone(JAKARTA) + timedelta(microseconds=1) == datetime(2026, 1, 6, tzinfo=JAKARTA)


# lokal-id counts working days with its own code over the years it carries: an independent oracle.
decree_moments = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 8, 31), timezones=st.just(JAKARTA)
)


@settings(max_examples=150, deadline=None)
@given(start=decree_moments, n=st.integers(min_value=1, max_value=60))
def test_deadlines_agree_with_lokal_working_day_arithmetic(calendar, start, n):
    due = calendar.add_working_days(start, n)

    expected_day = lokal.add_working_days(start.date(), n)
    assert due == end_of_day(expected_day)
    assert calendar.working_days_between(start, due) == n


@settings(max_examples=150, deadline=None)
@given(a=decree_moments, b=decree_moments)
def test_working_days_between_agrees_with_lokal_count(calendar, a, b):
    first, last = sorted((a.date(), b.date()))
    expected = lokal.count_working_days(first + timedelta(days=1), last) if first < last else 0

    assert calendar.working_days_between(a, b) == (expected if a.date() <= b.date() else -expected)
