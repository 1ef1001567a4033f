"""What the cluster run looks at: the three services' own tables, the mail sink and the
control-room queue. Read-only, from outside the services (plain SQL and AMQP)."""
from __future__ import annotations

import email
import email.policy
from collections import Counter
from dataclasses import dataclass

import aio_pika
import sqlalchemy as sa

from services.escalation.adapters import tables as esc
from services.intake.adapters import tables as intake
from services.notifier.adapters import tables as notifier
from shared.storage import create_engine

SENT_STATUSES = ("delivered",)


@dataclass
class Counts:
    intake_referrals: int = 0
    escalation_received: int = 0
    timers_fired: int = 0
    timers_failed: int = 0
    timers_pending_reescalate: int = 0
    alerts_escalated_audit: int = 0
    received_duplicates_audit: int = 0
    deliveries: int = 0
    delivered: int = 0
    outbox_unsent: int = 0


def _count(table, *where) -> sa.Select:
    return sa.select(sa.func.count()).select_from(table).where(*where)


class Probe:
    """Small pools and one query at a time: the services need the PostgreSQL connections."""

    def __init__(self, db_urls: dict[str, str]) -> None:
        self.engines = {svc: create_engine(url, pool_size=1, max_overflow=0) for svc, url in db_urls.items()}

    async def _scalars(self, service: str, *queries) -> list[int]:
        async with self.engines[service].connect() as conn:
            return [int(await conn.scalar(q) or 0) for q in queries]

    async def counts(self) -> Counts:
        t, a, d = esc.timers.c, esc.audit.c, notifier.deliveries.c
        reesc = t.kind == "alert_reescalate"
        unsent = lambda table: _count(table, table.c.sent_at.is_(None))  # noqa: E731
        i_ref, i_out = await self._scalars("intake", _count(intake.referrals), unsent(intake.outbox))
        e = await self._scalars(
            "escalation", _count(esc.referrals, esc.referrals.c.received_at.is_not(None)),
            _count(esc.timers, reesc, t.status == "fired"), _count(esc.timers, t.status == "failed"),
            _count(esc.timers, reesc, t.status == "pending"), _count(esc.audit, a.action == "alert.escalated"),
            _count(esc.audit, a.action == "referral.received", a.outcome == "duplicate"), unsent(esc.outbox))
        n = await self._scalars("notifier", _count(notifier.deliveries),
                                _count(notifier.deliveries, d.status.in_(SENT_STATUSES)), unsent(notifier.outbox))
        return Counts(i_ref, *e[:6], n[0], n[1], outbox_unsent=i_out + e[6] + n[2])

    async def distinct_client_references(self) -> int:
        c = intake.referrals.c
        (n,) = await self._scalars("intake", sa.select(sa.func.count(sa.distinct(c.client_reference))))
        return n

    async def close(self) -> None:
        for engine in self.engines.values():
            await engine.dispose()


def message_ids(raw_mails: list[str]) -> Counter:
    """Message-ID of every mail the sink received, with how often each came."""
    return Counter(str(email.message_from_string(raw, policy=email.policy.default)["Message-ID"]) for raw in raw_mails)


async def drain_queue(url: str, queue: str) -> Counter:
    """Take every message now in `queue`; count each message id. Call it once the
    publishers are done (every outbox row sent)."""
    seen: Counter = Counter()
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        q = await channel.declare_queue(queue, passive=True)
        while (message := await q.get(no_ack=True, fail=False)) is not None:
            seen[message.message_id] += 1
    finally:
        await connection.close()
    return seen
