"""Waiting for a service process's `/readyz`: the one loop the benchmark, cluster and
fault-injection runs share."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp


async def wait_ready(base_url: str, *, alive: Callable[[], bool], name: str, timeout: float = 120.0,
                     interval: float = 0.25, tail: Callable[[], str] = lambda: "") -> float:
    """Poll `base_url/readyz` until it answers 200; return the monotonic time it did. Fails at
    once if the process exits (`alive()` false) and after `timeout`, with `tail()` (its log)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            assert alive(), f"{name} exited: {tail()}"
            try:
                async with session.get(f"{base_url}/readyz") as resp:
                    if resp.status == 200:
                        return time.monotonic()
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            assert time.monotonic() < deadline, f"{name} not ready within {timeout}s: {tail()}"
            await asyncio.sleep(interval)
