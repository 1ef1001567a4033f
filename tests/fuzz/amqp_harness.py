"""Publishing fuzzed messages raw (any headers, any body) and reading what the consumer
did with them: the parking queue by message id, its consumers, its retry counter."""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from prometheus_client import REGISTRY

from shared import bus


@dataclass
class Bad:
    """One fuzzed message: how it is broken, what it carries, and where it goes."""

    kind: str
    body: bytes
    routing_key: str
    headers: dict[str, Any] = field(default_factory=dict)
    exchange: str = bus.EVENTS
    message_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    reply_to: str | None = None
    tag: str = field(default_factory=lambda: uuid.uuid4().hex)  # the correlation id: parked copies keep it


async def publish(channel: aio_pika.abc.AbstractChannel, bad: Bad) -> None:
    exchange = channel.default_exchange if bad.exchange == "" else await channel.get_exchange(bad.exchange)
    await exchange.publish(aio_pika.Message(
        bad.body, headers=bad.headers, message_id=bad.message_id or None, correlation_id=bad.tag,
        reply_to=bad.reply_to, content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    ), bad.routing_key)


async def drain(channel: aio_pika.abc.AbstractChannel, queue: str, want: int, timeout: float = 30.0) -> list[Any]:
    """Messages taken from `queue` until `want` have arrived (or the timeout)."""
    q = await channel.declare_queue(queue, passive=True)
    out: list[Any] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(out) < want and loop.time() < deadline:
        message = await q.get(no_ack=True, fail=False)
        if message is None:
            await asyncio.sleep(0.05)
        else:
            out.append(message)
    return out


async def consumers(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return declared.declaration_result.consumer_count


def consumed(queue: str, outcome: str) -> float:
    """The `safeguard_messages_consumed_total` counter for one queue and outcome."""
    value = REGISTRY.get_sample_value("safeguard_messages_consumed_total", {"queue": queue, "outcome": outcome})
    return value or 0.0


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
