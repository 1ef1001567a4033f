"""Broker failover (issue 18): `SAFEGUARD_AMQP_URL` lists a cluster's nodes, tried in turn.

Two real listeners: the local broker, and asyncio TCP proxies in front of it as further
"nodes" (tests/faults/proxy.py) that the test can kill; a port nothing listens on is a
dead node. The connection goes to the first node that answers, and when its node dies it
moves to the next at once, its consumer consuming and its publishes confirmed there.
"""
from __future__ import annotations

import asyncio
import io
import logging
import time
from urllib.parse import urlsplit

import pytest
import structlog

from shared import bus
from shared.logging import configure
from shared.metrics import BROKER_NODE
from tests.bus.helpers import Recorder, eventually, new_id
from tests.faults.proxy import Proxy
from tests.support.processes import free_port

pytestmark = pytest.mark.broker
REFERRAL_EVENTS = bus.QueueSpec("escalation.events", bus.EVENTS, ("referral.*",))
CANARY = "canary-Pw-5e1f"
MOVE_BOUND_S = 5.0  # a move must take seconds, not the ~150 s a node restart did


def at(amqp_url: str, port: int, user: str = "guest", password: str = "guest") -> str:
    """`amqp_url` (same vhost) pointed at 127.0.0.1:`port`."""
    netloc = urlsplit(amqp_url).netloc
    return amqp_url.replace(netloc, f"{user}:{password}@127.0.0.1:{port}", 1)


@pytest.fixture
def log_text():
    stream = io.StringIO()
    configure("intake", "json", stream=stream)
    yield stream
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


@pytest.fixture
async def proxies():
    made: list[Proxy] = []

    async def make() -> Proxy:
        proxy = Proxy("127.0.0.1", 5672)
        await proxy.start()
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        await proxy.close()


async def test_first_connect_skips_a_dead_node_and_logs_host_port_only(amqp_url, log_text):
    dead = free_port()
    conn = await bus.connect(f"{at(amqp_url, dead, 'canary-user', CANARY)}, {amqp_url}", name="test-failover-first",
                             timeout=3)
    try:
        assert bus.is_connected(conn) and bus.current_node(conn) == "127.0.0.1:5672"
        assert BROKER_NODE.labels("test-failover-first", "127.0.0.1:5672")._value.get() == 1
        assert BROKER_NODE.labels("test-failover-first", f"127.0.0.1:{dead}")._value.get() == 0
    finally:
        await conn.close()
    text = log_text.getvalue()
    assert f'"node": "127.0.0.1:{dead}"' in text and "broker_node_unreachable" in text
    assert CANARY not in text and "canary-user" not in text


async def test_no_node_answers_fails_fast_with_the_last_error(amqp_url):
    started = time.monotonic()
    with pytest.raises(ConnectionError):
        await bus.connect([at(amqp_url, free_port()), at(amqp_url, free_port())], name="test-failover-none",
                          timeout=3)
    assert time.monotonic() - started < 5
    assert not await bus.ping(at(amqp_url, free_port()))
    assert await bus.ping(f"{at(amqp_url, free_port())},{amqp_url}")


async def test_a_dead_node_moves_consumer_and_publisher_to_the_next_at_once(
        amqp_url, proxies, signing_keys, verify_keys, log_text):
    node_a = await proxies()
    conn = await bus.connect([at(amqp_url, node_a.port), amqp_url], name="test-failover-move")
    moved = asyncio.Event()
    conn.reconnect_callbacks.add(lambda _sender: moved.set())
    publisher = bus.Publisher(conn, producer="intake", signing_key=signing_keys["intake"])
    handler = Recorder()
    consumer = bus.Consumer(conn, REFERRAL_EVENTS, handler, publisher=publisher, verify_keys=verify_keys)
    try:
        assert bus.current_node(conn) == f"127.0.0.1:{node_a.port}"
        async with conn.channel() as channel:
            await bus.declare_topology(channel, ["dev-force"])
        await publisher.start()
        await consumer.start()
        before = new_id()
        await publisher.publish(bus.EVENTS, "referral.received", b"{}", message_id=before)
        await eventually(lambda: [m.message_id for m in handler.seen] == [before])

        await asyncio.sleep(2.5)  # past the reconnection loop's pause after a connect (reconnect_interval, 2 s)
        killed = time.monotonic()
        assert node_a.cut() >= 1  # node A dies: its connection aborted, new ones refused
        await asyncio.wait_for(moved.wait(), MOVE_BOUND_S)
        move_s = time.monotonic() - killed
        assert bus.current_node(conn) == "127.0.0.1:5672"
        after = new_id()
        await publisher.publish(bus.EVENTS, "referral.received", b"{}", message_id=after)  # confirmed on B
        await eventually(lambda: after in {m.message_id for m in handler.seen})
        confirm_s = time.monotonic() - killed
        print(f"\nfailover: node A killed -> connection on node B in {move_s:.2f}s, "
              f"a publish confirmed and consumed there {confirm_s:.2f}s after the kill")
        assert BROKER_NODE.labels("test-failover-move", "127.0.0.1:5672")._value.get() == 1
        assert BROKER_NODE.labels("test-failover-move", f"127.0.0.1:{node_a.port}")._value.get() == 0
    finally:
        await consumer.stop()
        await publisher.close()
        await conn.close()
    text = log_text.getvalue()
    assert '"next_node": "127.0.0.1:5672"' in text and "broker_node_lost" in text and "broker_node_connected" in text
    assert CANARY not in text and "guest" not in text


async def test_moves_skip_a_dead_node_and_wrap_round_the_list(amqp_url, proxies):
    node_a, node_c = await proxies(), await proxies()
    nodes = [at(amqp_url, node_a.port), at(amqp_url, free_port()), at(amqp_url, node_c.port)]
    conn = await bus.connect(nodes, name="test-failover-wrap", reconnect_interval=0.5)
    try:
        assert bus.current_node(conn) == f"127.0.0.1:{node_a.port}"
        node_a.cut()  # A dies: the dead second node is tried, then C
        await eventually(lambda: bus.current_node(conn) == f"127.0.0.1:{node_c.port}", timeout=MOVE_BOUND_S)
        node_a.restore()
        node_c.cut()  # C dies: past the dead node again, round to A
        await eventually(lambda: bus.current_node(conn) == f"127.0.0.1:{node_a.port}", timeout=MOVE_BOUND_S)
        async with conn.channel() as channel:  # a working connection there
            await channel.declare_queue(exclusive=True)
    finally:
        await conn.close()
