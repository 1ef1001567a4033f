"""Per-key pacing: at most `rate` starts per second per key, and a pause after a 429.

Slots are handed out in order of arrival, `interval` apart. `backlog_s(key)` is how long a
send asked for now would wait for its slot: the notifier defers a routine message through
a delay queue rather than hold a consumer slot that long (see `Delivery._deliver`), and
`defer(key)` gives the deferred message a place in a line behind the booked slots, so that
the notifier can choose a longer delay queue for a message far back in a big burst.
"""
from __future__ import annotations

import asyncio
from collections import defaultdict


class RateLimiter:
    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next: dict[str, float] = defaultdict(float)  # the next free slot per key
        self._hold: dict[str, float] = defaultdict(float)  # no start before this (Retry-After)
        self._deferred: dict[str, float] = defaultdict(float)  # the last place given to a deferred send

    async def acquire(self, key: str) -> None:
        """Take this key's next slot and wait for it. A pause that arrives meanwhile moves
        the wait to a new slot after the pause, so starts stay `interval` apart."""
        loop = asyncio.get_running_loop()
        slot = self._book(key, loop.time())
        while True:
            if self._hold[key] > slot:
                slot = self._book(key, loop.time())
            wait = slot - loop.time()
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    def _book(self, key: str, now: float) -> float:
        slot = max(self._next[key], self._hold[key], now)
        self._next[key] = slot + self.interval
        return slot

    def backlog_s(self, key: str) -> float:
        """Seconds a send asked for now would wait for its slot."""
        now = asyncio.get_running_loop().time()
        return max(0.0, self._next[key] - now, self._hold[key] - now)

    def defer(self, key: str) -> float:
        """A place in the line of deferred sends (after every booked slot and every earlier
        deferral): how many seconds from now it is. An estimate, not a booking: the message
        takes a real slot when it comes back."""
        now = asyncio.get_running_loop().time()
        place = max(self._deferred[key], self._next[key], self._hold[key], now) + self.interval
        self._deferred[key] = place
        return place - now

    def pause(self, key: str, seconds: float) -> None:
        """Hold this key back for `seconds` (a server said Retry-After)."""
        loop_time = asyncio.get_running_loop().time()
        self._hold[key] = max(self._hold[key], loop_time + seconds)
