"""The load: N signed referrals posted to intake at a steady rate while faults happen.

Each referral has its own Idempotency-Key and is retried (with that key) until intake
answers 202, so a post cut by a killed intake or a lost broker cannot become a second
referral. Every post is recorded (first try, acceptance, tries) for the checker.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from shared.crypto import load_signing_key
from shared.httpsig import authority_of
from tests.factories import SUBMIT_PATH, referral_body, referral_post_headers

CLIENT = "dev-mash"
GIVE_UP_S = 240.0


@dataclass
class Sent:
    index: int
    client_reference: str
    first_try: float  # epoch seconds
    accepted: float | None = None
    reference: str | None = None
    out_of_hours: bool | None = None
    tries: int = 0
    last_error: str = ""


async def _post(session: aiohttp.ClientSession, base: str, key, run: str, s: Sent) -> None:
    body = referral_body(client_reference=s.client_reference)
    delay = 0.2
    while time.time() - s.first_try < GIVE_UP_S:
        s.tries += 1
        headers = referral_post_headers(body, key, authority=authority_of(base + SUBMIT_PATH), client_id=CLIENT,
                                        idempotency_key=f"{run}-{s.index}")
        try:
            async with session.post(base + SUBMIT_PATH, data=body, headers=headers) as resp:
                if resp.status == 202:
                    reply = await resp.json()
                    s.accepted, s.reference, s.out_of_hours = time.time(), reply["reference"], reply["out_of_hours"]
                    return
                s.last_error = f"HTTP {resp.status}"
                if resp.status < 500 and resp.status != 429:
                    raise AssertionError(f"referral {s.index}: HTTP {resp.status} {(await resp.text())[:300]}")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            s.last_error = type(exc).__name__
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


async def submit(base: str, keys_dir: Path, run: str, total: int, rate: float, sent: list[Sent]) -> None:
    """Post `total` referrals, one every 1/rate seconds (each retried on its own task)."""
    key = load_signing_key(keys_dir / f"{CLIENT}.ed25519")
    loop = asyncio.get_running_loop()
    start = loop.time()
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=64)) as session:
        tasks = []
        for i in range(total):
            if (wait := start + i / rate - loop.time()) > 0:
                await asyncio.sleep(wait)
            s = Sent(i, f"FAULTS-{i:06d}", time.time())
            sent.append(s)
            tasks.append(asyncio.create_task(_post(session, base, key, run, s)))
        await asyncio.gather(*tasks)
