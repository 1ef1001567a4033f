"""Clocks: the service reads time only through one of these, so tests can move time.

`SystemClock` is the real wall clock; `ManualClock` is a real clock that only moves
when told to (tests and simulations). Both return aware UTC datetimes.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """Stands still until `advance` or `set`; never goes backwards."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("a clock does not go backwards")
        self._now += delta
        return self._now

    def set(self, at: datetime) -> datetime:
        return self.advance(at.astimezone(UTC) - self._now)
