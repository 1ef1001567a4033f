"""The broker connection: one robust aio-pika connection per service process.

`url` is one `amqp(s)://` URL or a comma-separated list of a cluster's nodes
(`SAFEGUARD_AMQP_URL`). The connection reconnects by itself after a broker-side close or
network loss — to the next node of the list (`FailoverConnection`) — and then re-opens
robust channels, re-declares robust exchanges/queues/bindings and re-registers consumers.
Publishes issued meanwhile fail or wait (see publisher.py).
"""
from __future__ import annotations

from collections.abc import Sequence

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractRobustConnection
from aio_pika.connection import make_url

from shared.bus.failover import FailoverConnection
from shared.logging import get_logger
from shared.urls import amqp_nodes, node_label

HEARTBEAT_S = 30  # broker and client each notice a dead peer within ~2 heartbeats
CONNECT_TIMEOUT_S = 10.0
RECONNECT_INTERVAL_S = 2.0

log = get_logger(__name__)


def nodes_of(url: str | Sequence[str]) -> tuple[str, ...]:
    """The node URLs `url` names: a comma-separated string, or a list as is."""
    return amqp_nodes(url) if isinstance(url, str) else tuple(url)


async def connect(
    url: str | Sequence[str],
    *,
    name: str,
    heartbeat: int = HEARTBEAT_S,
    timeout: float = CONNECT_TIMEOUT_S,
    reconnect_interval: float = RECONNECT_INTERVAL_S,
) -> AbstractRobustConnection:
    """Open a robust connection named `name` (shown in `rabbitmqctl list_connections`).

    The first connection tries each node in turn and fails fast (raises the last node's
    error) only when none answers, so a mis-configured service stops at start-up; later
    losses move to the next node and are retried every `reconnect_interval` seconds in the
    background.
    """
    nodes = [make_url(n, heartbeat=heartbeat, reconnect_interval=reconnect_interval) for n in nodes_of(url)]
    failure: Exception | None = None
    for node in nodes:
        connection = FailoverConnection(node, nodes=nodes, client_properties={"connection_name": name},
                                        reconnect_interval=reconnect_interval)
        try:
            await connection.connect(timeout=timeout)
        except Exception as exc:
            failure = exc
            await connection.close()
            log.warning("broker_node_unreachable", node=node_label(str(node)), error=type(exc).__name__)
            continue
        return connection
    assert failure is not None
    raise failure


async def connect_once(url: str | Sequence[str], *, name: str, timeout: float = CONNECT_TIMEOUT_S
                       ) -> AbstractConnection:
    """A plain (not robust) connection to the first node that answers, for one-off tools."""
    failure: Exception | None = None
    for node in nodes_of(url):
        try:
            return await aio_pika.connect(node, timeout=timeout, client_properties={"connection_name": name})
        except Exception as exc:
            failure = exc
    assert failure is not None
    raise failure


def current_node(connection: AbstractConnection) -> str | None:
    """host:port of the node `connection` is on (None if it is not connected)."""
    if not is_connected(connection):
        return None
    return getattr(connection, "node", None) or node_label(str(connection.url))


def is_connected(connection: AbstractConnection) -> bool:
    """True while the connection is open and not between reconnection attempts (/readyz)."""
    if connection.is_closed:
        return False
    transport = getattr(connection, "transport", None)
    if transport is None or transport.connection.is_closed:
        return False
    return connection.connected.is_set()


async def ping(url: str | Sequence[str], *, timeout: float = 5.0) -> bool:
    """Open and close a plain connection to check a node answers (one-off checks)."""
    try:
        connection = await connect_once(url, name="safeguard-ping", timeout=timeout)
    except Exception:
        return False
    await connection.close()
    return True
