"""Per-key pacing: at most `rate` starts per second per key, and a pause after a 429."""
from __future__ import annotations

import asyncio
from collections import defaultdict


class RateLimiter:
    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next: dict[str, float] = defaultdict(float)
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def acquire(self, key: str) -> None:
        """Wait for this key's next slot (slots are `interval` apart)."""
        async with self._locks[key]:
            loop = asyncio.get_running_loop()
            wait = self._next[key] - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._next[key] = max(self._next[key], loop.time()) + self.interval

    def pause(self, key: str, seconds: float) -> None:
        """Hold this key back for `seconds` (a server said Retry-After)."""
        loop_time = asyncio.get_running_loop().time()
        self._next[key] = max(self._next[key], loop_time + seconds)
