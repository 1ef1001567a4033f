"""Benchmark: notifications delivered per second by email to a real aiosmtpd sink.

Run: `.venv/bin/python -m tests.perf.bench_notifier [--n 300] [--db postgres|sqlite]`
(needs the local RabbitMQ and PostgreSQL, like the tests; not collected by `make test`).

Runs the real notifier (bootstrap `create_app`, outbox relay, consumer with prefetch 16)
in a fresh vhost and database, publishes `--n` signed `referral_acknowledgement` requests
to the referrer (each opens its own sealed contact section, renders, sends by SMTP,
commits `sending` and `delivered` rows, an outbox event and an audit entry), and reports
delivered per second from the first publish to the last `delivered` row.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from services.notifier.adapters import tables
from tests.conftest import VhostPool, fresh_pg_database
from tests.notifier.conftest import running_world


async def bench(n: int, db: str) -> dict:
    pool = VhostPool()
    vhost = pool.take()
    try:
        async with contextlib.AsyncExitStack() as stack:
            db_url = await stack.enter_async_context(fresh_pg_database()) if db == "postgres" else None
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            world = await stack.enter_async_context(
                running_world(tmp, f"amqp://guest:guest@127.0.0.1:5672/{vhost}", db_url))
            await world.received()
            contacts = world.sealed_contacts({"referrer": {"email": "referrer@mash.example"}})
            reqs = [world.request("referral_acknowledgement", "referrer", contacts=contacts) for _ in range(n)]
            start = time.perf_counter()
            for req in reqs:
                await world.publish(req, "escalation")
            published = time.perf_counter() - start
            query = sa.select(sa.func.count()).where(tables.deliveries.c.status == "delivered")
            while True:
                async with world.engine.connect() as conn:
                    done = await conn.scalar(query)
                if done >= n:
                    break
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - start
            assert len(world.smtp.mails) == n
    finally:
        pool.close()
    return {"notifications": n, "database": db, "publish_s": round(published, 2), "elapsed_s": round(elapsed, 2),
            "delivered_per_s": round(n / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(bench(args.n, args.db))))


if __name__ == "__main__":
    main()
