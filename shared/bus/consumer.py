"""Consuming one work queue: verify, handle, then ack; park what must not be retried.

- ack only after the handler returns (it commits its own effects first);
- forged/unsigned → parked with the `ForgedMessage` reason, handler never runs;
- `Reject(reason)` → parked at once; any other exception → nack+requeue, or parked as
  `delivery_limit: <ExceptionClass>` on the last allowed attempt (the queue's own
  `x-delivery-limit` dead-lettering stays as a backstop);
- parking = a confirmed copy to `safeguard.dead-letter` (key = queue name), then ack. The
  copy holds no content in clear (shared/bus/parked.py): a client-signed submission is
  parked as metadata with its body sealed to the recipient teams `seal_to` names (or
  dropped), a service message without its `*_sealed` sections.
Reasons are fixed codes and class names only, never bodies or exception messages.
"""
from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import UTC, datetime

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel, AbstractRobustConnection
from nacl.signing import VerifyKey

from shared import metrics, tracing
from shared.bus.message import PRODUCER_HEADER, BusMessage, ForgedMessage, Reject, signed_routing_key, verify
from shared.bus.parked import AmqpMessage, SealTo, parked_copy
from shared.bus.publisher import Publisher
from shared.bus.topology import DEAD_LETTER, QueueSpec
from shared.logging import bind_contextvars, get_logger

log = get_logger(__name__)
Handler = Callable[[BusMessage], Awaitable[None]]
_REASON = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def to_bus_message(incoming: AbstractIncomingMessage) -> BusMessage:
    headers = dict(incoming.headers or {})
    producer = headers.get(PRODUCER_HEADER) or incoming.app_id or ""
    count = headers.get("x-delivery-count", 0)
    return BusMessage(
        message_id=incoming.message_id or "",
        routing_key=signed_routing_key(incoming.routing_key or "", headers),
        producer=producer.decode() if isinstance(producer, bytes) else str(producer),
        body=incoming.body,
        correlation_id=incoming.correlation_id,
        headers=headers,
        redelivered=bool(incoming.redelivered),
        delivery_count=count if isinstance(count, int) else 0,
        reply_to=incoming.reply_to or None,
    )


RETRY_BACKOFF_S = 0.5  # first redelivery after a handler error; doubles per attempt
MAX_RETRY_BACKOFF_S = 10.0


class Consumer:
    """Feeds messages from `spec.name` to `handler`, at most `prefetch` at a time."""

    def __init__(
        self, connection: AbstractRobustConnection, spec: QueueSpec, handler: Handler, *,
        publisher: Publisher, verify_keys: Mapping[str, VerifyKey] | None,
        allowed_producers: Collection[str] | None = None, prefetch: int = 16,
        retry_backoff_s: float = RETRY_BACKOFF_S, seal_to: SealTo | None = None,
    ) -> None:
        self.connection, self.spec, self.handler, self.publisher = connection, spec, handler, publisher
        self.verify_keys, self.allowed_producers, self.prefetch = verify_keys, allowed_producers, prefetch
        self.retry_backoff_s, self.seal_to = retry_backoff_s, seal_to
        self._channel: AbstractRobustChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        """Open a channel and start consuming the (already declared) queue."""
        self._stopping = False
        self._stopped.clear()
        channel = self.connection.channel(publisher_confirms=False)
        await channel
        await channel.set_qos(prefetch_count=self.prefetch)
        self._channel = channel
        self._queue = await channel.declare_queue(self.spec.name, passive=True)
        self._tag = await self._queue.consume(self._on_message)

    async def stop(self, timeout: float = 30) -> None:
        """Stop deliveries, let in-flight handlers finish (up to `timeout`), close."""
        self._stopping = True
        self._stopped.set()
        if self._queue is not None and self._tag is not None:
            try:
                await self._queue.cancel(self._tag)
            except Exception as exc:  # channel already gone: nothing more will arrive
                log.warning("bus_cancel_failed", queue=self.spec.name, error=type(exc).__name__)
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:  # unacked: the broker redelivers them elsewhere
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._channel is not None and not self.connection.is_closed:
            await self._channel.close()  # returns prefetched, unprocessed messages
        self._channel = self._queue = self._tag = None

    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        if self._stopping:
            return  # not acked: requeued when the channel closes
        task = asyncio.create_task(self._process(incoming))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _process(self, incoming: AbstractIncomingMessage) -> None:
        message = to_bus_message(incoming)
        traceparent = tracing.child_of(message.headers.get("traceparent"))
        tracing.set_current(traceparent)  # this task's own context: nothing leaks between messages
        bind_contextvars(message_id=message.message_id, correlation_id=message.correlation_id,
                         traceparent=traceparent, queue=self.spec.name)
        started = time.perf_counter()
        outcome = await self._dispatch(incoming, message)
        metrics.HANDLER_SECONDS.labels(queue=self.spec.name).observe(time.perf_counter() - started)
        metrics.MESSAGES_CONSUMED.labels(queue=self.spec.name, outcome=outcome).inc()

    async def _dispatch(self, incoming: AbstractIncomingMessage, message: BusMessage) -> str:
        """Verify, handle, settle; returns the outcome label: ok, retry or parked."""
        if self.verify_keys is not None:
            try:
                verify(message, self.verify_keys, self.allowed_producers)
            except ForgedMessage as exc:
                return await self._park(incoming, exc.reason)
        try:
            await self.handler(message)
        except Reject as exc:
            reason = exc.reason if _REASON.fullmatch(exc.reason or "") else "rejected"
            return await self._park(incoming, reason, exc.client, exc.client_verified)
        except Exception as exc:
            error = type(exc).__name__
            log.warning("bus_handler_failed", queue=self.spec.name, message_id=message.message_id,
                        error=error, delivery_count=message.delivery_count)
            if message.delivery_count >= self.spec.delivery_limit - 1:
                return await self._park(incoming, f"delivery_limit: {error}")
            # Back off before handing it back: a database or broker blip of a few seconds
            # must not use up the delivery limit in a burst of instant redeliveries.
            delay = min(self.retry_backoff_s * 2 ** message.delivery_count, MAX_RETRY_BACKOFF_S)
            with contextlib.suppress(TimeoutError):  # a stop cuts the wait short
                await asyncio.wait_for(self._stopped.wait(), delay)
            await self._settle(incoming, ack=False)
            return "retry"
        await self._settle(incoming, ack=True)
        return "ok"

    async def _park(self, incoming: AbstractIncomingMessage, reason: str, client: str | None = None,
                    client_verified: bool = False) -> str:
        at = datetime.now(UTC).isoformat()
        try:
            copy = parked_copy(self.spec.name, AmqpMessage.of(incoming), {
                "x-parked-reason": reason,
                "x-parked-at": at,
                "x-original-exchange": incoming.exchange or "",
                "x-original-routing-key": incoming.routing_key or "",
                "x-parked-from": self.spec.name,
            }, reason=reason, parked_at=at, seal_to=self.seal_to, client=client,
                client_verified=client_verified)
            await self.publisher.publish_raw(
                DEAD_LETTER, self.spec.name, copy.body, message_id=copy.message_id,
                correlation_id=copy.correlation_id, headers=copy.headers,
                app_id=copy.app_id, content_type=copy.content_type,
            )
        except Exception as exc:  # not parked: leave it to a redelivery (or the broker's DLX)
            log.error("bus_park_failed", queue=self.spec.name, message_id=incoming.message_id,
                      error=type(exc).__name__)
            await self._settle(incoming, ack=False)
            return "retry"
        log.warning("bus_message_parked", queue=self.spec.name, message_id=incoming.message_id, reason=reason)
        metrics.MESSAGES_PARKED.labels(queue=self.spec.name, reason=reason.split(":")[0]).inc()
        await self._settle(incoming, ack=True)
        return "parked"

    async def _settle(self, incoming: AbstractIncomingMessage, *, ack: bool) -> None:
        try:
            await (incoming.ack() if ack else incoming.nack(requeue=True))
        except Exception as exc:  # channel lost meanwhile: the broker will redeliver
            log.warning("bus_settle_failed", queue=self.spec.name, message_id=incoming.message_id,
                        error=type(exc).__name__)
