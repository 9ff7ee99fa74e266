"""The SP4N policy: each deadline counted in working days from its moment, overrides from settings, and the
warning and bounce thresholds."""

from __future__ import annotations

from datetime import UTC, date, datetime

import lokal
import pytest
from pydantic import ValidationError

from lapor.calendar import WorkingCalendar
from lapor.clock import JAKARTA
from lapor.policy import Sp4nPolicy

MONDAY = datetime(2026, 2, 2, 10, 0, tzinfo=JAKARTA)


def closing_utc(day: date) -> datetime:
    """23:59:59.999999 WIB (UTC+7) of `day`, written out in UTC."""
    return datetime(day.year, day.month, day.day, 16, 59, 59, 999999, tzinfo=UTC)


@pytest.fixture(scope="module")
def policy() -> Sp4nPolicy:
    return Sp4nPolicy(calendar=WorkingCalendar())


def test_verification_is_due_three_working_days_after_submission(policy):
    assert policy.verification_due(MONDAY) == closing_utc(date(2026, 2, 5))


def test_follow_up_is_due_five_working_days_after_disposition(policy):
    assert policy.follow_up_due(MONDAY) == closing_utc(date(2026, 2, 9))


def test_feedback_window_of_ten_working_days_skips_imlek(policy):
    # 16 Feb 2026 cuti bersama and 17 Feb libur nasional Tahun Baru Imlek.
    assert policy.feedback_due(MONDAY) == closing_utc(date(2026, 2, 18))


def test_pending_archive_and_ombudsman_offer_are_counted_in_working_days(policy):
    assert policy.archive_due(MONDAY) == closing_utc(lokal.add_working_days(date(2026, 2, 2), 30))
    assert policy.ombudsman_offer_due(MONDAY) == closing_utc(lokal.add_working_days(date(2026, 2, 2), 60))


def test_settings_override_one_limit_and_keep_the_national_defaults():
    policy = Sp4nPolicy.from_overrides({"follow_up_days": 7}, calendar=WorkingCalendar())

    assert policy.follow_up_due(MONDAY) == closing_utc(date(2026, 2, 11))
    assert policy.verification_due(MONDAY) == closing_utc(date(2026, 2, 5))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"folow_up_days": 7}, "folow_up_days"),
        ({"verification_days": 0}, "verification_days"),
        ({"bounce_limit": -1}, "bounce_limit"),
        ({"feedback_days": "sepuluh"}, "feedback_days"),
    ],
)
def test_a_bad_override_is_refused_naming_the_setting(overrides, field):
    with pytest.raises(ValidationError, match=field):
        Sp4nPolicy.from_overrides(overrides, calendar=WorkingCalendar())


def test_operator_holiday_in_the_policy_calendar_moves_deadlines():
    calendar = WorkingCalendar()
    calendar.add_holiday(date(2026, 2, 3), "Pilkada serentak")
    policy = Sp4nPolicy(calendar=calendar)

    assert policy.verification_due(MONDAY) == closing_utc(date(2026, 2, 6))


def test_deadline_is_approaching_within_the_warning_threshold(policy):
    deadline = policy.verification_due(MONDAY)  # Thursday 5 Feb

    assert not policy.deadline_approaching(deadline, datetime(2026, 2, 3, 10, tzinfo=JAKARTA))  # 2 left
    assert policy.deadline_approaching(deadline, datetime(2026, 2, 4, 10, tzinfo=JAKARTA))  # 1 left
    assert policy.deadline_approaching(deadline, datetime(2026, 2, 5, 23, tzinfo=JAKARTA))  # due today
    assert not policy.deadline_approaching(deadline, datetime(2026, 2, 6, 0, 1, tzinfo=JAKARTA))  # overdue


def test_national_admin_is_flagged_at_the_bounce_limit(policy):
    assert not policy.bounce_limit_reached(2)
    assert policy.bounce_limit_reached(3)
    assert not Sp4nPolicy(bounce_limit=5).bounce_limit_reached(4)


def test_policy_shown_in_settings_lists_the_limits_only(policy):
    assert policy.model_dump() == {
        "verification_days": 3,
        "pending_archive_days": 30,
        "follow_up_days": 5,
        "feedback_days": 10,
        "ombudsman_offer_days": 60,
        "bounce_limit": 3,
        "warning_days": 1,
    }
    assert "calendar" not in Sp4nPolicy.model_json_schema()["properties"]
