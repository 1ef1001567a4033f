"""The broker connection: one robust aio-pika connection per service process.

`connect_robust` reconnects by itself after a broker-side close or network loss and
then re-opens robust channels, re-declares robust exchanges/queues/bindings and
re-registers consumers. Publishes issued meanwhile fail or wait (see publisher.py).
"""
from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractRobustConnection

HEARTBEAT_S = 30  # broker and client each notice a dead peer within ~2 heartbeats
CONNECT_TIMEOUT_S = 10.0
RECONNECT_INTERVAL_S = 2.0


async def connect(
    url: str,
    *,
    name: str,
    heartbeat: int = HEARTBEAT_S,
    timeout: float = CONNECT_TIMEOUT_S,
    reconnect_interval: float = RECONNECT_INTERVAL_S,
) -> AbstractRobustConnection:
    """Open a robust connection named `name` (shown in `rabbitmqctl list_connections`).

    The first attempt fails fast (raises) so a mis-configured service stops at start-up;
    later losses are retried every `reconnect_interval` seconds in the background.
    """
    return await aio_pika.connect_robust(
        url,
        client_properties={"connection_name": name},
        heartbeat=heartbeat,
        timeout=timeout,
        reconnect_interval=reconnect_interval,
    )


def is_connected(connection: AbstractConnection) -> bool:
    """True while the connection is open and not between reconnection attempts (/readyz)."""
    if connection.is_closed:
        return False
    transport = getattr(connection, "transport", None)
    if transport is None or transport.connection.is_closed:
        return False
    return connection.connected.is_set()


async def ping(url: str, *, timeout: float = 5.0) -> bool:
    """Open and close a plain connection to check the broker answers (one-off checks)."""
    try:
        connection = await aio_pika.connect(url, timeout=timeout)
    except Exception:
        return False
    await connection.close()
    return True
