"""Benchmark: accepted signed referrals per second over HTTP, concurrency 32, against a
real `safeguard serve intake` on the real RabbitMQ and PostgreSQL.

Not part of `make test` (the file name does not match test_*.py). Run it with
    .venv/bin/python -m pytest tests/perf/bench_intake.py -q -s -p no:cacheprovider
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time

import aiohttp
import pytest

from safeguard import keys
from shared.crypto import load_signing_key
from shared.httpsig import sign_request
from tests.factories import referral
from tests.intake.test_cli_client import free_port, wait_ready

pytestmark = [pytest.mark.broker, pytest.mark.database, pytest.mark.slow]
TOTAL, CONCURRENCY = int(os.environ.get("BENCH_TOTAL", "1000")), 32


async def test_bench_accepted_referrals_per_second(tmp_path, amqp_url, pg_url):
    config = keys.init(tmp_path)
    port = free_port()
    env = {**os.environ, "SAFEGUARD_CONFIG": str(config), "SAFEGUARD_DATA_DIR": str(tmp_path),
           "SAFEGUARD_AMQP_URL": amqp_url, "SAFEGUARD_DATABASE_URL": pg_url, "SAFEGUARD_INTAKE_PORT": str(port)}
    text = (config.read_text().replace("[system]\n", "[system]\nrate_limit_per_minute = 1000000\n"))
    config.write_text(text)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "safeguard", "serve", "intake", env=env,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    key = load_signing_key(tmp_path / "keys" / "dev-mash.ed25519")
    bodies = [json.dumps(referral(client_reference=f"BENCH-{i}")).encode() for i in range(TOTAL)]
    statuses: list[int] = []
    try:
        await wait_ready(f"http://127.0.0.1:{port}/readyz")
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for b in bodies:
            queue.put_nowait(b)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:
            async def worker() -> None:
                while not queue.empty():
                    body = queue.get_nowait()
                    headers = sign_request(method="POST", path="/v1/referrals", body=body, key_id="dev-mash", key=key)
                    headers["Content-Type"] = "application/json"
                    async with session.post(f"http://127.0.0.1:{port}/v1/referrals", data=body,
                                            headers=headers) as resp:
                        await resp.read()
                        statuses.append(resp.status)

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            elapsed = time.perf_counter() - start
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)
    accepted = statuses.count(202)
    print(f"\nintake: {accepted}/{TOTAL} accepted in {elapsed:.2f}s = {accepted / elapsed:.1f} referrals/s "
          f"(concurrency {CONCURRENCY})")
    assert accepted == TOTAL
