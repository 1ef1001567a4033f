"""Benchmark 1: intake accept rate over HTTP keep-alive, concurrency 32.

Ours: a real `safeguard serve intake` (signature verified, sealed, stored, outbox, confirmed
publish) on PostgreSQL. Baselines: a bare aiohttp handler doing one confirmed persistent
aio-pika publish of the same body, and the durable floor (tests/perf/floors.py: verify, seal to
three teams, one transaction, confirmed publish, mark sent). All are child processes; the load
comes from here, every request signed before the clock starts.
"""
from __future__ import annotations

import asyncio
import contextlib
import time

from tests.conftest import fresh_pg_database
from tests.perf import pgstats
from tests.perf.common import bodies, post_all, service_env, setup_config, signed
from tests.support.processes import ServiceProcess, stop_all

CONCURRENCY = 32


class IntakeBench:
    name = "intake"
    title = "1. Intake accept rate (HTTP keep-alive, concurrency 32)"
    rows = [("accepted_per_s", "accepted referrals/s", "≥ 0.6 × floor"),
            ("errors", "intake: requests not accepted (non-202)", "0"),
            ("pg_tx", "PostgreSQL transactions per referral", ""),
            ("pg_rows", "PostgreSQL rows written per referral", ""),
            ("rss", "resident memory MiB after the round", "")]

    def __init__(self, env, n: int) -> None:
        self.env, self.n = env, n
        self.stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> IntakeBench:
        tmp = self.env.tmpdir("intake")
        config = setup_config(tmp)
        db = await self.stack.enter_async_context(fresh_pg_database())
        self.databases = {"ours": db.rsplit("/", 1)[1]}
        self.tmp = tmp
        self.ours = self.env.service("intake", service_env(config, tmp, self.env.amqp_url(), db))
        self.base_proc = self.env.bare_intake(self.env.amqp_url())
        floor_db = await self.stack.enter_async_context(fresh_pg_database())
        self.databases["floor"] = floor_db.rsplit("/", 1)[1]
        self.floor_proc = self.env.intake_floor(self.env.amqp_url(), floor_db.replace("+asyncpg", ""),
                                                tmp / "keys" / "dev-mash.ed25519", "dev-mash")
        procs = [self.ours, self.base_proc, self.floor_proc]
        self.stack.push_async_callback(stop_all, procs)
        for proc in procs:
            await proc.start()
        for proc in procs:
            await proc.ready()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stack.aclose()

    async def _run(self, proc: ServiceProcess, tag: str, db: str | None = None) -> dict[str, float]:
        requests = signed(self.tmp, bodies(self.n, tag), proc.url)
        databases = {"db": self.databases[db]} if db else {}
        before = await pgstats.snapshot(databases)
        start = time.monotonic()
        statuses = await post_all(proc.url, requests, concurrency=CONCURRENCY)
        elapsed = time.monotonic() - start
        accepted = statuses.count(202)
        if accepted < self.n:
            print(f"  {tag}: {self.n - accepted} of {self.n} not accepted: {sorted(set(statuses))}", flush=True)
        result = {"accepted_per_s": accepted / elapsed, "errors": self.n - accepted, "rss": proc.rss_mib()}
        if db:
            await asyncio.sleep(pgstats.SETTLE_S)  # the outbox relay's last updates, and the counters' flush
            spent = pgstats.per_item(before, await pgstats.snapshot(databases), accepted)
            result |= {"pg_tx": spent["pg_tx_db"], "pg_rows": spent["pg_rows_db"]}
        return result

    async def ours_round(self, r: int) -> dict[str, float]:
        return await self._run(self.ours, f"ours-{r}", "ours")

    async def base_round(self, r: int) -> dict[str, float]:
        return await self._run(self.base_proc, f"base-{r}")

    async def floor_round(self, r: int) -> dict[str, float]:
        return await self._run(self.floor_proc, f"floor-{r}", "floor")
