"""Plain helpers for the bus tests: ids, polling, reading queues, a recording handler."""
from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from shared import bus


def new_id() -> str:
    return str(uuid.uuid4())


@contextlib.asynccontextmanager
async def robust_connection(amqp_url: str, name: str) -> AsyncIterator[AbstractRobustConnection]:
    """A robust connection (reconnecting every 0.5 s) named `name` on the broker; closed after."""
    conn = await bus.connect(amqp_url, name=name, reconnect_interval=0.5)
    try:
        yield conn
    finally:
        await conn.close()


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until `check()` is true, failing after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


async def get_one(connection, queue_name: str, timeout: float = 10.0) -> AbstractIncomingMessage:
    """Take (and ack) one message from `queue_name`, waiting up to `timeout`."""
    async with connection.channel() as channel:
        queue = await channel.declare_queue(queue_name, passive=True)
        async with asyncio.timeout(timeout):
            while True:
                message = await queue.get(no_ack=True, fail=False)
                if message is not None:
                    return message
                await asyncio.sleep(0.05)


async def ready_count(connection, queue_name: str) -> int:
    async with connection.channel() as channel:
        queue = await channel.declare_queue(queue_name, passive=True, robust=False)
        return queue.declaration_result.message_count or 0


class Recorder:
    """A handler that records what it saw and runs an optional behaviour."""

    def __init__(self, behaviour: Callable[[bus.BusMessage, int], Awaitable[None]] | None = None):
        self.seen: list[bus.BusMessage] = []
        self.behaviour = behaviour

    async def __call__(self, message: bus.BusMessage) -> None:
        self.seen.append(message)
        if self.behaviour is not None:
            await self.behaviour(message, len(self.seen))
