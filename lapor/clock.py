"""The one clock. Nothing in LAPOR reads the time directly: it is handed a `Clock`, so tests and training
mode can move time."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

# Deadlines are counted in the working days of Jakarta; WIT/WITA offices differ by an hour or two, which
# never moves a date boundary far enough to matter for working-day arithmetic at day granularity.
JAKARTA = ZoneInfo("Asia/Jakarta")


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware UTC datetime."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told: tests, and training mode (`lapor up --training`), where it starts at
    the real time and an admin advances it."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime.now(UTC)
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[datetime], None]] = []

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def on_move(self, listener: Callable[[datetime], None]) -> None:
        """Call `listener` with the new time after every move: whatever waits for a deadline (training mode's
        scheduler) wakes up instead of sleeping through the jump."""
        with self._lock:
            self._listeners.append(listener)

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("time only moves forward")
        with self._lock:
            self._now += delta
            now, listeners = self._now, list(self._listeners)
        for listener in listeners:
            listener(now)
        return now

    def set(self, moment: datetime) -> None:
        with self._lock:
            if moment.astimezone(UTC) < self._now:
                raise ValueError("time only moves forward")
            self._now = moment.astimezone(UTC)
            now, listeners = self._now, list(self._listeners)
        for listener in listeners:
            listener(now)
