"""Benchmark 6: the workspace's case list (`GET /referrals`) with many referrals in one council.

A real `safeguard serve intake` on PostgreSQL. One referral is submitted through the API; its
row is then copied in SQL until the council has `n` (each with its own id, reference and
receipt time, every track open). A social worker's session is made in intake's session table
(what `/auth/callback` does after the identity provider; the sign-in itself is not what is
measured), and the page is fetched `requests` times in turn: its time from request to the
last byte on loopback, which is the server's time plus a loopback round trip. No baseline:
the target is absolute (p95 < 150 ms).
"""
from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime

import aiohttp
import sqlalchemy as sa

from services.intake.adapters.tables import referrals, web_sessions
from shared.storage import create_engine
from shared.web.identity import Person
from shared.web.sessions import SessionStore
from tests.conftest import fresh_pg_database
from tests.perf.common import bodies, post_all, quantile, service_env, setup_config, signed
from tests.support.processes import stop_all

COPY_BATCH = 20_000


class WorkspaceBench:
    name = "workspace"
    title = "6. Workspace case list (GET /referrals as a social worker; one council's referrals)"
    base_round = None

    def __init__(self, env, n: int, requests: int = 60) -> None:
        self.env, self.n, self.requests = env, n, requests
        self.rows = [("list_p50_ms", f"/referrals time p50 ms ({n:,} referrals)", ""),
                     ("list_p95_ms", f"/referrals time p95 ms ({n:,} referrals)", "< 150 ms"),
                     ("errors", "workspace: pages not 200", "0")]
        self.stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> WorkspaceBench:
        s = self.stack
        tmp = self.env.tmpdir("workspace")
        config = setup_config(tmp)
        db = await s.enter_async_context(fresh_pg_database())
        self.proc = self.env.service("intake", service_env(config, tmp, self.env.amqp_url(), db))
        s.push_async_callback(stop_all, [self.proc])
        await self.proc.start()
        await self.proc.ready()
        statuses = await post_all(self.proc.url, signed(tmp, bodies(1, "workspace"), self.proc.url))
        assert statuses == [202], statuses
        engine = create_engine(db)
        s.push_async_callback(engine.dispose)
        await self._copy(engine)
        person = Person(issuer="https://idp.bench.example", subject="bench-social-worker", name="Bench Worker",
                        role="social_care", organisation="E99999999")
        session = await SessionStore(engine, web_sessions).signed_in(datetime.now(UTC), person)
        self.cookies = {"sg_intake_session": session.id}
        return self

    async def _copy(self, engine) -> None:
        """The one real row, copied to `n` rows in all (new id, reference, client reference, receipt)."""
        names = [c.name for c in referrals.c]
        fresh = {"id": "gen_random_uuid()::text", "reference": "'PRV-2025-' || lpad(g::text, 6, '0')",
                 "client_reference": "'BENCH-COPY-' || g", "received_at": "t.received_at - g * interval '5 minutes'",
                 "updated_at": "t.updated_at - g * interval '5 minutes'"}
        select = ", ".join(fresh.get(c, f"t.{c}") for c in names)
        async with engine.begin() as conn:
            for start in range(1, self.n, COPY_BATCH):
                end = min(self.n - 1, start + COPY_BATCH - 1)
                await conn.execute(sa.text(
                    f"INSERT INTO intake_referrals ({', '.join(names)}) SELECT {select} FROM intake_referrals t, "
                    f"generate_series({start}, {end}) g WHERE t.client_reference LIKE 'BENCH-workspace-%'"))
            await conn.execute(sa.text("ANALYZE intake_referrals"))
            count = await conn.scalar(sa.select(sa.func.count()).select_from(referrals))
        assert count == self.n, count

    async def __aexit__(self, *exc) -> None:
        await self.stack.aclose()

    async def ours_round(self, r: int) -> dict[str, float]:
        times, errors = [], 0
        async with aiohttp.ClientSession(cookies=self.cookies) as session:
            for _ in range(self.requests):
                start = time.perf_counter()
                async with session.get(self.proc.url + "/referrals", allow_redirects=False) as resp:
                    await resp.read()
                    errors += resp.status != 200
                times.append((time.perf_counter() - start) * 1000)
        return {"list_p50_ms": quantile(times, 0.5), "list_p95_ms": quantile(times, 0.95), "errors": errors}
