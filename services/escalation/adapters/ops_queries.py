"""Read-only counts for the ops dashboard: queues on the broker, escalation's tables.

Everything here returns numbers keyed by queue names, forces, levels and timer kinds —
never a reference, a name or any content. Queue counts come from passive declares
(RabbitMQ's management API is not enabled on Debian's broker by default): the
declare-ok frame carries the ready-message and consumer counts, and a passive declare
never creates or changes a queue.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection
from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.escalation.adapters.tables import alerts, outbox, referrals, timers
from shared.storage import outbox as outbox_store


@dataclass(frozen=True)
class QueueCount:
    name: str
    messages: int | None  # ready messages; None when the queue is not declared
    consumers: int | None


async def queue_counts(connection: AbstractConnection, names: list[str]) -> list[QueueCount]:
    """Passive-declare each queue; a missing queue closes the channel, so reopen one."""
    out: list[QueueCount] = []
    channel: AbstractChannel | None = None
    try:
        for name in names:
            if channel is None:
                channel = await connection.channel(publisher_confirms=False)
            try:
                queue = await channel.declare_queue(name, passive=True, robust=False)
            except aiormq.exceptions.ChannelNotFoundEntity:
                out.append(QueueCount(name, None, None))
                channel = None  # the broker closed it
                continue
            result = queue.declaration_result
            out.append(QueueCount(name, int(result.message_count or 0), int(result.consumer_count or 0)))
    finally:
        if channel is not None and not channel.is_closed:
            await channel.close()
    return out


async def outbox_lag(conn: AsyncConnection, now: datetime) -> tuple[int, float | None]:
    """(unsent outbox rows, age in seconds of the oldest)."""
    return await outbox_store.backlog(conn, outbox, now)


async def open_alerts(conn: AsyncConnection) -> list[tuple[str, str, int, int]]:
    """(force, level, level index, open alerts), by force then level."""
    query = (select(alerts.c.force, alerts.c.level, alerts.c.level_index, func.count())
             .where(alerts.c.status == "open")
             .group_by(alerts.c.force, alerts.c.level, alerts.c.level_index)
             .order_by(alerts.c.force, alerts.c.level_index))
    return [(r[0], r[1], int(r[2]), int(r[3])) for r in (await conn.execute(query)).all()]


async def _count(conn: AsyncConnection, *where) -> int:
    return int(await conn.scalar(select(func.count()).select_from(referrals).where(and_(*where))) or 0)


async def deadlines(conn: AsyncConnection, now: datetime, end_of_day: datetime) -> dict[str, dict[str, int]]:
    """Unmet deadlines of open referrals per clock: due later today, and already passed.

    The acknowledge clock stops at acknowledgement, the checks clock at a CTP outcome,
    both at closure."""
    clocks = {"acknowledge": (referrals.c.acknowledge_by, referrals.c.acknowledged_at),
              "checks": (referrals.c.checks_due_by, referrals.c.checks_completed_at)}
    out = {}
    for clock, (due, met) in clocks.items():
        running = (due.is_not(None), met.is_(None), referrals.c.closed_at.is_(None))
        out[clock] = {"due_today": await _count(conn, *running, due >= now, due < end_of_day),
                      "breached": await _count(conn, *running, due < now)}
    return out


async def timer_counts(conn: AsyncConnection, now: datetime) -> dict[str, dict[str, int]]:
    """Per timer kind: pending, of which overdue (should have fired), and failed."""
    overdue = func.sum(case((timers.c.run_at <= now, 1), else_=0))
    query = (select(timers.c.kind, timers.c.status, func.count(), overdue)
             .where(timers.c.status.in_(("pending", "failed")))
             .group_by(timers.c.kind, timers.c.status))
    out: dict[str, dict[str, int]] = {}
    for kind, status, count, late in (await conn.execute(query)).all():
        row = out.setdefault(kind, {"pending": 0, "overdue": 0, "failed": 0})
        if status == "pending":
            row["pending"], row["overdue"] = int(count), int(late or 0)
        else:
            row["failed"] = int(count)
    return out

