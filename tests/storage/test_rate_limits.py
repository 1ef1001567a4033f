"""The shared per-client rate limit's counts (adapters/ratelimits.py), on SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio

from services.intake.adapters import ratelimits
from services.intake.domain.ratelimit import WINDOW_S, position

M = 29_000_000 * WINDOW_S  # the start of some minute


async def _takes(engine, n: int, now: float, limit: int = 3, client: str = "c") -> list[bool]:
    return [(await ratelimits.take(engine, client, limit, position(now))).admitted for _ in range(n)]


async def test_a_minute_admits_the_limit_then_refuses_without_counting(engine) -> None:
    assert await _takes(engine, 5, M + 10) == [True, True, True, False, False]
    counts = await ratelimits.take(engine, "c", 3, position(M + 20))
    assert counts == ratelimits.Counts(False, 3, 0)  # refusals add nothing
    assert await _takes(engine, 1, M + 10, client="other") == [True]  # per client


async def test_the_previous_minute_counts_by_what_remains_of_it(engine) -> None:
    await _takes(engine, 3, M + 50)
    # Half-way through the next minute: 3 × 0.5 = 1.5, so one more (2.5 < 3) and no second.
    assert await _takes(engine, 3, M + WINDOW_S + 30) == [True, True, False]
    assert await ratelimits.take(engine, "c", 3, position(M + 2 * WINDOW_S + 59)) == ratelimits.Counts(True, 1, 2)
    assert await _takes(engine, 4, M + 10 * WINDOW_S) == [True, True, True, False]  # idle minutes forgotten


async def test_a_replica_a_little_behind_counts_into_the_same_minute(engine) -> None:
    await _takes(engine, 3, M + WINDOW_S + 1)
    assert await _takes(engine, 1, M + 59) == [False]  # its clock says the minute before
    assert await _takes(engine, 1, M - 5 * WINDOW_S) == [True]  # a clock set far back starts afresh


async def test_purge_drops_idle_clients_only(engine) -> None:
    await _takes(engine, 1, M, client="idle")
    await _takes(engine, 1, M + 3 * WINDOW_S, client="busy")
    assert await ratelimits.purge(engine, position(M + 3 * WINDOW_S)) == 1
    assert await _takes(engine, 3, M + 3 * WINDOW_S, client="busy") == [True, True, False]


async def test_concurrent_takes_never_admit_more_than_the_limit(pg_engine) -> None:
    results = await asyncio.gather(*(ratelimits.take(pg_engine, "c", 7, position(M + 30)) for _ in range(40)))
    assert sum(r.admitted for r in results) == 7
