"""Confirmed, mandatory, persistent, signed publishing (DESIGN §5, §6).

`publish` returns only once the broker has confirmed the message. An unroutable
message (returned by the broker) raises `Unroutable`; a nack, a closed exchange or
no confirm within `timeout` raises `PublishFailed`. While the robust connection is
down the publish waits for it and re-sends, all bounded by `timeout`, so a caller
(the outbox relay) never hangs; a re-send after a lost confirm may duplicate a
message, which idempotent consumers (by message_id) absorb.
"""
from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiormq.exceptions
from aio_pika import DeliveryMode, Message
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from nacl.signing import SigningKey

from shared import metrics, tracing
from shared.bus.message import check_headers, sign_headers

RESEND_PAUSE_S = 0.25
# Connection/channel loss while publishing: wait for the robust connection, re-send.
_TRANSIENT = (aiormq.exceptions.ChannelInvalidStateError, ConnectionError, asyncio.CancelledError)


class PublishFailed(Exception):
    """The broker did not confirm the message (nack, channel error or timeout)."""


class Unroutable(PublishFailed):
    """The broker returned a mandatory message: no queue is bound for its routing key."""

    def __init__(self, exchange: str, routing_key: str, message_id: str) -> None:
        super().__init__(f"unroutable: exchange={exchange!r} routing_key={routing_key!r} message_id={message_id}")
        self.exchange, self.routing_key, self.message_id = exchange, routing_key, message_id


class Publisher:
    """Publishes as service `producer`, signing each message with `signing_key`."""

    def __init__(self, connection: AbstractRobustConnection, *, producer: str, signing_key: SigningKey) -> None:
        self.connection, self.producer, self.signing_key = connection, producer, signing_key
        self._channel: AbstractRobustChannel | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Open the publishing channel (confirms on; returns raise). Idempotent."""
        async with self._lock:
            if self._channel is None:
                channel = self.connection.channel(publisher_confirms=True, on_return_raises=True)
                await channel
                self._channel = channel

    async def close(self) -> None:
        if self._channel is not None and not self.connection.is_closed:
            await self._channel.close()
        self._channel = None

    async def publish(
        self, exchange: str, routing_key: str, body: bytes, *, message_id: str,
        correlation_id: str | None = None, headers: Mapping[str, Any] | None = None,
        timeout: float = 10, sign: bool = True,
    ) -> None:
        """Publish `body` signed by this service; headers must be on the allow-list."""
        headers = dict(headers or {})
        if "traceparent" not in headers and (tp := tracing.current()):
            headers["traceparent"] = tracing.child_of(tp)
        check_headers(headers)
        if sign:
            headers.update(sign_headers(self.signing_key, self.producer, routing_key, message_id, body))
        await self.publish_raw(exchange, routing_key, body, message_id=message_id,
                               correlation_id=correlation_id, headers=headers, timeout=timeout)

    async def publish_raw(
        self, exchange: str, routing_key: str, body: bytes, *, message_id: str,
        correlation_id: str | None = None, headers: Mapping[str, Any] | None = None,
        timeout: float = 10, app_id: str | None = None, content_type: str | None = "application/json",
    ) -> None:
        """Publish with confirm but without signing or header checks (parking copies)."""
        message = Message(
            body, headers=dict(headers or {}), content_type=content_type,
            delivery_mode=DeliveryMode.PERSISTENT, message_id=message_id,
            correlation_id=correlation_id, app_id=app_id or self.producer,
            timestamp=datetime.now(UTC),
        )
        try:
            async with asyncio.timeout(timeout):
                await self._send(exchange, routing_key, message)
        except TimeoutError:
            metrics.MESSAGES_PUBLISHED.labels(routing_key=_label(routing_key), outcome="timeout").inc()
            raise PublishFailed(f"no confirm within {timeout}s: message_id={message_id}") from None
        except PublishFailed as exc:
            outcome = "unroutable" if isinstance(exc, Unroutable) else "failed"
            metrics.MESSAGES_PUBLISHED.labels(routing_key=_label(routing_key), outcome=outcome).inc()
            raise
        metrics.MESSAGES_PUBLISHED.labels(routing_key=_label(routing_key), outcome="confirmed").inc()

    async def _send(self, exchange: str, routing_key: str, message: Message) -> None:
        await self.start()
        assert self._channel is not None
        task = asyncio.current_task()
        while True:
            await self._channel.ready()
            target = await self._channel.get_exchange(exchange, ensure=False) if exchange else self._channel.default_exchange
            try:
                await target.publish(message, routing_key, mandatory=True)
                return
            except aiormq.exceptions.PublishError:
                raise Unroutable(exchange, routing_key, message.message_id or "") from None
            except aiormq.exceptions.DeliveryError as exc:
                raise PublishFailed(f"nacked: message_id={message.message_id}") from exc
            except aiormq.exceptions.ChannelClosed as exc:  # e.g. 404 no such exchange
                raise PublishFailed(f"channel closed: {type(exc).__name__}") from exc
            except _TRANSIENT:
                if task is not None and task.cancelling():
                    raise  # our own cancellation or the timeout: not a connection loss
            await asyncio.sleep(RESEND_PAUSE_S)


def _label(routing_key: str) -> str:
    """Metric label for a routing key: per-force alert keys and reply queues collapse to one
    value each, so no name a client chooses becomes a label."""
    if routing_key.startswith("control-room."):
        return "control-room.*"
    if routing_key.startswith(("amq.rabbitmq.reply-to", "reply.")):
        return "reply"
    return routing_key
