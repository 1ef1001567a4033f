"""The notifier's message handlers: holds from intake's events, requests from escalation.

`on_received` / `on_checks_completed` / `on_strategy_discussion` / `on_feedback_released`
keep the notifier's own hold record (intake's `referral.received` / `.checks_completed` /
`.strategy_discussion_recorded` / `.feedback_released`); `on_request` plans a
`notification.requested` (or a retry or fallback copy of one, for one delivery key):
guard → render → recipients, then hands each target to `Delivery`, which commits the
state row as `sending` before the channel is called and the outcome after (see
domain/lifecycle.py for the one at-least-once window). Which message reaches which
handler is `entrypoints/amqp.py:dispatch`.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notifier.adapters import effects, repository as repo
from services.notifier.adapters.rendering import RenderError
from services.notifier.context import Context
from services.notifier.delivery import Delivery
from services.notifier.domain import recipients
from services.notifier.domain.guard import HoldRecord, decide
from services.notifier.domain.lifecycle import Status, is_final
from services.notifier.domain.recipients import FALLBACK, NO_TARGET, ResolutionError, Target
from shared.messages import (
    ChecksCompleted, FeedbackReleased, NotificationRequested, ReferralEvent, ReferralReceived, StrategyDiscussionRecorded,
)


class HoldRecordBehind(Exception):
    """A guardians' feedback request reached the notifier before intake's release event."""


async def on_received(ev: ReferralReceived, ctx: Context) -> None:
    now = ctx.clock()
    rec = HoldRecord.on_received(ev.referral_id, no_further_sharing=ev.holding.no_further_sharing,
                                 no_family_contact=ev.holding.no_family_contact)
    async with ctx.engine.begin() as conn:
        if await repo.insert_hold_if_absent(conn, rec, ev.reference, now):
            await effects.hold_recorded(conn, rec, ev.reference, now)


async def on_feedback_released(ev: FeedbackReleased, ctx: Context) -> None:
    await _update_hold(ev, ctx, lambda rec: rec.on_feedback_released(
        family_contact_lifted=ev.family_contact_lifted, audiences=ev.audiences))


async def on_checks_completed(ev: ChecksCompleted, ctx: Context) -> None:
    await _update_hold(ev, ctx, HoldRecord.on_checks_completed)


async def on_strategy_discussion(ev: StrategyDiscussionRecorded, ctx: Context) -> None:
    await _update_hold(ev, ctx, lambda rec: rec.on_strategy_discussion(family_contact_lifted=ev.family_contact_lifted))


async def _update_hold(ev: ReferralEvent, ctx: Context, change: Callable[[HoldRecord], HoldRecord]) -> None:
    now = ctx.clock()
    async with ctx.engine.begin() as conn:
        old = await repo.lock_hold(conn, ev.referral_id, ev.reference, now)
        # Seen before its receipt: every other hold is assumed until the receipt says otherwise.
        new = change(old or HoldRecord(ev.referral_id, True, True))
        if new != old:
            await repo.save_hold(conn, new, ev.reference, now)
            await effects.hold_updated(conn, new, ev.reference, now)


async def on_request(req: NotificationRequested, ctx: Context, delivery: Delivery, *,
                     attempt: int, only: str | None, may_wait: bool = False) -> None:
    """`attempt` 0 and `only` None for the request itself; a retry or fallback copy names
    its attempt and its one delivery key. `may_wait`: a refusal the guard says may be
    premature is handed back to the queue instead of made final."""
    async def read(conn: AsyncConnection) -> tuple[HoldRecord | None, Row[Any] | None]:
        return (await repo.load_hold(conn, req.referral_id),
                await repo.find_delivery(conn, req.notification_id, NO_TARGET))

    record, done = await delivery.commit(read)
    if done is not None and is_final(done.status):
        return  # refused or failed before any channel: final for the whole notification
    verdict = decide(audience=req.audience, template=req.template, record=record,
                     request_no_family_contact=req.holding.no_family_contact,
                     request_no_further_sharing=req.holding.no_further_sharing)
    if verdict.wait and may_wait:
        raise HoldRecordBehind  # not acked: tried again after the consumer's back-off
    if not verdict.allowed:
        return await delivery.finish(req, only or NO_TARGET, NO_TARGET, Status.REFUSED, verdict.reason)
    try:
        kind = recipients.audience_kind(req.audience)
        if not ctx.renderer.supports(req.template, kind):
            raise ResolutionError("technical", "unknown_template")
        rendered = ctx.renderer.render(template=req.template, kind=kind, reference=req.reference,
                                       times=req.times, minimal=verdict.minimal, urgent=req.priority == "urgent")
        enabled = set(ctx.channels)
        targets = (recipients.route_targets(ctx.route(req), enabled) if kind == "team"
                   else recipients.contact_targets(req.audience, ctx.open_contacts(req), enabled))
    except (ResolutionError, RenderError) as exc:
        status = Status.PERMANENT_FAILURE if getattr(exc, "kind", "") == "permanent" else Status.TECHNICAL_FAILURE
        return await delivery.finish(req, only or NO_TARGET, NO_TARGET, status, exc.reason)
    available = {t.channel for t in targets}
    if only is not None:
        base = only.removesuffix(FALLBACK)
        targets = [Target(only, t.channel, t.address, t.audience_kind) for t in targets if t.key == base]
        if not targets:
            return await delivery.finish(req, only, base, Status.TECHNICAL_FAILURE, "target_gone")
    await asyncio.gather(*(delivery.deliver(req, t, attempt, rendered, available) for t in targets))
