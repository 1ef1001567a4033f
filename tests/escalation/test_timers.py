"""Durable timers: exactly once across replicas, reloaded after a restart, failures kept."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from services.escalation.adapters.tables import audit, timers
from shared.clock import ManualClock, utcnow
from tests.factories import london, referral_received

pytestmark = [pytest.mark.broker, pytest.mark.database]


async def test_two_instances_on_one_database_fire_each_step_exactly_once(esc):
    esc.clock = ManualClock(london(2026, 11, 2, 9, 30))
    async with esc.app(batch_size=4) as one, esc.app(batch_size=4) as two:
        ids = [await esc.publish(referral_received(london(2026, 11, 2, 9, 30))) for _ in range(12)]
        for mid in ids:
            await esc.wait_processed(mid)
        total = (await esc.rows(select(func.count()).select_from(timers)))[0][0]
        assert total == 12 * 10  # per referral: 4 acknowledge, 3 decide, 3 checks
        esc.clock.advance(timedelta(days=40))
        fired = await asyncio.gather(esc.fire(one), esc.fire(two), esc.fire(one), esc.fire(two))
        assert sum(fired) == total
        assert [r.status for r in await esc.rows(select(timers.c.status).distinct())] == ["fired"]
        entries = await esc.rows(select(audit.c.detail).where(audit.c.action.like("deadline.%")))
        timer_ids = [e.detail["timer_id"] for e in entries]
        assert len(timer_ids) == len(set(timer_ids)) == total
        await esc.settle(1.0)
        events = await esc.take("ops.events", timeout=2)
        while more := await esc.take("ops.events", timeout=0.5):
            events += more
        assert len({m.message_id for m in events}) == total


async def test_a_restart_reloads_pending_timers_and_fires_missed_ones_at_once_in_due_order(esc):
    esc.clock = ManualClock(london(2026, 11, 2, 9, 30))
    refs = [referral_received(london(2026, 11, 2, 9, 30) + timedelta(minutes=7 * i)) for i in range(5)]
    async with esc.app():
        for ev in refs:
            await esc.wait_processed(await esc.publish(ev))
    esc.clock.set(london(2026, 11, 3, 12))  # the service was down through the acknowledge deadlines
    async with esc.app():
        async with asyncio.timeout(10):  # no explicit fire: the start-up wake does it
            while (await esc.rows(select(func.count()).select_from(timers).where(timers.c.status == "fired")))[0][0] < 35:
                await asyncio.sleep(0.1)
    rows = await esc.rows(select(audit.c.detail).where(audit.c.action.like("deadline.%")).order_by(audit.c.seq))
    fired_due = [r.detail["due_at"] for r in rows]
    assert len(fired_due) == 35 and fired_due == sorted(fired_due)  # 5 x (4 acknowledge + 3 decide)
    pending = await esc.rows(select(timers).where(timers.c.status == "pending"))
    assert {r.kind for r in pending} == {"checks_reminder", "checks_breach"} and len(pending) == 15


async def test_a_timer_that_an_event_adds_wakes_the_scheduler_by_itself(esc):
    """No poll (its interval is an hour here) and no explicit fire: the consumer wakes the
    scheduler for the earliest timer each event adds, after the commit."""
    file = esc.settings.file
    timings = file.escalation.model_copy(update={"alert_reescalate_minutes": 0.02})  # 1.2 s
    esc.settings = esc.settings.model_copy(update={"file": file.model_copy(update={"escalation": timings})})
    async with esc.app(utcnow):
        # Out of hours, so that the immediate-safety concern raises a control-room alert (in
        # hours it is a strategy-discussion request, with no alert to re-escalate) whatever
        # the time of day the suite runs at.
        ev = referral_received(datetime.now(UTC), immediate_risk=True).model_copy(update={"out_of_hours": True})
        await esc.wait_processed(await esc.publish(ev))
        query = select(timers.c.status).where(timers.c.referral_id == ev.referral_id,
                                              timers.c.kind == "alert_reescalate", timers.c.seq == 1)
        assert [r.status for r in await esc.rows(query)] == ["pending"]
        async with asyncio.timeout(10):
            while [r.status for r in await esc.rows(query)] != ["fired"]:
                await asyncio.sleep(0.1)


def _failures(final: str) -> float:
    return REGISTRY.get_sample_value("safeguard_escalation_timer_failures_total",
                                     {"kind": "from_a_newer_version", "final": final}) or 0.0


async def test_a_failing_timer_is_retried_with_back_off_then_marked_failed_never_dropped(esc):
    esc.clock = ManualClock(london(2026, 11, 2, 9, 30))
    async with esc.app(max_attempts=3, retry_base_s=60) as server:
        ev = referral_received(london(2026, 11, 2, 9, 30))
        await esc.wait_processed(await esc.publish(ev))
        async with esc.engine.begin() as conn:  # a row this version cannot fire, due first
            await conn.execute(timers.insert().values(
                timer_key="bad:1", referral_id=ev.referral_id, reference=ev.reference, kind="from_a_newer_version",
                seq=1, due_at=london(2026, 11, 2, 9, 31), run_at=london(2026, 11, 2, 9, 31), status="pending",
                attempts=0, created_at=esc.clock()))
        before = _failures("true")
        esc.clock.set(london(2026, 11, 2, 13, 30))  # the 50 % reminder is due too, in the same batch
        assert await esc.fire(server) == 1
        [bad] = await esc.rows(select(timers).where(timers.c.timer_key == "bad:1"))
        assert (bad.status, bad.attempts, bad.last_error) == ("pending", 1, "UnknownTimerKind")
        assert bad.run_at == esc.clock() + timedelta(seconds=60)
        [good] = await esc.rows(select(timers).where(timers.c.referral_id == ev.referral_id,
                                                     timers.c.kind == "ack_reminder", timers.c.seq == 1))
        assert good.status == "fired"
        assert await esc.fire(server) == 0  # not before its back-off
        esc.clock.advance(timedelta(seconds=60))
        await esc.fire(server)
        esc.clock.advance(timedelta(seconds=120))
        await esc.fire(server)
        [bad] = await esc.rows(select(timers).where(timers.c.timer_key == "bad:1"))
        assert (bad.status, bad.attempts) == ("failed", 3)
        assert _failures("true") == before + 1
        outcomes = [r.outcome for r in await esc.rows(
            select(audit.c.outcome).where(audit.c.action.in_(["timer.retry", "timer.failed"])).order_by(audit.c.seq))]
        assert outcomes == ["retry", "retry", "failed"]
        esc.clock.advance(timedelta(days=1))
        await esc.fire(server)
        [bad] = await esc.rows(select(timers).where(timers.c.timer_key == "bad:1"))
        assert (bad.status, bad.attempts) == ("failed", 3)  # kept, visible, not retried forever
