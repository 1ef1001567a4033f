"""Two real `safeguard serve escalation` processes on one PostgreSQL database and one
RabbitMQ vhost: 1,000 timers fall due, one process is killed with SIGKILL mid-firing and
restarted, and every timer still fires exactly once (database, outbox and bus agree).
Timers are due a few seconds ahead on the system clock: no clock is injected."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from sqlalchemy import func, select

from safeguard import keys
from services.escalation.adapters import repository as repo
from services.escalation.adapters.tables import audit, outbox, referrals, timers
from services.escalation.domain.ladder import CHECKS_REMINDER, TimerSpec
from shared import bus
from shared.storage import create_engine
from shared.storage.migrate import upgrade
from tests.factories import escalation_referrals
from tests.intake.test_cli_client import free_port, wait_ready

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


async def fired_metric(session: aiohttp.ClientSession, port: int) -> float:
    async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith(FIRED + " "):
                return float(line.split()[-1])
    return 0.0


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
    procs: dict[str, asyncio.subprocess.Process] = {}
    env = {**os.environ, "SAFEGUARD_CONFIG": str(config), "SAFEGUARD_DATA_DIR": str(tmp_path),
           "SAFEGUARD_AMQP_URL": amqp_url, "SAFEGUARD_DATABASE_URL": pg_url,
           "SAFEGUARD_CONSOLE_TOKENS": "dev-force=console-code-for-dev-force-0001"}

    async def launch(name: str, port: int) -> None:
        with open(tmp_path / f"{name}-{port}.log", "wb") as log:  # one log per launch
            procs[name] = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "safeguard", "serve", "escalation",
                env={**env, "SAFEGUARD_ESCALATION_PORT": str(port)}, stdout=log, stderr=log)

    try:
        await upgrade(engine, "escalation")
        channel = await connection.channel()
        await bus.declare_topology(channel, ["dev-force"])
        tap = await channel.declare_queue("test.tap", durable=True)
        for key in ("deadline.reminder", "notification.requested"):
            await tap.bind(bus.EVENTS, key)
        first_due = datetime.now(UTC) + timedelta(seconds=LEAD_S)
        await load(engine, first_due)
        ports = {"a": free_port(), "b": free_port()}
        await asyncio.gather(launch("a", ports["a"]), launch("b", ports["b"]))
        fired_q = select(func.count()).select_from(timers).where(timers.c.status == "fired")
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(wait_ready(f"http://127.0.0.1:{p}/readyz") for p in ports.values()))
            async with asyncio.timeout(LEAD_S + SPREAD_S + 60):  # kill `a` once it has fired some
                while (await count(engine, fired_q) < TOTAL // 5
                       or await fired_metric(session, ports["a"]) == 0):
                    await asyncio.sleep(0.05)
            procs["a"].send_signal(signal.SIGKILL)
            assert await procs["a"].wait() == -signal.SIGKILL
            at_kill = await count(engine, fired_q)
            assert at_kill < TOTAL  # killed mid-firing: timers were still pending
            ports["a"] = free_port()
            await launch("a", ports["a"])
            await wait_ready(f"http://127.0.0.1:{ports['a']}/readyz")
            async with asyncio.timeout(120):  # generous: a loaded 2-core machine fires ~30-150 timers/s
                while await count(engine, fired_q) < TOTAL:
                    await asyncio.sleep(0.1)
                unsent = select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
                while await count(engine, unsent):
                    await asyncio.sleep(0.1)
            assert await fired_metric(session, ports["b"]) > 0

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
        for proc in procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await connection.close()
        await engine.dispose()
    assert procs["b"].returncode == 0 and procs["a"].returncode == 0  # both stop cleanly on SIGTERM
