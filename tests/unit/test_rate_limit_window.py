"""The per-client limit's sliding-window arithmetic (services/intake/domain/ratelimit.py)."""
from __future__ import annotations

import pytest

from services.intake.domain.ratelimit import WINDOW_S, admits, position, retry_after


def test_position_is_the_minute_and_the_fraction_gone() -> None:
    at = position(10 * WINDOW_S + 15)
    assert (at.minute, at.elapsed, at.weight) == (10, 0.25, 0.75)


def test_last_minutes_requests_count_less_as_this_minute_goes_on() -> None:
    assert admits(10, 2, 10, position(15)) and not admits(10, 3, 10, position(15))  # 10 × 0.75 = 7.5
    assert admits(10, 9, 10, position(59.9)) and not admits(10, 10, 0, position(59.9))  # the minute's own count


def _simulate(limit: int, current: int, previous: int, start: float) -> float:
    """The first whole second from `start` at which a refused client is admitted (nothing sent
    meanwhile; a new minute moves this minute's count into the previous one)."""
    t = start
    while True:
        t += 1
        if int(t // WINDOW_S) == int(start // WINDOW_S):
            ok = admits(limit, current, previous, position(t))
        elif int(t // WINDOW_S) == int(start // WINDOW_S) + 1:
            ok = admits(limit, 0, current, position(t))
        else:
            ok = True
        if ok:
            return t - start


@pytest.mark.parametrize(("limit", "current", "previous", "now"), [
    (10, 10, 0, 5.0), (10, 10, 0, 59.5), (10, 3, 10, 10.0), (2, 2, 2, 30.0), (120, 119, 200, 1.0), (1, 1, 0, 0.0),
])
def test_retry_after_is_when_the_client_is_admitted_again(limit, current, previous, now) -> None:
    at = position(now)
    assert not admits(limit, current, previous, at)
    wait = retry_after(limit, current, previous, at)
    assert wait >= 1
    assert abs(wait - _simulate(limit, current, previous, now)) <= 1
