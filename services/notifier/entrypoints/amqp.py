"""The notifier's AMQP entrypoint: consume `notifier.requests` and dispatch each message.

`DISPATCH` is the queue's table (`shared.bus.dispatch`): message model -> handler, the
routing keys and their one producer each from `shared.messages.CATALOGUE`: intake's hold
events, the events of the status-callback list (DESIGN §3.6: intake's referral events,
escalation's deadline and alert events), escalation's requests and the notifier's own
retry and fallback copies (`notifier.retry.<s>s`, returning from the delay queues). The consumer lets through the
producers the table names; `dispatch` checks each routing key's own producer, validates
the body and calls the handler. Delay queues other than the production `RETRY_DELAYS_S`
(shorter ones, for tests) are declared here on start.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aio_pika.abc import AbstractRobustConnection

from services.notifier import callbacks, handlers
from services.notifier.context import Context
from services.notifier.delivery import Delivery
from shared import bus
from shared.bus.dispatch import Dispatcher
from shared.bus.topology import retry_queue_arguments
from shared.messages import (
    AlertAcknowledged, AlertRaised, ChecksCompleted, DeadlineBreached, DeadlineReminder, FeedbackReleased, Message,
    NotificationRequested, ReferralAcknowledged, ReferralDecided, ReferralReceived, RetryCopy, StatusCallback,
    StrategyDiscussionRecorded, TrackClosed,
)
from shared.runtime import Runtime


# A guardians' feedback request that overtook intake's release event is handed back this
# many times (the consumer's back-off: 1 + 2 + 4 s by default) before its refusal is final.
HOLD_WAITS = 3


def _event(hold: Callable[[Any, Context], Awaitable[None]] | None = None) -> NotifierHandler:
    """An intake or escalation event: the hold record first (for the events that change it),
    then its status callbacks (DESIGN §3.6; nothing when no subscription wants it)."""
    async def handle(ev: Message, ctx: Context, delivery: Delivery, msg: bus.BusMessage) -> None:
        if hold is not None:
            await hold(ev, ctx)
        await callbacks.on_event(ev, msg, ctx, delivery)
    return handle


async def _requested(req: NotificationRequested, ctx: Context, delivery: Delivery, msg: bus.BusMessage) -> None:
    await handlers.on_request(req, ctx, delivery, attempt=0, only=None, may_wait=msg.delivery_count < HOLD_WAITS)


async def _retried(copy: RetryCopy, ctx: Context, delivery: Delivery, _msg: bus.BusMessage) -> None:
    if isinstance(copy.request, StatusCallback):
        return await callbacks.on_retry(copy.request, ctx, delivery, attempt=copy.attempt)
    await handlers.on_request(copy.request, ctx, delivery, attempt=copy.attempt, only=copy.channel)


NotifierHandler = Callable[..., Awaitable[None]]  # (message of the model, ctx, delivery, the delivery's bus message)
DISPATCH: Dispatcher[NotifierHandler] = Dispatcher({
    ReferralReceived: _event(handlers.on_received),
    ChecksCompleted: _event(handlers.on_checks_completed),
    StrategyDiscussionRecorded: _event(handlers.on_strategy_discussion),
    FeedbackReleased: _event(handlers.on_feedback_released),
    **{model: _event() for model in (ReferralAcknowledged, ReferralDecided, TrackClosed, DeadlineReminder,
                                     DeadlineBreached, AlertRaised, AlertAcknowledged)},
    NotificationRequested: _requested,
    RetryCopy: _retried,
}, unknown="unexpected_routing_key")


async def dispatch(msg: bus.BusMessage, ctx: Context, delivery: Delivery) -> None:
    """Routing key → its producer, its model, its handler."""
    handler, parsed = DISPATCH.parse(msg)
    await handler(parsed, ctx, delivery, msg)


# --- the consumer ----------------------------------------------------------------------
async def declare_retry_queues(connection: AbstractRobustConnection, delays_s: Iterable[int]) -> None:
    extra = [d for d in delays_s if d not in bus.RETRY_DELAYS_S]
    if not extra:
        return
    async with connection.channel() as channel:
        for delay in extra:
            await channel.declare_queue(bus.retry_queue_name(delay), durable=True,
                                        arguments=retry_queue_arguments(delay))


def request_consumer(runtime: Runtime, handler: bus.Handler, *, prefetch: int = 16) -> bus.Consumer:
    return bus.Consumer(
        runtime.connection, bus.queue_spec(bus.NOTIFIER_REQUESTS), handler, publisher=runtime.publisher,
        verify_keys=runtime.verify_keys, allowed_producers=DISPATCH.producers, prefetch=prefetch,
    )
