"""The entrypoint that fires escalation's durable timers: the rows are the truth;
APScheduler only wakes the service.

`fire_due(now)` claims due rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so several
replicas each fire a step exactly once; SQLite has one writer) in batches of up to 500, in
due order, and in ONE transaction per batch marks them fired and writes their outbox
rows and audit entries (500, not the 50 it was: 10,000 timers due in one second were last
fired 6.4 s late with 50 and 2.9 s with 500, `make bench`'s timers on 200,000 pending; 1,000
and 2,000 gave no clear further gain for the memory and lock time). If a batch raises, it is rolled back and its rows are fired
one by one, so only the failing row is held back: its attempts go up, it is retried
with back-off (`domain.timers.retry_at`) and after `max_attempts` marked `failed`
(a metric and an audit entry) — never dropped.

APScheduler 3 (`AsyncIOScheduler`) holds one "wake" job at the earliest pending
`run_at` and a periodic safety poll; both only poke the process's single fire loop
(so a wake-up is never skipped because a firing is still running). On start the
loop runs at once, so timers missed while the service was down fire immediately,
in due order.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from services.escalation import metrics
from services.escalation.adapters import repository as repo
from services.escalation.adapters.effects import audit, batched_writes
from services.escalation.context import Context
from services.escalation.domain.timers import retry_at
from services.escalation.handlers import fire_timer
from shared.logging import get_logger

log = get_logger(__name__)


class TimerService:
    def __init__(self, engine: AsyncEngine, ctx: Context, *, on_commit: Callable[[], None] = lambda: None,
                 batch_size: int = 500, max_attempts: int = 5, retry_base_s: float = 30.0,
                 poll_interval_s: float = 30.0) -> None:
        self.engine, self.ctx, self.on_commit = engine, ctx, on_commit
        self.batch_size, self.max_attempts = batch_size, max_attempts
        self.retry_base_s, self.poll_interval_s = retry_base_s, poll_interval_s
        self._lock = asyncio.Lock()
        self._scheduler: AsyncIOScheduler | None = None
        self._next_wake: datetime | None = None
        self._wake: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._counted_at = float("-inf")

    # --- firing --------------------------------------------------------------------

    async def fire_due(self, now: datetime | None = None) -> int:
        """Fire every timer due at `now` (default: the clock's now, re-read after each
        batch so timers falling due meanwhile go too); returns how many."""
        async with self._lock:
            total = 0
            while True:
                fired, more = await self._fire_batch(now or self.ctx.clock())
                total += fired
                if fired:
                    self.on_commit()
                if not more:
                    return total

    async def _fire_batch(self, now: datetime) -> tuple[int, bool]:
        ids: list[int] = []
        try:
            async with self.engine.begin() as conn, batched_writes(conn):
                rows = await repo.claim_due(conn, now, self.batch_size)
                ids = [r.id for r in rows]
                referrals = await repo.get_referrals(conn, (r.referral_id for r in rows))
                outcomes = []
                for row in rows:
                    outcomes.append((row, await fire_timer(conn, row, self.ctx, now, referrals=referrals)))
                await repo.finish_timers(conn, ((row.id, outcome) for row, outcome in outcomes), now)
        except Exception as exc:
            if not ids:
                raise  # the claim itself failed (database down): the next wake retries
            log.warning("timer_batch_failed", error=type(exc).__name__, timers=len(ids))
            fired = 0
            for timer_id in ids:
                fired += await self._fire_one(timer_id, now)
            return fired, True
        for row, outcome in outcomes:
            self._observe(row, outcome, now)
        return len(ids), len(ids) == self.batch_size

    async def _fire_one(self, timer_id: int, now: datetime) -> int:
        try:
            async with self.engine.begin() as conn:
                row = await repo.lock_timer(conn, timer_id)
                if row is None or row.run_at > now:
                    return 0
                outcome = await fire_timer(conn, row, self.ctx, now)
                await repo.finish_timer(conn, row.id, outcome, now)
            self._observe(row, outcome, now)
            return 1
        except Exception as exc:
            await self._record_failure(timer_id, type(exc).__name__, now)
            return 0

    async def _record_failure(self, timer_id: int, error: str, now: datetime) -> None:
        async with self.engine.begin() as conn:
            row = await repo.lock_timer(conn, timer_id)
            if row is None:
                return
            attempts = row.attempts + 1
            give_up = attempts >= self.max_attempts
            await repo.timer_failed(conn, timer_id, error, retry_at(now, attempts, self.retry_base_s), give_up)
            await audit(conn, "timer.failed" if give_up else "timer.retry", row.reference, now,
                        outcome="failed" if give_up else "retry",
                        detail={"timer_id": timer_id, "kind": row.kind, "attempts": attempts, "error": error})
        metrics.TIMER_FAILURES.labels(kind=row.kind[:40], final=str(give_up).lower()).inc()
        log.warning("timer_failed", timer_id=timer_id, kind=row.kind, attempts=attempts, final=give_up, error=error)

    def _observe(self, row: Row[Any], outcome: str, now: datetime) -> None:
        metrics.TIMERS_FIRED.labels(kind=row.kind, outcome=outcome).inc()
        if outcome == "fired":
            metrics.TIMER_LATENESS.observe(max(0.0, (now - row.due_at).total_seconds()))

    # --- waking --------------------------------------------------------------------

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._loop_task = asyncio.create_task(self._run(), name="escalation-timers")
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.add_job(self._poke, IntervalTrigger(seconds=self.poll_interval_s, timezone=UTC),
                                id="poll", coalesce=True, misfire_grace_time=None)
        self._scheduler.start()
        self._wake.set()  # missed timers fire at once after a restart

    async def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)  # waits out an in-flight batch
            self._loop_task = None

    async def reschedule(self) -> None:
        """Move the wake-up to the earliest pending timer (after a firing round)."""
        async with self.engine.connect() as conn:
            nxt = await repo.next_run_at(conn)
        await self.wake_for([nxt] if nxt is not None else [])

    async def wake_for(self, run_ats: list[datetime]) -> None:
        """Wake for the earliest of `run_ats` if that is sooner than the wake-up already set
        (after a commit that added timers, `repo.noting_added`: no query). Timers that other
        replicas add wake those replicas; the safety poll covers the rest."""
        if self._counts_due():
            await self.refresh_gauges()
        if run_ats:
            delay = max(0.0, (min(run_ats) - self.ctx.clock()).total_seconds())
            self._wake_at(datetime.now(UTC) + timedelta(seconds=delay))

    async def refresh_gauges(self) -> None:
        """Recount timers by status and open alerts by kind, force and level (at most every 10 s)."""
        async with self.engine.connect() as conn:
            counts = await repo.count_by_kind_and_status(conn)
            open_alerts = await repo.count_open_alerts(conn)
        metrics.set_open_alerts(open_alerts)
        metrics.set_timers(counts)

    def _counts_due(self) -> bool:
        now = asyncio.get_running_loop().time()
        if now - self._counted_at < 10:
            return False
        self._counted_at = now
        return True

    def _wake_at(self, run: datetime) -> None:
        """APScheduler's one date job: at `run`, poke the fire loop."""
        if self._scheduler is None or (self._next_wake is not None and self._next_wake <= run):
            return
        self._next_wake = run
        self._scheduler.add_job(self._poke, DateTrigger(run_date=run, timezone=UTC), id="wake",
                                replace_existing=True, coalesce=True, misfire_grace_time=None)

    async def _poke(self) -> None:
        """A coroutine, so APScheduler's asyncio executor runs it on the loop: a plain
        function would run in a worker thread, and asyncio.Event is not thread-safe."""
        self._next_wake = None
        if self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        """The single fire loop of this process: sleeps until poked (wake job, poll, start)."""
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.fire_due()
                await self.reschedule()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("timer_tick_failed", error=type(exc).__name__)
