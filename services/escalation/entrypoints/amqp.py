"""The consumer of `escalation.events`: referral lifecycle events from intake.

`DISPATCH` is the queue's table (`shared.bus.dispatch`): message model -> handler; the
routing key and the one producer allowed to sign each model come from
`shared.messages.CATALOGUE`. A message with an unknown routing key is parked with reason
`unknown_event`, one without an id `missing_message_id`, a bad body `schema_invalid`.
Each is then applied once by message id: the effect, its outbox rows and audit entries
commit with the processed-id claim. The consumer's concurrent deliveries share their
transactions (`shared.storage.group`: one commit, one audit insert and one outbox insert
for every event that arrived while the previous group was committing); each delivery is
acked only after the commit that holds it. After a commit the outbox relay and the timer
wake-up are nudged.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.escalation import handlers
from services.escalation.adapters import repository as repo
from services.escalation.adapters.effects import batched_writes
from services.escalation.adapters.tables import processed
from services.escalation.context import Context
from services.escalation.entrypoints.timers import TimerService
from shared import bus
from shared.bus.dispatch import Dispatcher
from shared.logging import bound_contextvars, get_logger
from shared.messages import (
    ChecksCompleted, ConcernRaised, FeedbackReleased, ReferralAcknowledged, ReferralClosed, ReferralDecided,
    ReferralReceived, StrategyDiscussionRecorded, TrackClosed,
)
from shared.relay import OutboxRelay
from shared.runtime import Runtime
from shared.storage.group import GroupCommit

log = get_logger(__name__)
CONSUMER = "escalation.events"
PREFETCH = 64
EventHandler = Callable[[AsyncConnection, Any, Context, datetime], Awaitable[None]]

DISPATCH: Dispatcher[EventHandler] = Dispatcher({
    ReferralReceived: handlers.on_received,
    ReferralAcknowledged: handlers.on_acknowledged,
    ReferralDecided: handlers.on_decided,
    StrategyDiscussionRecorded: handlers.on_strategy_discussion_recorded,
    ChecksCompleted: handlers.on_checks_completed,
    FeedbackReleased: handlers.on_feedback_released,
    TrackClosed: handlers.on_track_closed,
    ConcernRaised: handlers.on_concern_raised,
    ReferralClosed: handlers.on_closed,
}, unknown="unknown_event", require_id=True, aware_times=True)


def make_handler(engine: AsyncEngine, ctx: Context, timers: TimerService, relay: OutboxRelay) -> bus.Handler:
    group = GroupCommit(engine, CONSUMER, around=batched_writes, workers=2, max_size=32)

    async def handle(message: bus.BusMessage) -> None:
        handler, event = DISPATCH.parse(message)
        now = ctx.clock()

        async def effect(conn: AsyncConnection) -> None:
            await handler(conn, event, ctx, now)

        with bound_contextvars(reference=event.reference, message_id=message.message_id), \
                repo.noting_added() as added:
            ran, _ = await group.run_once(processed, CONSUMER, message.message_id, effect, now)
            log.info("event_applied" if ran else "event_duplicate", routing_key=message.routing_key)
        if ran:
            relay.notify()
            try:
                await timers.wake_for(added)
            except Exception as exc:  # committed already; the safety poll catches up
                log.warning("timer_reschedule_failed", error=type(exc).__name__)

    return handle


def make_consumer(runtime: Runtime, ctx: Context, timers: TimerService) -> bus.Consumer:
    return bus.Consumer(
        runtime.connection, bus.queue_spec(bus.ESCALATION_EVENTS),
        make_handler(runtime.engine, ctx, timers, runtime.relay),
        publisher=runtime.publisher, verify_keys=runtime.verify_keys, allowed_producers=DISPATCH.producers,
        prefetch=PREFETCH,
    )
