"""Two real `safeguard serve escalation` processes on one PostgreSQL database and one
RabbitMQ vhost: 1,000 timers fall due, one process is killed with SIGKILL mid-firing and
restarted, and every timer still fires exactly once (database, outbox and bus agree).
Timers are due a few seconds ahead on the system clock: no clock is injected."""
from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from sqlalchemy import func, select

from safeguard import keys
from services.escalation.adapters import repository as repo
from services.escalation.adapters.tables import audit, outbox, referrals, timers
from services.escalation.domain.ladder import CHECKS_REMINDER, TimerSpec
from shared import bus
from shared.bus.topology import AUDIT_CHECKPOINTS
from shared.storage import create_engine
from shared.storage.migrate import upgrade
from tests.factories import escalation_referrals
from tests.support.processes import ServiceProcess, free_port, stop_all

pytestmark = [pytest.mark.broker, pytest.mark.database, pytest.mark.slow]
TOTAL, REFERRALS = 1000, 100
LEAD_S, SPREAD_S = 5.0, 3.0  # first timer due LEAD_S after launch (start-up takes 2-5 s), last SPREAD_S later
FIRED = 'safeguard_escalation_timers_fired_total{kind="checks_reminder",outcome="fired"}'


async def load(engine, first_due: datetime) -> None:
    """REFERRALS referrals with TOTAL // REFERRALS timers each, added as the ladder adds them."""
    now = datetime.now(UTC)
    refs = escalation_referrals(REFERRALS, "PROC", now)
    async with engine.begin() as conn:
        await conn.execute(referrals.insert(), refs)
        for n, ref in enumerate(refs):
            specs = [TimerSpec(CHECKS_REMINDER, seq, first_due + timedelta(seconds=SPREAD_S * i / TOTAL))
                     for seq, i in enumerate(range(n, TOTAL, REFERRALS), start=1)]
            await repo.add_timers(conn, ref["referral_id"], ref["reference"], specs, now)
        assert await conn.scalar(select(func.count()).select_from(timers)) == TOTAL


async def count(engine, query) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(query))


async def drain(channel, queue: str, want: int, timeout: float = 20.0) -> list:
    """Messages from `queue` until `want` distinct message ids arrived (or nothing for 3 s)."""
    q = await channel.declare_queue(queue, passive=True)
    out, ids = [], set()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout), q.iterator(timeout=3) as it:
            async for message in it:
                await message.ack()
                out.append(message)
                ids.add(message.message_id)
                if len(ids) >= want:
                    break
    return out


async def test_two_processes_fire_1000_timers_exactly_once_across_a_kill_9_and_restart(tmp_path, amqp_url, pg_url):
    config = keys.init(tmp_path)
    engine = create_engine(pg_url)
    connection = await bus.connect(amqp_url, name="test-escalation-processes")
    env = {"SAFEGUARD_CONFIG": str(config), "SAFEGUARD_DATA_DIR": str(tmp_path),
           "SAFEGUARD_AMQP_URL": amqp_url, "SAFEGUARD_DATABASE_URL": pg_url}
    a, b = (ServiceProcess.serve("escalation", env, name=name, logs=tmp_path) for name in ("a", "b"))
    try:
        await upgrade(engine, "escalation")
        channel = await connection.channel()
        await bus.declare_topology(channel, ["dev-force"])
        tap = await channel.declare_queue("test.tap", durable=True)
        for key in ("deadline.reminder", "notification.requested"):
            await tap.bind(bus.EVENTS, key)
        first_due = datetime.now(UTC) + timedelta(seconds=LEAD_S)
        await load(engine, first_due)
        await asyncio.gather(a.start(), b.start())
        fired_q = select(func.count()).select_from(timers).where(timers.c.status == "fired")
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(a.ready(timeout=60), b.ready(timeout=60))
            async with asyncio.timeout(LEAD_S + SPREAD_S + 60):  # kill `a` once it has fired some
                while (await count(engine, fired_q) < TOTAL // 5
                       or await a.metric(session, FIRED) == 0):
                    await asyncio.sleep(0.05)
            assert await a.kill9() == -signal.SIGKILL
            at_kill = await count(engine, fired_q)
            assert at_kill < TOTAL  # killed mid-firing: timers were still pending
            a.port = free_port()  # restarted on a new port
            await a.start()
            await a.ready(timeout=60)
            async with asyncio.timeout(120):  # generous: a loaded 2-core machine fires ~30-150 timers/s
                while await count(engine, fired_q) < TOTAL:
                    await asyncio.sleep(0.1)
                unsent = select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
                while await count(engine, unsent):
                    await asyncio.sleep(0.1)
            assert await b.metric(session, FIRED) > 0

        async with engine.connect() as conn:
            states = (await conn.execute(select(timers.c.status, timers.c.attempts, timers.c.fired_at))).all()
            timer_ids = set((await conn.execute(select(timers.c.id))).scalars())
            entries = (await conn.execute(select(audit.c.detail).where(audit.c.action == "deadline.reminder"))).all()
            queued = dict((await conn.execute(select(outbox.c.routing_key, func.count())
                                              .group_by(outbox.c.routing_key))).all())
        assert len(states) == TOTAL and {(s, a) for s, a, _ in states} == {("fired", 0)}
        assert all(f is not None for _, _, f in states)
        audited = [e.detail["timer_id"] for e in entries]
        assert len(audited) == TOTAL and set(audited) == timer_ids  # each fired once, none lost
        queued.pop(AUDIT_CHECKPOINTS, None)  # the audit checkpoints' copies, at each start and stop
        assert queued == {"deadline.reminder": TOTAL, "notification.requested": TOTAL}

        messages = await drain(channel, "test.tap", 2 * TOTAL)
        by_timer: dict[int, set[str]] = {}
        notes = set()
        for m in messages:
            if m.routing_key == "deadline.reminder":
                by_timer.setdefault(int(json.loads(m.body)["timer_id"]), set()).add(m.message_id)
            else:
                notes.add(m.message_id)
        assert set(by_timer) == timer_ids and all(len(ids) == 1 for ids in by_timer.values())
        assert len(notes) == TOTAL
        await channel.close()
    finally:
        codes = await stop_all([a, b], grace=30)
        await connection.close()
        await engine.dispose()
    assert codes == {"a": 0, "b": 0}  # both stop cleanly on SIGTERM
