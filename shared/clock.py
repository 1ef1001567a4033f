"""Time: the zone people read it in, and the clock the services read it from.

A service reads the time only through the `Clock` its context holds (`utcnow` unless a
test or a simulation injects a `ManualClock`). Every clock returns aware UTC datetimes;
times are shown to people in `LONDON`.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The real wall clock, as an aware UTC datetime."""
    return datetime.now(UTC)


class ManualClock:
    """A clock that stands still until `advance` or `set`, and never goes backwards."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start.astimezone(UTC)

    def __call__(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("a clock does not go backwards")
        self._now += delta
        return self._now

    def set(self, at: datetime) -> datetime:
        return self.advance(at.astimezone(UTC) - self._now)
