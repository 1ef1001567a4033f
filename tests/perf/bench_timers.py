"""Benchmark: timer firing lateness and memory with 100,000 pending timers in PostgreSQL.

Run: `.venv/bin/python -m tests.perf.bench_timers [--pending 100000] [--due 3000] [--window 30]`
(needs the local PostgreSQL, like the tests; not collected by `make test`).

It loads `--pending` pending timers (most due far in the future, `--due` of them spread
over the next `--window` seconds), starts the real `TimerService` (APScheduler wake-ups,
`SKIP LOCKED` claims, one transaction per batch writing outbox rows and audit entries)
with the system clock, waits for the due ones, and reports how late they fired
(p50/p99/max of fired_at - due_at) and the process's peak RSS.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from safeguard import keys
from services.escalation.adapters.tables import referrals, timers
from services.escalation.clock import SystemClock
from services.escalation.effects import Context
from services.escalation.scheduler import TimerService
from shared.config import load_settings
from shared.storage import create_engine
from shared.storage.migrate import upgrade
from tests.conftest import fresh_pg_database

REFERRALS = 1000


async def load(engine, pending: int, due: int, window: float, start: datetime) -> None:
    now = datetime.now(UTC)
    refs = [dict(referral_id=uuid.uuid4().hex, reference=f"SR-BENCH-{i:05d}", force="dev-force",
                 la_code="E99999999", received_at=now, out_of_hours=False, immediate_risk=False,
                 acknowledge_by=now + timedelta(days=1), checks_due_by=now + timedelta(days=28),
                 holding={"no_further_sharing": True, "no_family_contact": True}, created_at=now, updated_at=now)
            for i in range(REFERRALS)]
    async with engine.begin() as conn:
        await conn.execute(referrals.insert(), refs)
    rows = []
    for i in range(pending):
        ref = refs[i % REFERRALS]
        if i < due:
            at = start + timedelta(seconds=window * i / due)
        else:
            at = now + timedelta(days=2 + (i % 20))
        rows.append(dict(timer_key=f"bench:{i}", referral_id=ref["referral_id"], reference=ref["reference"],
                         kind="checks_reminder", seq=1, due_at=at, run_at=at, status="pending", attempts=0,
                         created_at=now))
    for chunk in range(0, len(rows), 5000):
        async with engine.begin() as conn:
            await conn.execute(timers.insert(), rows[chunk:chunk + 5000])


async def main(pending: int, due: int, window: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        config = keys.init(Path(tmp))
        async with fresh_pg_database() as url:
            settings = load_settings({"SAFEGUARD_CONFIG": str(config), "SAFEGUARD_DATA_DIR": tmp,
                                      "SAFEGUARD_DATABASE_URL": url})
            engine = create_engine(url)
            try:
                await upgrade(engine, "escalation")
                start = datetime.now(UTC) + timedelta(seconds=20)
                t0 = time.monotonic()
                await load(engine, pending, due, window, start)
                load_s = time.monotonic() - t0
                service = TimerService(engine, Context(settings, SystemClock()), batch_size=50, poll_interval_s=5)
                service.start()
                await service.reschedule()
                deadline = time.monotonic() + (start - datetime.now(UTC)).total_seconds() + window + 60
                while time.monotonic() < deadline:
                    async with engine.connect() as conn:
                        fired = await conn.scalar(select(func.count()).select_from(timers)
                                                  .where(timers.c.status == "fired"))
                    if fired >= due:
                        break
                    await asyncio.sleep(0.5)
                await service.stop()
                async with engine.connect() as conn:
                    rows = (await conn.execute(select(timers.c.due_at, timers.c.fired_at)
                                               .where(timers.c.status == "fired"))).all()
                    left = await conn.scalar(select(func.count()).select_from(timers)
                                             .where(timers.c.status == "pending"))
            finally:
                await engine.dispose()
    late = sorted((f - d).total_seconds() for d, f in rows)
    q = statistics.quantiles(late, n=100) if len(late) > 1 else [0.0] * 99
    return {
        "pending_timers": pending, "due_in_window": due, "window_s": window, "fired": len(late),
        "still_pending": left, "load_s": round(load_s, 1),
        "lateness_p50_ms": round(q[49] * 1000, 1), "lateness_p99_ms": round(q[98] * 1000, 1),
        "lateness_max_ms": round(max(late) * 1000, 1) if late else None,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=3000)
    parser.add_argument("--window", type=float, default=30.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.pending, args.due, args.window)), indent=2))
