"""Delivering one notification on one channel: claim, send, record (the lifecycle's I/O).
A status callback (DESIGN §3.6) is delivered the same way, on the `webhook` channel with
the delivery key `webhook:<subscription>`; its audit actions are `callback_sent/_failed`.

`_claim` commits `sending` (one more attempt) before the channel is called; `_record`
commits the outcome after it, with its event, retry copy, alert and audit entry in the
same transaction (through the outbox). A crash between the two is the only window in
which a message can go out twice. Duplicates of one delivery in this process wait on a
per-delivery lock; a `sending` row left by another process is taken over only once its
lease has run out (that process died mid-send, or it has finished by then).

Every transaction here goes through one group commit (`shared.storage.group`): the claims
and outcomes of deliveries running at the same time share a transaction, with their audit
entries and outbox rows written once per group. Each caller still waits for the commit that
holds its own write before it sends (a claim) or moves on (an outcome), so the window above
is unchanged. The functions run in a group only touch the database (and a deferral's place
in its pacing line), since a group that fails is run again one by one; metrics, logs and
the relay's nudge come after, once.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notifier.adapters import effects, repository as repo, tables
from services.notifier.adapters.rendering import Rendered
from services.notifier.context import Context
from services.notifier.domain import recipients
from services.notifier.domain.callbacks import CHANNEL
from services.notifier.domain.lifecycle import FINAL_STATUS, Outcome, SendResult, Status, is_final, may_attempt
from services.notifier.domain.recipients import FALLBACK, Target
from services.notifier.metrics import CALLBACKS, DEFERRED, NOTIFICATIONS
from shared import bus
from shared.logging import get_logger, sensitive_scope
from shared.messages import StatusCallback
from shared.storage.group import GroupCommit, writes_batched

log = get_logger(__name__)
T = TypeVar("T")
BATCHED_WRITES = writes_batched(tables.audit, tables.outbox)  # a group's audit entries and outbox rows
Job = effects.Job  # what is delivered: a request, or a status callback (the same lifecycle)


def _count(target: Target, status: str) -> None:
    NOTIFICATIONS.labels(channel=target.channel, status=status).inc()
    if target.channel == CHANNEL:  # its address is the subscription id
        CALLBACKS.labels(subscription=target.address, outcome=status).inc()


def _meta(req: Job) -> dict[str, Any]:
    return {"referral_id": req.referral_id[:64], "reference": req.reference[:40], "template": req.template[:40],
            "audience": req.audience[:60], "priority": req.priority}


@dataclass
class _Lock:
    """One delivery's lock in this process, and how many copies hold or wait for it."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class Delivery:
    """Sends with the Context's channels and records in its database; it reads the Context's
    settings (policy, lease, `defer_after_s`) at each use. Holds the per-delivery locks."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._locks: dict[tuple[str, str], _Lock] = {}
        self._group: GroupCommit | None = None

    async def commit(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """`fn(conn)` committed, grouped with the other deliveries' reads and writes of the
        moment: one connection at a time whatever the consumer's prefetch, so the pool never
        opens (and closes again) overflow connections under load."""
        if self._group is None or self._group.engine is not self.ctx.engine:
            self._group = GroupCommit(self.ctx.engine, "notifier.deliveries", around=BATCHED_WRITES, workers=2)
        return await self._group.run(fn)

    async def deliver(self, req: Job, target: Target, attempt: int, rendered: Rendered | StatusCallback,
                      available: set[str]) -> None:
        key = (req.notification_id, target.key)
        entry = self._locks.setdefault(key, _Lock())
        entry.users += 1
        try:
            async with entry.lock:  # duplicates in this process wait for the first, then find it done
                if self._paced_out(req, target) and await self._defer(req, target, attempt):
                    return
                row = await self._claim(req, target, attempt)
                if row is None:
                    return
                with sensitive_scope([target.address]):
                    result = await self.ctx.channels[target.channel].send(
                        rendered, target.address, effects.message_id("send", req.notification_id, target.key))
                await self._record(req, target, row, result, available)
        finally:
            entry.users -= 1
            if entry.users == 0:
                self._locks.pop(key, None)

    def _paced_out(self, req: Job, target: Target) -> bool:
        """A routine message whose channel would make it wait longer than `defer_after_s` for
        a pacing slot (a burst of Teams cards: 4 a second per webhook). Waiting here would
        hold one of the consumer's prefetch slots, so the emails queued behind it would wait
        too. Urgent messages always wait here: they go ahead of the deferred ones."""
        if req.priority == "urgent":
            return False
        backlog = getattr(self.ctx.channels[target.channel], "backlog_s", None)
        return backlog is not None and backlog(target.address) > self.ctx.defer_after_s

    async def _defer(self, req: Job, target: Target, attempt: int) -> bool:
        """Put this delivery back through a delay queue without trying it (the shortest, or a
        longer one far back in a big burst): no attempt is counted and its retry clock does
        not start. False if it must not wait (a `sending` row: the at-least-once path) or
        must not send at all (then `_claim` finds that too and skips it)."""
        now = self.ctx.clock()

        async def defer(conn: AsyncConnection) -> int | None:
            row = await repo.ensure_delivery(conn, notification_id=req.notification_id, channel=target.key,
                                             meta=_meta(req), now=now)
            if row.status == Status.SENDING or not may_attempt(row.status, row.attempts, attempt):
                return None
            delay = self.ctx.policy.deferral_delay(self.ctx.channels[target.channel].defer(target.address))
            await effects.retry_copy(conn, req, target.key, attempt, bus.retry_queue_name(delay), now, deferred=True)
            return delay

        if (delay := await self.commit(defer)) is None:
            return False
        DEFERRED.labels(channel=target.channel).inc()
        log.info("notification_deferred", notification_id=req.notification_id, channel=target.key,
                 attempt=attempt, delay_s=delay)
        self.ctx.notify()
        return True

    async def _claim(self, req: Job, target: Target, attempt: int) -> Row[Any] | None:
        """Commit `sending` (one more attempt) before the send; None if this copy must not send.

        A row left in `sending` by another process is either still being sent there or
        that process died mid-send: wait until its lease has run out, then take it over.
        """
        while True:
            now = self.ctx.clock()

            async def take(conn: AsyncConnection) -> tuple[Row[Any] | None, float, str]:
                """(the claimed row, 0, its status before), or (None, seconds to wait for
                another's lease, its status), or (None, -1, its status) when it must not be
                tried; a lost compare-and-set is (None, 0, ...): look again at once."""
                row = await repo.ensure_delivery(conn, notification_id=req.notification_id, channel=target.key,
                                                 meta=_meta(req), now=now)
                if not may_attempt(row.status, row.attempts, attempt):
                    return None, -1.0, row.status
                lease_left = row.updated_at + self.ctx.sending_lease - now
                wait = lease_left.total_seconds() if row.status == Status.SENDING else 0
                if wait > 0:
                    return None, wait, row.status
                return await repo.transition(conn, row, Status.SENDING, now), 0.0, row.status

            claimed, wait, status = await self.commit(take)
            if claimed is not None:
                return claimed
            if wait < 0:
                log.info("notification_skipped", notification_id=req.notification_id, channel=target.key,
                         status=status, attempt=attempt)
                return None
            if wait == 0:
                continue  # someone else moved it meanwhile: look again
            log.info("notification_in_flight_elsewhere", notification_id=req.notification_id, channel=target.key,
                     wait_s=round(wait, 1))
            await asyncio.sleep(min(wait, 5.0))

    async def _record(self, req: Job, target: Target, row: Row[Any], result: SendResult,
                      available: set[str]) -> None:
        now = self.ctx.clock()
        urgent = req.priority == "urgent"

        async def outcome(conn: AsyncConnection) -> tuple[Status, str | None, int | None]:
            """(status, reason, retry delay in s or None) as committed."""
            if result.outcome == Outcome.TEMPORARY:
                delay = self.ctx.policy.next_delay(attempts=row.attempts, first_attempt_at=row.first_attempt_at,
                                                   now=now, urgent=urgent, retry_after_s=result.retry_after_s)
                if delay is not None:
                    await repo.transition(conn, row, Status.TEMPORARY_FAILURE, now, reason=result.reason,
                                          next_attempt_at=now + timedelta(seconds=delay))
                    await effects.retry_copy(conn, req, target.key, row.attempts,
                                             bus.retry_queue_name(delay), now)
                    return Status.TEMPORARY_FAILURE, result.reason, delay
                status, reason = Status.PERMANENT_FAILURE, f"gave_up:{result.reason}"
            else:
                status, reason = FINAL_STATUS[result.outcome], result.reason
            await repo.transition(conn, row, status, now, reason=reason)
            await effects.outcome_event(conn, req, target.key, status.value, reason, now)
            kind = "callback" if target.channel == CHANNEL else "notification"  # the audit's action
            if status == Status.DELIVERED:
                await effects.audit(conn, req, f"{kind}_sent", "delivered", now, channel=target.key,
                                    attempts=row.attempts)
            else:
                fallback = await self._fallback(conn, req, target, available, now) if urgent else None
                await effects.ops_alert(conn, req, target.key, status.value, reason, now, fallback=fallback)
                await effects.audit(conn, req, f"{kind}_failed", status.value, now, channel=target.key,
                                    reason=reason, attempts=row.attempts, fallback=fallback)
            return status, reason, None

        status, reason, delay = await self.commit(outcome)
        _count(target, status.value)
        if delay is not None:
            log.info("notification_retry_scheduled", notification_id=req.notification_id,
                     channel=target.key, reason=reason, delay_s=delay, attempts=row.attempts)
        else:
            log.info("notification_outcome", notification_id=req.notification_id, channel=target.key,
                     status=status.value, reason=reason)
        self.ctx.notify()

    async def _fallback(self, conn: AsyncConnection, req: Job, target: Target,
                        available: set[str], now: datetime) -> str | None:
        """Urgent: a final failure on one channel moves the message to the other one
        (Teams → email, email → Teams) unless that one already delivered or is still trying."""
        if target.key.endswith(FALLBACK) or "." in target.key:
            return None
        other = recipients.fallback_channel(target.channel, available)
        if other is None:
            return None
        rows = {r.channel: r for r in await repo.list_deliveries(conn, req.notification_id)}
        sibling = rows.get(other)
        if sibling is not None and (sibling.status == Status.DELIVERED or not is_final(sibling.status)):
            return None
        key = other + FALLBACK
        row = await repo.ensure_delivery(conn, notification_id=req.notification_id, channel=key,
                                         meta=_meta(req), now=now)
        if row.status == Status.CREATED and row.attempts == 0:
            await effects.retry_copy(conn, req, key, 0, bus.retry_queue_name(self.ctx.policy.delays_s[0]), now)
        return key

    async def finish(self, req: Job, key: str, channel: str, status: Status,
                     reason: str | None) -> None:
        """A final state reached without calling a channel (refused, technical, no channel)."""
        now = self.ctx.clock()

        async def final(conn: AsyncConnection) -> bool:
            row = await repo.ensure_delivery(conn, notification_id=req.notification_id, channel=key,
                                             meta=_meta(req), now=now)
            if is_final(row.status) or row.status == Status.SENDING:
                return False
            if await repo.transition(conn, row, status, now, reason=reason) is None:
                return False
            await effects.outcome_event(conn, req, key, status.value, reason, now)
            if status == Status.REFUSED:
                await effects.audit(conn, req, "notification_refused", "refused", now, reason=reason)
            else:
                await effects.ops_alert(conn, req, key, status.value, reason, now, fallback=None)
                await effects.audit(conn, req, "notification_failed", status.value, now, channel=key, reason=reason)
            return True

        if not await self.commit(final):
            return
        NOTIFICATIONS.labels(channel=channel, status=status.value).inc()
        log.info("notification_outcome", notification_id=req.notification_id, channel=key, status=status.value,
                 reason=reason)
        self.ctx.notify()
