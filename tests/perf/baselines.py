"""The bare-broker baselines our paths are measured against.

- `python -m tests.perf.baselines PORT AMQP_URL`: a bare aiohttp handler that only does a
  confirmed, persistent aio-pika publish of the request body (baseline 1).
- `Relay`: publish → consume → publish → consume → publish → consume over three durable
  quorum queues, confirmed persistent publishes (baseline 2 and the backlog baseline).
"""
from __future__ import annotations

import sys
import time

import aio_pika
from aio_pika import DeliveryMode, Message
from aiohttp import web

HOPS = ("bench.hop1", "bench.hop2", "bench.hop3")
QUORUM = {"x-queue-type": "quorum"}
CHANNEL = web.AppKey("channel", aio_pika.abc.AbstractChannel)


async def readyz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def serving(app: web.Application, accept) -> web.Application:
    """A baseline's routes: POST /v1/referrals to `accept`, and a /readyz the harness polls."""
    app.router.add_post("/v1/referrals", accept)
    app.router.add_get("/readyz", readyz)
    return app


def bare_intake_app(amqp_url: str) -> web.Application:
    app = web.Application()

    async def connect(app: web.Application):
        connection = await aio_pika.connect_robust(amqp_url)
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue("bench.intake", durable=True, arguments=QUORUM)
        app[CHANNEL] = channel
        yield
        await connection.close()

    async def accept(request: web.Request) -> web.Response:
        body = await request.read()
        await request.app[CHANNEL].default_exchange.publish(
            Message(body, delivery_mode=DeliveryMode.PERSISTENT), routing_key="bench.intake", mandatory=True)
        return web.json_response({"status": "received"}, status=202)

    app.cleanup_ctx.append(connect)
    return serving(app, accept)


class Relay:
    """The three-hop relay in this process; `arrived` maps a message id to its arrival time."""

    def __init__(self, amqp_url: str, prefetch: int = 16) -> None:
        self.amqp_url, self.prefetch = amqp_url, prefetch
        self.arrived: dict[str, float] = {}
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._publish_channel: aio_pika.abc.AbstractChannel | None = None
        self._consumers: list[tuple[aio_pika.abc.AbstractQueue, str]] = []

    async def open(self) -> None:
        self._connection = await aio_pika.connect_robust(self.amqp_url)
        self._publish_channel = await self._connection.channel(publisher_confirms=True)
        for name in HOPS:
            await self._publish_channel.declare_queue(name, durable=True, arguments=QUORUM)

    async def publish(self, queue: str, body: bytes, message_id: str) -> None:
        assert self._publish_channel is not None
        await self._publish_channel.default_exchange.publish(
            Message(body, delivery_mode=DeliveryMode.PERSISTENT, message_id=message_id), routing_key=queue,
            mandatory=True)

    async def start(self) -> None:
        """Start the three consumers (each forwards to the next hop; the last records arrival)."""
        assert self._connection is not None
        for i, name in enumerate(HOPS):
            channel = await self._connection.channel(publisher_confirms=True)
            await channel.set_qos(prefetch_count=self.prefetch)
            queue = await channel.get_queue(name)
            nxt = HOPS[i + 1] if i + 1 < len(HOPS) else None

            async def handle(message: aio_pika.abc.AbstractIncomingMessage, nxt=nxt, channel=channel) -> None:
                if nxt is not None:
                    await channel.default_exchange.publish(
                        Message(message.body, delivery_mode=DeliveryMode.PERSISTENT, message_id=message.message_id),
                        routing_key=nxt, mandatory=True)
                else:
                    self.arrived[message.message_id or ""] = time.monotonic()
                await message.ack()

            self._consumers.append((queue, await queue.consume(handle)))

    async def stop(self) -> None:
        for queue, tag in self._consumers:
            await queue.cancel(tag)
            await queue.channel.close()
        self._consumers = []

    async def close(self) -> None:
        await self.stop()
        if self._connection is not None:
            await self._connection.close()


def main() -> None:
    port, amqp_url = int(sys.argv[1]), sys.argv[2]
    web.run_app(bare_intake_app(amqp_url), host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
