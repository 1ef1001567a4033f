"""The load: N signed referrals posted over HTTP, spread across the intake replicas, each
with its own Idempotency-Key so a retried post (connection lost mid-request) cannot
create a second referral."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp

from shared.crypto import load_signing_key
from shared.httpsig import authority_of
from tests.factories import SUBMIT_PATH, referral_body, referral_post_headers

CLIENT = "dev-mash"


async def _post(session: aiohttp.ClientSession, base: str, key, i: int) -> dict:
    body = referral_body(client_reference=f"CLUSTER-{i:06d}")
    for attempt in range(6):
        headers = referral_post_headers(body, key, authority=authority_of(base + SUBMIT_PATH), client_id=CLIENT,
                                        idempotency_key=f"cluster-run-{i}")
        try:
            async with session.post(base + SUBMIT_PATH, data=body, headers=headers) as resp:
                if resp.status == 202:
                    return await resp.json()
                text = await resp.text()
                if resp.status < 500 and resp.status != 429:
                    raise AssertionError(f"referral {i}: HTTP {resp.status} {text[:300]}")
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2 * (attempt + 1))
    raise AssertionError(f"referral {i}: not accepted after 6 attempts")


async def submit(bases: list[str], keys_dir: Path, total: int, concurrency: int,
                 on_accepted: Callable[[int], None]) -> list[dict]:
    """Post `total` referrals with `concurrency` workers, worker k on intake replica k mod n."""
    key = load_signing_key(keys_dir / f"{CLIENT}.ed25519")
    todo = iter(range(total))
    replies: list[dict] = []

    async def worker(base: str, session: aiohttp.ClientSession) -> None:
        for i in todo:
            replies.append(await _post(session, base, key, i))
            on_accepted(len(replies))

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(worker(bases[k % len(bases)], session) for k in range(concurrency)))
    return replies
