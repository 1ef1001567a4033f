"""Working time and statutory clocks (DESIGN §4 "Working time", "Acknowledge-by",
"Checks-due-by", "Escalation ladder").

Pure functions: no I/O, no clock reads; callers pass aware datetimes. Working days are
counted on local dates and wall-clock times in the configured zone (Europe/London by
default) and every computed instant is returned as an aware UTC datetime.
Non-existent wall-clock times (spring-forward gap) move forward by the gap; ambiguous
ones (autumn fold) take the first occurrence (fold=0).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from shared.clock import LONDON

_ZERO = timedelta(0)
_MAX_SCAN_DAYS = 366 * 5  # no sane calendar goes this long without a working day


def _require_aware(at: datetime, name: str) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {at.isoformat()}")


def _localise(d: date, t: time, tz: ZoneInfo) -> datetime:
    """Wall clock `d t` in `tz` as UTC; gap times move forward, folds take fold=0."""
    return datetime.combine(d, t.replace(tzinfo=None, fold=0), tzinfo=tz).astimezone(UTC)


def _same_wall_clock(at: datetime, days: int, tz: ZoneInfo) -> datetime:
    local = at.astimezone(tz)
    return _localise(local.date() + timedelta(days=days), local.time(), tz)


@dataclass(frozen=True)
class WorkingHours:
    """Daily working window, working weekdays (Mon=0), extra closures and the zone."""

    start: time = time(9)
    end: time = time(17)
    weekdays: frozenset[int] = frozenset({0, 1, 2, 3, 4})
    closures: frozenset[date] = field(default_factory=frozenset)
    tz: str = LONDON.key

    def __post_init__(self) -> None:
        object.__setattr__(self, "weekdays", frozenset(self.weekdays))
        object.__setattr__(self, "closures", frozenset(self.closures))
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("working hours start/end must be naive wall-clock times")
        if not self.start < self.end:
            raise ValueError(f"working hours start {self.start} must be before end {self.end}")
        if not self.weekdays or not self.weekdays <= set(range(7)):
            raise ValueError("working weekdays must be a non-empty subset of 0..6 (Mon=0)")
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.tz!r}") from exc

    @property
    def day_length(self) -> timedelta:
        """Nominal length of one working day (end - start)."""
        return datetime.combine(date.min, self.end) - datetime.combine(date.min, self.start)


class WorkingCalendar:
    """Working time under `WorkingHours`, excluding England and Wales bank holidays."""

    def __init__(self, hours: WorkingHours = WorkingHours()) -> None:
        self.hours = hours
        self.tz = ZoneInfo(hours.tz)
        # Empty to start with; `expand=True` loads each year the first time it is asked.
        self._bank_holidays = holidays.country_holidays("GB", subdiv="ENG", years=(), expand=True)

    def is_working_day(self, d: date) -> bool:
        """A working weekday that is neither a bank holiday nor a configured closure."""
        return (
            d.weekday() in self.hours.weekdays
            and d not in self.hours.closures
            and d not in self._bank_holidays
        )

    def _window(self, d: date) -> tuple[datetime, datetime] | None:
        if not self.is_working_day(d):
            return None
        return _localise(d, self.hours.start, self.tz), _localise(d, self.hours.end, self.tz)

    def _windows(self, at: datetime, step: int) -> Iterator[tuple[datetime, datetime]]:
        d = at.astimezone(self.tz).date()
        for _ in range(_MAX_SCAN_DAYS):
            window = self._window(d)
            if window is not None:
                yield window
            d += timedelta(days=step)
        raise ValueError(f"no working day within {_MAX_SCAN_DAYS} days of {at.isoformat()}")

    def is_working_time(self, at: datetime) -> bool:
        """True if `at` falls in a working window (start inclusive, end exclusive)."""
        _require_aware(at, "at")
        window = self._window(at.astimezone(self.tz).date())
        return window is not None and window[0] <= at < window[1]

    def add_working_time(self, start: datetime, amount: timedelta) -> datetime:
        """The instant (UTC) when `amount` of working time has elapsed after `start`.

        Ending exactly at a day's close gives that close, not the next morning.
        """
        _require_aware(start, "start")
        if amount < _ZERO:
            raise ValueError("amount of working time must not be negative")
        now = start.astimezone(UTC)
        if amount == _ZERO:
            return now
        remaining = amount
        for begin, end in self._windows(now, +1):
            if end <= now:
                continue
            begin = max(begin, now)
            if remaining <= end - begin:
                return begin + remaining
            remaining -= end - begin
        raise AssertionError("unreachable")  # pragma: no cover

    def subtract_working_time(self, end: datetime, amount: timedelta) -> datetime:
        """Latest instant t <= `end` (UTC) with `amount` of working time between t and end."""
        _require_aware(end, "end")
        if amount < _ZERO:
            raise ValueError("amount of working time must not be negative")
        now = end.astimezone(UTC)
        if amount == _ZERO:
            return now
        remaining = amount
        for begin, stop in self._windows(now, -1):
            if begin >= now:
                continue
            stop = min(stop, now)
            if remaining <= stop - begin:
                return stop - remaining
            remaining -= stop - begin
        raise AssertionError("unreachable")  # pragma: no cover

    def working_time_between(self, a: datetime, b: datetime) -> timedelta:
        """Working time elapsed from `a` to `b` (zero if b <= a)."""
        _require_aware(a, "a")
        _require_aware(b, "b")
        if b <= a:
            return _ZERO
        total = _ZERO
        d, last = a.astimezone(self.tz).date(), b.astimezone(self.tz).date()
        while d <= last:
            window = self._window(d)
            if window is not None:
                total += max(_ZERO, min(window[1], b) - max(window[0], a))
            d += timedelta(days=1)
        return total


@dataclass(frozen=True)
class Deadlines:
    """The statutory clocks for one referral (instants stored in UTC). Decide-by is
    acknowledge-by: one working day to acknowledge *and* decide (DESIGN §4)."""

    received_at: datetime
    out_of_hours: bool
    acknowledge_by: datetime
    checks_due_by: datetime

    @property
    def decide_by(self) -> datetime:
        return self.acknowledge_by

    def as_json(self) -> dict[str, str | bool]:
        """JSON-ready dict; times as ISO 8601 with offset in Europe/London."""
        return {
            "received_at": self.received_at.astimezone(LONDON).isoformat(),
            "out_of_hours": self.out_of_hours,
            "acknowledge_by": self.acknowledge_by.astimezone(LONDON).isoformat(),
            "decide_by": self.decide_by.astimezone(LONDON).isoformat(),
            "checks_due_by": self.checks_due_by.astimezone(LONDON).isoformat(),
        }


def compute_deadlines(received_at: datetime, calendar: WorkingCalendar) -> Deadlines:
    """Acknowledge-by = one working day after receipt; checks-due-by = +28 days wall clock."""
    _require_aware(received_at, "received_at")
    return Deadlines(
        received_at=received_at.astimezone(UTC),
        out_of_hours=not calendar.is_working_time(received_at),
        acknowledge_by=calendar.add_working_time(received_at, calendar.hours.day_length),
        checks_due_by=_same_wall_clock(received_at, 28, calendar.tz),
    )


def parse_instant(text: str) -> datetime:
    """Parse an ISO 8601 date-time (naive = Europe/London wall clock) to aware UTC."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("expected an ISO 8601 date-time such as 2026-11-02T14:00:00+00:00")
    text = text.strip()
    try:
        date.fromisoformat(text)
    except ValueError:
        pass
    else:
        raise ValueError(f"{text!r} is a date, not an instant: add a time, e.g. {text}T09:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO 8601 date-time (e.g. 2026-11-02T14:00:00+00:00)"
        ) from None
    if parsed.tzinfo is None:
        return _localise(parsed.date(), parsed.time(), LONDON)
    return parsed.astimezone(UTC)


def _unique_sorted(instants: Iterable[datetime], floor: datetime) -> list[datetime]:
    return sorted({t for t in instants if t >= floor})


def ack_reminder_times(
    received_at: datetime,
    calendar: WorkingCalendar,
    fractions: Iterable[float] = (0.5,),
    before: timedelta = timedelta(hours=1),
) -> list[datetime]:
    """Reminders at each fraction of the working time and `before` ahead of acknowledge-by."""
    _require_aware(received_at, "received_at")
    day = calendar.hours.day_length
    ack_by = calendar.add_working_time(received_at, day)
    times = []
    for f in fractions:
        if not 0 <= f <= 1:
            raise ValueError(f"reminder fraction {f} must be between 0 and 1")
        times.append(calendar.add_working_time(received_at, day * f))
    times.append(calendar.subtract_working_time(ack_by, before))
    return _unique_sorted(times, received_at)


def ack_breach_steps(
    acknowledge_by: datetime, calendar: WorkingCalendar, after: timedelta = timedelta(hours=1)
) -> list[datetime]:
    """Breach (team manager) at acknowledge-by, then head of service `after` working time."""
    _require_aware(acknowledge_by, "acknowledge_by")
    return [acknowledge_by.astimezone(UTC), calendar.add_working_time(acknowledge_by, after)]


def checks_reminder_times(
    received_at: datetime, days: Iterable[int] = (21, 27), *, tz: str = LONDON.key
) -> list[datetime]:
    """Checks reminders: the receipt's wall-clock time on each of `days` after receipt."""
    _require_aware(received_at, "received_at")
    zone = ZoneInfo(tz)
    return _unique_sorted((_same_wall_clock(received_at, n, zone) for n in days), received_at)
