"""What the benchmarks share: a dev set-up tuned for load, pre-signed HTTP load and small
statistics helpers (the services under test: `harness.Env`)."""
from __future__ import annotations

import asyncio
import json
import math
import os
import statistics
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp

from safeguard import keys
from shared.clock import LONDON
from shared.crypto import load_signing_key
from shared.httpsig import authority_of
from tests.factories import SUBMIT_PATH, referral_body, referral_post_headers


def setup_config(directory: Path, *, teams_base: str | None = None, out_of_hours: bool = False) -> Path:
    """`safeguard keys init` with no client or client-address rate limit (the load comes from one
    address, faster than any one MASH system); optionally Teams pointed at a stub and
    the LA's working hours moved to a 1-hour window six hours away, so every receipt is out of hours."""
    path = keys.init(directory)
    text = path.read_text().replace(
        "[system]\n", "[system]\nrate_limit_per_minute = 100000000\nrate_limit_per_address_per_minute = 100000000\n")
    if teams_base:
        text = text.replace(keys.TEAMS_SINK, teams_base)
    if out_of_hours:
        h = (datetime.now(LONDON) + timedelta(hours=6)).hour
        end = "23:59:00" if h == 23 else f"{h + 1:02d}:00:00"
        text = text.replace('start = "09:00:00"\nend = "17:00:00"', f'start = "{h:02d}:00:00"\nend = "{end}"')
    path.write_text(text)
    return path


def service_env(config: Path, data_dir: Path, amqp_url: str, db_url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "SAFEGUARD_CONFIG": str(config), "SAFEGUARD_DATA_DIR": str(data_dir),
            "SAFEGUARD_AMQP_URL": amqp_url, "SAFEGUARD_DATABASE_URL": db_url, **extra}


def bodies(n: int, tag: str) -> list[bytes]:
    return [referral_body(client_reference=f"BENCH-{tag}-{i}") for i in range(n)]


def signed(data_dir: Path, items: list[bytes], base_url: str) -> list[tuple[bytes, dict[str, str]]]:
    """Sign every request to `base_url` before the clock starts: signing is the client's cost, not ours."""
    key = load_signing_key(data_dir / "keys" / "dev-mash.ed25519")
    authority = authority_of(base_url)
    return [(body, referral_post_headers(body, key, authority=authority)) for body in items]


async def post_all(base_url: str, requests: list[tuple[bytes, dict[str, str]]], *, concurrency: int = 32,
                   rate: float | None = None, on_reply=None) -> list[int]:
    """POST every request over keep-alive connections (`concurrency` in flight), or at a steady
    `rate` per second; `on_reply(index, sent_at, reply_json)` sees each 202. Returns statuses."""
    statuses: list[int] = []
    start = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def one(i: int) -> None:
            if rate:
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            body, headers = requests[i]
            sent = time.monotonic()
            async with session.post(base_url + SUBMIT_PATH, data=body, headers=headers) as resp:
                payload = await resp.read()
                statuses.append(resp.status)
                if resp.status == 202 and on_reply is not None:
                    on_reply(i, sent, json.loads(payload))

        if rate:
            await asyncio.gather(*(one(i) for i in range(len(requests))))
        else:
            it = iter(range(len(requests)))

            async def worker() -> None:
                for i in it:
                    await one(i)
            await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1), nearest-rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


async def wait_until(check, timeout: float, interval: float = 0.05) -> float:
    """Poll `check()` (sync or async) until true; return the monotonic time it was."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not reached in time")
        await asyncio.sleep(interval)
