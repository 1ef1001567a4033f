"""Retry and back-off policy for temporary failures (DESIGN §6).

Retries wait in the broker's delay queues (`notifier.retry.<s>s`), so a delay can only
be one of the configured queue delays: the back-off for attempt n is the n-th delay
(the last repeats), raised to the smallest delay that honours a `Retry-After`. A
delivery gives up — a final `permanent-failure` — once its next try would start after
`max_age` from the first try (urgent messages have a shorter budget, then fall back to
the other channel) or after `max_attempts` tries.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.bus import RETRY_DELAYS_S


@dataclass(frozen=True)
class RetryPolicy:
    delays_s: tuple[int, ...] = RETRY_DELAYS_S
    max_attempts: int = 10
    max_age: timedelta = timedelta(hours=4)
    urgent_max_age: timedelta = timedelta(minutes=15)

    def __post_init__(self) -> None:
        if not self.delays_s or any(d <= 0 for d in self.delays_s) or list(self.delays_s) != sorted(self.delays_s):
            raise ValueError("delays_s must be positive and ascending")

    def delay_for(self, attempts: int, retry_after_s: float | None = None) -> int:
        """Delay (one of `delays_s`) before try number `attempts + 1`."""
        base = self.delays_s[min(max(attempts, 1), len(self.delays_s)) - 1]
        if retry_after_s is None or retry_after_s <= base:
            return base
        return next((d for d in self.delays_s if d >= retry_after_s), self.delays_s[-1])

    def deferral_delay(self, place_s: float) -> int:
        """Delay queue for a deferred message whose place in the channel's line is `place_s`
        away: the longest delay that brings it back by half that time (early rather than late,
        so that the channel is not left idle), and at least the shortest."""
        return max((d for d in self.delays_s if d <= place_s / 2), default=self.delays_s[0])

    def next_delay(self, *, attempts: int, first_attempt_at: datetime, now: datetime,
                   urgent: bool = False, retry_after_s: float | None = None) -> int | None:
        """Seconds to wait before retrying, or None when the delivery must give up."""
        if attempts >= self.max_attempts:
            return None
        delay = self.delay_for(attempts, retry_after_s)
        budget = self.urgent_max_age if urgent else self.max_age
        if now + timedelta(seconds=delay) - first_attempt_at > budget:
            return None
        return delay


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(min(int(value), 86400))
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None or now is None:
        return None
    return max(0.0, min((when - now).total_seconds(), 86400.0))
