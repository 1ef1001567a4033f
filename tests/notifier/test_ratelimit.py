"""The per-key pacer: slots in order of arrival, `interval` apart; its backlog is what a
new send would wait; a pause moves waiting sends past it without bunching them."""
from __future__ import annotations

import asyncio

from services.notifier.adapters.channels.ratelimit import RateLimiter


async def _started(limiter: RateLimiter, key: str, n: int, log: list[tuple[int, float]]) -> list[asyncio.Task]:
    loop = asyncio.get_running_loop()

    async def one(i: int) -> None:
        await limiter.acquire(key)
        log.append((i, loop.time()))

    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    await asyncio.sleep(0)  # every task has booked its slot
    return tasks


async def test_backlog_counts_every_booked_slot_per_key():
    limiter = RateLimiter(rate=1.0)  # a slot a second: nothing below completes by itself
    assert limiter.backlog_s("hook-a") == 0.0
    tasks = await _started(limiter, "hook-a", 4, [])
    # slot 0 now, then 1, 2, 3 s: a fifth send would start 4 s from now
    assert 3.9 < limiter.backlog_s("hook-a") <= 4.0
    assert limiter.backlog_s("hook-b") == 0.0  # keys are paced independently
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_starts_keep_order_and_spacing():
    limiter = RateLimiter(rate=50.0)  # 20 ms apart
    log: list[tuple[int, float]] = []
    await asyncio.gather(*await _started(limiter, "k", 5, log))
    assert [i for i, _ in log] == [0, 1, 2, 3, 4]
    # a late wake-up can shorten one gap, never the span: five starts take four intervals
    assert log[-1][1] - log[0][1] >= 4 * 0.02 - 0.001


async def test_a_pause_holds_waiting_sends_and_they_stay_spaced_after_it():
    limiter = RateLimiter(rate=50.0)
    loop = asyncio.get_running_loop()
    log: list[tuple[int, float]] = []
    tasks = await _started(limiter, "k", 4, log)  # 0 starts at once; 1-3 are waiting
    limiter.pause("k", 0.2)  # a 429 with Retry-After
    paused_at = loop.time()
    assert limiter.backlog_s("k") >= 0.19
    await asyncio.gather(*tasks)
    assert [i for i, _ in log] == [0, 1, 2, 3]
    later = [t for _, t in log[1:]]
    assert all(t >= paused_at + 0.19 for t in later)
    assert later[-1] >= paused_at + 0.2 + 2 * 0.02 - 0.001  # three slots after the pause, not one


async def test_deferred_sends_line_up_behind_the_booked_slots():
    limiter = RateLimiter(rate=1.0)
    tasks = await _started(limiter, "hook-a", 3, [])  # slots now, +1 s, +2 s
    places = [limiter.defer("hook-a") for _ in range(3)]
    assert [round(p) for p in places] == [4, 5, 6]  # after the booked slots, one interval apart
    assert 2.9 < limiter.backlog_s("hook-a") <= 3.0  # a line estimate books no real slot
    assert round(limiter.defer("hook-b")) == 1  # per key
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
