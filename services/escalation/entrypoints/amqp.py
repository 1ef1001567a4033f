"""The consumer of `escalation.events`: referral lifecycle events from intake.

Each message is validated against its schema (a bad body is parked with reason
`schema_invalid`, an unknown routing key with `unknown_event`), then applied once by
message id with `process_once`: the effect, its outbox rows and audit entries commit
with the processed-id claim. After a commit the outbox relay and the timer wake-up
are nudged.
"""
from __future__ import annotations

from datetime import datetime

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.escalation.adapters import repository as repo
from services.escalation.adapters.tables import processed
from services.escalation.effects import Context, batched_writes
from services.escalation.handlers import EVENT_HANDLERS
from services.escalation.scheduler import TimerService
from shared import bus
from shared.logging import bound_contextvars, get_logger
from shared.messages import ReferralEvent
from shared.relay import OutboxRelay
from shared.storage import process_once

log = get_logger(__name__)
CONSUMER = "escalation.events"


def _naive_times(ev: ReferralEvent) -> bool:
    return any(isinstance(v, datetime) and v.utcoffset() is None for v in ev.__dict__.values())


def make_handler(engine: AsyncEngine, ctx: Context, timers: TimerService, relay: OutboxRelay) -> bus.Handler:
    async def handle(message: bus.BusMessage) -> None:
        route = EVENT_HANDLERS.get(message.routing_key)
        if route is None:
            raise bus.Reject("unknown_event")
        if not message.message_id:
            raise bus.Reject("missing_message_id")
        model, handler = route
        try:
            event = model.model_validate_json(message.body)
        except ValidationError:
            raise bus.Reject("schema_invalid") from None
        if _naive_times(event):
            raise bus.Reject("schema_invalid")
        now = ctx.clock.now()

        async def effect(conn) -> None:
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


def make_consumer(runtime, ctx: Context, timers: TimerService) -> bus.Consumer:
    return bus.Consumer(
        runtime.connection, bus.queue_spec(bus.ESCALATION_EVENTS),
        make_handler(runtime.engine, ctx, timers, runtime.relay),
        publisher=runtime.publisher, verify_keys=runtime.verify_keys, allowed_producers={"intake"},
    )
