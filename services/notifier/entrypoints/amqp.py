"""The notifier's AMQP entrypoint: consume `notifier.requests` and dispatch each message.

The consumer lets through the producers in `ALLOWED_PRODUCERS`: escalation (requests),
intake (hold events) and the notifier itself (its retry and fallback copies returning
from the delay queues); `dispatch` then checks each routing key's own producer
(`PRODUCERS`), validates the body and calls the handler. Delay queues other than the
production `RETRY_DELAYS_S` (shorter ones, for tests) are declared here on start.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from aio_pika.abc import AbstractRobustConnection
from pydantic import BaseModel, ValidationError

from services.notifier import handlers
from services.notifier.adapters.effects import RetryCopy
from services.notifier.context import Context
from services.notifier.delivery import Delivery
from shared import bus
from shared.bus.topology import retry_queue_arguments
from shared.messages import FeedbackReleased, NotificationRequested, ReferralReceived
from shared.runtime import Runtime

M = TypeVar("M", bound=BaseModel)

# --- what the notifier consumes, from whom --------------------------------------------
RETRY_PREFIX = "notifier.retry."  # the notifier's own retry and fallback copies
PRODUCERS = {ReferralReceived.routing_key: "intake", FeedbackReleased.routing_key: "intake",
             NotificationRequested.routing_key: "escalation"}
ALLOWED_PRODUCERS = frozenset({"escalation", "intake", "notifier"})


def _parse(model: type[M], body: bytes) -> M:
    try:
        return model.model_validate_json(body)
    except ValidationError:
        raise bus.Reject("schema_invalid") from None


async def dispatch(msg: bus.BusMessage, ctx: Context, delivery: Delivery) -> None:
    """Routing key → its producer, its model, its handler."""
    key = msg.routing_key
    if key.startswith(RETRY_PREFIX):
        expected = "notifier"
    elif key in PRODUCERS:
        expected = PRODUCERS[key]
    else:
        raise bus.Reject("unexpected_routing_key")
    if msg.producer != expected:
        raise bus.Reject("producer_not_allowed_for_key")
    if key == ReferralReceived.routing_key:
        await handlers.on_received(_parse(ReferralReceived, msg.body), ctx)
    elif key == FeedbackReleased.routing_key:
        await handlers.on_feedback_released(_parse(FeedbackReleased, msg.body), ctx)
    elif key == NotificationRequested.routing_key:
        await handlers.on_request(_parse(NotificationRequested, msg.body), ctx, delivery, attempt=0, only=None)
    else:
        copy = _parse(RetryCopy, msg.body)
        await handlers.on_request(copy.request, ctx, delivery, attempt=copy.attempt, only=copy.channel)


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
        verify_keys=runtime.verify_keys, allowed_producers=ALLOWED_PRODUCERS, prefetch=prefetch,
    )
