"""The notifier's AMQP entrypoint: consume `notifier.requests` with the handler.

Allowed producers on the queue: escalation (requests), intake (hold events) and the
notifier itself (its retry and fallback copies returning from the delay queues); the
handler then checks each routing key's own producer. Delay queues other than the
production `RETRY_DELAYS_S` (shorter ones, for tests) are declared here on start.
"""
from __future__ import annotations

from collections.abc import Iterable

from aio_pika.abc import AbstractRobustConnection

from shared import bus
from shared.bus.topology import retry_queue_arguments

ALLOWED_PRODUCERS = frozenset({"escalation", "intake", "notifier"})


async def declare_retry_queues(connection: AbstractRobustConnection, delays_s: Iterable[int]) -> None:
    extra = [d for d in delays_s if d not in bus.RETRY_DELAYS_S]
    if not extra:
        return
    async with connection.channel() as channel:
        for delay in extra:
            await channel.declare_queue(bus.retry_queue_name(delay), durable=True,
                                        arguments=retry_queue_arguments(delay))


def request_consumer(runtime, handler, *, prefetch: int = 16) -> bus.Consumer:
    return bus.Consumer(
        runtime.connection, bus.queue_spec(bus.NOTIFIER_REQUESTS), handler, publisher=runtime.publisher,
        verify_keys=runtime.verify_keys, allowed_producers=ALLOWED_PRODUCERS, prefetch=prefetch,
    )
