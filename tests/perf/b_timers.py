"""Benchmark 3: escalation with N pending deadlines in PostgreSQL (no baseline: targets).

Loads `pending` far-future timers once (one INSERT … SELECT generate_series). Each round
adds `due` timers falling due within one second, `lead` seconds after the restart, then
starts a real `safeguard serve escalation` and measures restart → `/readyz` 200, the
process's resident memory (peak, VmHWM) and the firing lateness (fired_at − due_at).
"""
from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from services.escalation.adapters.tables import referrals, timers
from shared.storage import create_engine
from shared.storage.migrate import upgrade
from tests.conftest import fresh_pg_database
from tests.factories import escalation_referrals
from tests.perf.common import quantile, service_env, setup_config, wait_until

REFERRALS = 1000
INSERT = sa.text(f"""
INSERT INTO {timers.name} (timer_key, referral_id, reference, kind, seq, due_at, run_at, status, attempts, created_at)
SELECT CAST(:prefix AS text) || g::text, r.referral_id, r.reference, 'checks_reminder', 1,
       CAST(:base AS timestamptz) + make_interval(secs => (g % CAST(:spread AS integer)) * CAST(:step AS float8)),
       CAST(:base AS timestamptz) + make_interval(secs => (g % CAST(:spread AS integer)) * CAST(:step AS float8)),
       'pending', 0, now()
FROM generate_series(0, CAST(:n AS integer) - 1) AS g
JOIN (SELECT referral_id, reference, row_number() OVER (ORDER BY referral_id) - 1 AS k FROM {referrals.name}) AS r
  ON r.k = g % {REFERRALS}
""")


class TimersBench:
    name = "timers"
    title = "3. Timers (pending deadlines in PostgreSQL; targets, no baseline)"
    rows = [("ready_s", "restart → ready s", "≤ 10 s"),
            ("rss_mib", "peak resident memory MiB", "≤ 300 MB"),
            ("lateness_p50_ms", "firing lateness p50 ms", ""),
            ("lateness_p99_ms", "firing lateness p99 ms", "≤ 1000 ms")]
    base_round = None

    def __init__(self, env, pending: int, due: int, lead_s: float) -> None:
        self.env, self.pending, self.due, self.lead_s = env, pending, due, lead_s
        self.stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> TimersBench:
        self.tmp = self.env.tmpdir("timers")
        config = setup_config(self.tmp)
        db = await self.stack.enter_async_context(fresh_pg_database())
        self.engine = create_engine(db)
        self.stack.push_async_callback(self.engine.dispose)
        await upgrade(self.engine, "escalation")
        now = datetime.now(UTC)
        refs = escalation_referrals(REFERRALS, "BENCH", now)
        async with self.engine.begin() as conn:
            await conn.execute(referrals.insert(), refs)
            await self._insert(conn, "far:", self.pending, now + timedelta(days=2), spread=480, step=3600.0)
        self.env_vars = service_env(config, self.tmp, self.env.amqp_url(), db)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stack.aclose()

    @staticmethod
    async def _insert(conn, prefix: str, n: int, base: datetime, *, spread: int, step: float) -> None:
        await conn.execute(INSERT, {"prefix": prefix, "n": n, "base": base, "spread": spread, "step": step})

    async def _fired(self, prefix: str) -> list[tuple[datetime, datetime]]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(sa.select(timers.c.due_at, timers.c.fired_at).where(
                timers.c.timer_key.like(prefix + "%"), timers.c.status == "fired"))).all())

    async def ours_round(self, r: int) -> dict[str, float]:
        prefix = f"due{r}:"
        due_at = datetime.now(UTC) + timedelta(seconds=self.lead_s)
        async with self.engine.begin() as conn:
            await self._insert(conn, prefix, self.due, due_at, spread=self.due, step=1.0 / self.due)
        proc = self.env.service("escalation", self.env_vars)
        try:
            start = time.monotonic()
            await proc.start()
            ready = await proc.ready() - start
            rows: list = []

            async def all_fired() -> bool:
                nonlocal rows
                rows = await self._fired(prefix)
                return len(rows) >= self.due
            await wait_until(all_fired, timeout=self.lead_s + 120, interval=0.25)
            rss = proc.rss_mib("VmHWM")
        finally:
            await proc.stop()
        late = [(fired - due).total_seconds() * 1000 for due, fired in rows]
        return {"ready_s": ready, "rss_mib": rss, "lateness_p50_ms": quantile(late, 0.5),
                "lateness_p99_ms": quantile(late, 0.99)}
