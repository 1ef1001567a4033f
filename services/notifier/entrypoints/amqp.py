"""The notifier's AMQP entrypoint: consume `notifier.requests` and dispatch each message.

`DISPATCH` is the queue's table (`shared.bus.dispatch`): message model -> handler, the
routing keys and their one producer each from `shared.messages.CATALOGUE`: intake's hold
events, escalation's requests and the notifier's own retry and fallback copies
(`notifier.retry.<s>s`, returning from the delay queues). The consumer lets through the
producers the table names; `dispatch` checks each routing key's own producer, validates
the body and calls the handler. Delay queues other than the production `RETRY_DELAYS_S`
(shorter ones, for tests) are declared here on start.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from aio_pika.abc import AbstractRobustConnection

from services.notifier import handlers
from services.notifier.context import Context
from services.notifier.delivery import Delivery
from shared import bus
from shared.bus.dispatch import Dispatcher
from shared.bus.topology import retry_queue_arguments
from shared.messages import (
    ChecksCompleted, FeedbackReleased, NotificationRequested, ReferralReceived, RetryCopy, StrategyDiscussionRecorded,
)
from shared.runtime import Runtime


# A guardians' feedback request that overtook intake's release event is handed back this
# many times (the consumer's back-off: 1 + 2 + 4 s by default) before its refusal is final.
HOLD_WAITS = 3


async def _received(ev: ReferralReceived, ctx: Context, _delivery: Delivery, _msg: bus.BusMessage) -> None:
    await handlers.on_received(ev, ctx)


async def _checks_completed(ev: ChecksCompleted, ctx: Context, _delivery: Delivery, _msg: bus.BusMessage) -> None:
    await handlers.on_checks_completed(ev, ctx)


async def _strategy_discussion(ev: StrategyDiscussionRecorded, ctx: Context, _delivery: Delivery,
                               _msg: bus.BusMessage) -> None:
    await handlers.on_strategy_discussion(ev, ctx)


async def _feedback_released(ev: FeedbackReleased, ctx: Context, _delivery: Delivery, _msg: bus.BusMessage) -> None:
    await handlers.on_feedback_released(ev, ctx)


async def _requested(req: NotificationRequested, ctx: Context, delivery: Delivery, msg: bus.BusMessage) -> None:
    await handlers.on_request(req, ctx, delivery, attempt=0, only=None, may_wait=msg.delivery_count < HOLD_WAITS)


async def _retried(copy: RetryCopy, ctx: Context, delivery: Delivery, _msg: bus.BusMessage) -> None:
    await handlers.on_request(copy.request, ctx, delivery, attempt=copy.attempt, only=copy.channel)


NotifierHandler = Callable[..., Awaitable[None]]  # (message of the model, ctx, delivery, the delivery's bus message)
DISPATCH: Dispatcher[NotifierHandler] = Dispatcher({
    ReferralReceived: _received,
    ChecksCompleted: _checks_completed,
    StrategyDiscussionRecorded: _strategy_discussion,
    FeedbackReleased: _feedback_released,
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
