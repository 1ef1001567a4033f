"""The consumer of `escalation.events`: referral lifecycle events from intake.

`DISPATCH` is the one table of what the queue carries: routing key -> (message model,
producers allowed to sign it, handler). The consumer admits a message signed by any
producer the table names (checked in `shared.bus`); today every key is intake's.
Each message is validated against its model (a bad body is parked with reason
`schema_invalid`, an unknown routing key with `unknown_event`), then applied once by
message id with `process_once`: the effect, its outbox rows and audit entries commit
with the processed-id claim. After a commit the outbox relay and the timer wake-up
are nudged.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.escalation import handlers
from services.escalation.adapters import repository as repo
from services.escalation.adapters.effects import batched_writes
from services.escalation.adapters.tables import processed
from services.escalation.context import Context
from services.escalation.entrypoints.timers import TimerService
from shared import bus
from shared.logging import bound_contextvars, get_logger
from shared.messages import (
    ChecksCompleted, FeedbackReleased, ReferralAcknowledged, ReferralClosed, ReferralDecided, ReferralEvent,
    ReferralReceived,
)
from shared.relay import OutboxRelay
from shared.runtime import Runtime
from shared.storage import process_once

log = get_logger(__name__)
CONSUMER = "escalation.events"
INTAKE = frozenset({"intake"})
EventHandler = Callable[..., Awaitable[None]]  # (conn, event of the model, ctx, now)

DISPATCH: dict[str, tuple[type[ReferralEvent], frozenset[str], EventHandler]] = {
    ReferralReceived.routing_key: (ReferralReceived, INTAKE, handlers.on_received),
    ReferralAcknowledged.routing_key: (ReferralAcknowledged, INTAKE, handlers.on_acknowledged),
    ReferralDecided.routing_key: (ReferralDecided, INTAKE, handlers.on_decided),
    ChecksCompleted.routing_key: (ChecksCompleted, INTAKE, handlers.on_checks_completed),
    FeedbackReleased.routing_key: (FeedbackReleased, INTAKE, handlers.on_feedback_released),
    ReferralClosed.routing_key: (ReferralClosed, INTAKE, handlers.on_closed),
}
PRODUCERS = frozenset[str]().union(*(producers for _, producers, _ in DISPATCH.values()))


def _naive_times(ev: ReferralEvent) -> bool:
    return any(isinstance(v, datetime) and v.utcoffset() is None for v in ev.__dict__.values())


def make_handler(engine: AsyncEngine, ctx: Context, timers: TimerService, relay: OutboxRelay) -> bus.Handler:
    async def handle(message: bus.BusMessage) -> None:
        route = DISPATCH.get(message.routing_key)
        if route is None:
            raise bus.Reject("unknown_event")
        if not message.message_id:
            raise bus.Reject("missing_message_id")
        model, _, handler = route
        try:
            event = model.model_validate_json(message.body)
        except ValidationError:
            raise bus.Reject("schema_invalid") from None
        if _naive_times(event):
            raise bus.Reject("schema_invalid")
        now = ctx.clock.now()

        async def effect(conn: AsyncConnection) -> None:
            async with batched_writes(conn):  # a receipt writes several entries and messages
                await handler(conn, event, ctx, now)

        with bound_contextvars(reference=event.reference, message_id=message.message_id), \
                repo.noting_added() as added:
            ran, _ = await process_once(engine, processed, CONSUMER, message.message_id, effect, now)
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
        publisher=runtime.publisher, verify_keys=runtime.verify_keys, allowed_producers=PRODUCERS,
    )
