"""The backlog's ages are Jakarta calendar days, like every other day of the reports (on SQLite and PostgreSQL:
a module of its own, since the backend's schema is the module's)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from tests.reporting import scenario
from tests.reporting.conftest import reporting_app


def test_backlog_counts_calendar_days_in_jakarta(tmp_path: Path, backend_store: str | None):
    """A report of 23:30 WIB four days ago is four calendar days old at 00:30 WIB today, though only three days
    and an hour have passed: each bucket's first and last day, submitted late in the evening (and today's just
    after midnight), lands in its bucket."""
    today = date(2090, 4, 10)
    now = datetime(2090, 4, 9, 17, 30, tzinfo=UTC)  # 00:30 WIB on `today`
    ages = [0, 3, 4, 7, 8, 14, 15, 30, 31, 60, 61]
    with reporting_app(tmp_path / "var", backend_store) as service:
        for age in sorted(ages, reverse=True):
            wib = datetime.combine(today - timedelta(days=age), time(23, 30) if age else time(0, 10))
            service.clock.set((wib - timedelta(hours=7)).replace(tzinfo=UTC))
            report = scenario.submitted(f"LAP-AGE-{age:02d}", 0, "53.71")
            [(_, model, metadata)] = report.steps
            service.ctx.store.append(f"complaint-LAP-AGE-{age:02d}", [model.to_new_event(metadata=metadata)], -1)
        service.clock.set(now)
        service.caught_up()
        backlog = service.get("/api/reports/national")["backlog"]
    expected = {
        bucket["bucket"]: sum(
            bucket["min_days"] <= age and (bucket["max_days"] is None or age <= bucket["max_days"]) for age in ages
        )
        for bucket in backlog
    }
    assert {bucket["bucket"]: bucket["reports"] for bucket in backlog} == expected
    assert sum(expected.values()) == len(ages)
