"""A robust connection over a list of RabbitMQ nodes (`SAFEGUARD_AMQP_URL=amqp://…a,amqp://…b`).

aio-pika's `RobustConnection` reconnects to the URL it was given, so a process whose node
died waited for that node to come back. `FailoverConnection` is the same class with one
hook: whenever a connection closes under it, or an attempt to open one fails (aio-pika
runs `_on_connection_close` for both), it points `url` at the next node before the
reconnection loop runs again. Everything else stays aio-pika's: the first attempt after a
loss is immediate, later ones `reconnect_interval` apart, and on each success the robust
channels, exchanges, queues, bindings, consumers and publisher confirms are restored as
after any reconnection. It stays on the new node (no move back).

Logs and metrics name a node by host:port only (`str(connection)` too, which aio-pika's
own log lines use), never the user or password.
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aio_pika import RobustConnection
from yarl import URL

from shared.logging import get_logger
from shared.metrics import BROKER_NODE
from shared.urls import node_label

log = get_logger(__name__)


class FailoverConnection(RobustConnection):
    """A `RobustConnection` that moves on to the next of `nodes` after each loss or failed attempt."""

    def __init__(self, url: URL, loop: asyncio.AbstractEventLoop | None = None, *,
                 nodes: Sequence[URL], **kwargs: Any) -> None:
        super().__init__(url, loop=loop, **kwargs)
        self.nodes = tuple(URL(n) for n in nodes)
        self._at = self.nodes.index(self.url)
        self._name = str(self.kwargs.get("client_properties", {}).get("connection_name", ""))
        self._lost_at: float | None = None  # loop time the connection was lost, until it is back

    @property
    def node(self) -> str:
        """host:port of the node this connection is on (or trying next)."""
        return node_label(str(self.url))

    def __str__(self) -> str:
        return self.node

    def _show(self, on: bool) -> None:
        for n in self.nodes:
            BROKER_NODE.labels(self._name, node_label(str(n))).set(1 if on and n == self.url else 0)

    async def _on_connection_close(self, closing: asyncio.Future) -> None:
        if not (self._close_called or self.is_closed):
            self._show(False)
            was = self.node
            if len(self.nodes) > 1:
                self._at = (self._at + 1) % len(self.nodes)
                self.url = self.nodes[self._at]
            if self._lost_at is None and self.connected.is_set():  # a live connection (not an attempt) lost
                self._lost_at = self.loop.time()
                log.warning("broker_node_lost", node=was, next_node=self.node, connection=self._name)
        await super()._on_connection_close(closing)

    async def _on_connected(self) -> None:
        await super()._on_connected()  # restores the robust channels first (raises if it cannot)
        self._show(True)
        if self._lost_at is not None:  # back, on this node: how long the process was off the bus
            log.info("broker_node_connected", node=self.node, connection=self._name,
                        seconds=round(self.loop.time() - self._lost_at, 3))
            self._lost_at = None

    async def close(self, exc: Any = asyncio.CancelledError) -> None:
        self._show(False)
        await super().close(exc)
