"""The per-client rate limit's arithmetic (DESIGN §5): a sliding window of one minute,
estimated from two fixed ones (the requests admitted this minute, and last minute's weighted
by how much of it still lies within the last 60 seconds).

A request is admitted while `current + previous × (1 − elapsed)` is below the limit, where
`elapsed` is the fraction of this minute gone. Unlike a fixed window, a client cannot spend
its limit at 12:00:59 and again at 12:01:00. The counts live in one database row per client
(adapters/ratelimits.py), so every replica draws on the same allowance.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

WINDOW_S = 60


@dataclass(frozen=True)
class Position:
    """Where `now` falls: the minute's index since the epoch and the fraction of it gone."""
    minute: int
    elapsed: float

    @property
    def weight(self) -> float:
        """How much of the previous minute still counts."""
        return 1.0 - self.elapsed


def position(now: float) -> Position:
    minute = math.floor(now / WINDOW_S)
    return Position(minute, (now - minute * WINDOW_S) / WINDOW_S)


def admits(limit: int, current: int, previous: int, at: Position) -> bool:
    return current + previous * at.weight < limit


def retry_after(limit: int, current: int, previous: int, at: Position) -> int:
    """Whole seconds (at least 1) until a refused client would be admitted again, if it sends
    nothing meanwhile: while `current` is under the limit the previous minute's weight has to
    fall far enough; otherwise this minute has to end and then become light enough itself."""
    if current < limit and previous > 0:
        wait = (1.0 - (limit - current) / previous - at.elapsed) * WINDOW_S
    else:
        wait = (at.weight + max(0.0, 1.0 - limit / max(current, 1))) * WINDOW_S
    return max(1, math.floor(wait) + 1)
