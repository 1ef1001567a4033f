"""Outbox → relay → broker → consumer → idempotent handler, on the real RabbitMQ and PostgreSQL.

These are the foundation's end-to-end promises (DESIGN §6): state changes and their
messages commit together; nothing is lost when the broker drops every connection;
a message delivered twice is processed once.
"""
from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from nacl.signing import SigningKey

from services.escalation.adapters import tables as esc_tables
from services.intake.adapters import tables as intake_tables
from shared import bus
from shared import tracing
from shared.relay import OutboxRelay
from shared.storage import OutgoingMessage, backlog, create_engine, enqueue, process_once
from shared.storage.migrate import upgrade

pytestmark = [pytest.mark.broker, pytest.mark.database]


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
async def world(amqp_url, pg_url):
    keys = {"intake": SigningKey.generate(), "escalation": SigningKey.generate()}
    engine = create_engine(pg_url)
    await upgrade(engine, "intake")
    await upgrade(engine, "escalation")
    conn = await bus.connect(amqp_url, name="test-outbox", reconnect_interval=0.5)
    async with conn.channel() as ch:
        await bus.declare_topology(ch, ["dev-force"])
    publisher = bus.Publisher(conn, producer="intake", signing_key=keys["intake"])
    await publisher.start()
    seen: list[str] = []
    effects: list[str] = []
    traces: dict[str, str | None] = {}

    async def handler(msg: bus.BusMessage) -> None:
        seen.append(msg.message_id)
        traces[msg.message_id] = tracing.current()

        async def effect(_conn) -> None:
            effects.append(msg.message_id)

        await process_once(engine, esc_tables.processed, "escalation.events", msg.message_id, effect, now())

    consumer = bus.Consumer(
        conn, bus.queue_spec(bus.ESCALATION_EVENTS), handler, publisher=publisher,
        verify_keys={k: v.verify_key for k, v in keys.items()}, allowed_producers={"intake"},
    )
    await consumer.start()
    relay = OutboxRelay(engine, intake_tables.outbox, publisher, batch_size=50, poll_interval=0.2)
    try:
        yield SimpleNamespace(engine=engine, relay=relay, publisher=publisher, seen=seen, effects=effects,
                              traces=traces)
    finally:
        await relay.stop(flush=False)
        await consumer.stop()
        await publisher.close()
        await conn.close()
        await engine.dispose()


async def enqueue_events(engine, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        mid = str(uuid.uuid4())
        ids.append(mid)
        async with engine.begin() as c:
            await enqueue(c, intake_tables.outbox, OutgoingMessage(bus.EVENTS, "referral.received", b"{}", mid), now())
    return ids


async def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def consumed_ok() -> float:
    return REGISTRY.get_sample_value(
        "safeguard_messages_consumed_total", {"queue": "escalation.events", "outcome": "ok"}) or 0.0


async def test_outbox_rows_reach_the_consumer_once_each(world):
    engine, relay, effects = world.engine, world.relay, world.effects
    before = consumed_ok()
    ids = await enqueue_events(engine, 40)
    relay.start()
    relay.notify()
    await wait_for(lambda: len(set(effects)) == 40)
    assert sorted(effects) == sorted(ids)
    await wait_for(lambda: consumed_ok() - before == 40)  # counted after the ack
    async with engine.connect() as c:
        assert (await backlog(c, intake_tables.outbox, now()))[0] == 0


async def test_backlog_gauges_show_unsent_rows_and_their_age(world):
    await enqueue_events(world.engine, 3)
    depth, age = await world.relay.observe()
    assert depth == 3 and age is not None and age >= 0
    assert REGISTRY.get_sample_value("safeguard_outbox_backlog", {"service": "intake"}) == 3
    await world.relay.drain()
    assert (await world.relay.observe())[0] == 0
    assert REGISTRY.get_sample_value("safeguard_outbox_oldest_age_seconds", {"service": "intake"}) == 0


async def test_drain_claims_until_a_batch_comes_back_short(world):
    """120 rows in batches of 50: three claims (50, 50, 20), not a fourth that finds nothing."""
    ids = await enqueue_events(world.engine, 120)
    engine = create_engine(world.engine.url.render_as_string(hide_password=False))  # the relay's alone
    transactions: list[int] = []
    sa.event.listen(engine.sync_engine, "begin", lambda _conn: transactions.append(1))
    try:
        relay = OutboxRelay(engine, intake_tables.outbox, world.publisher, batch_size=50)
        assert await relay.drain() == 120
        assert len(transactions) == 3
    finally:
        await engine.dispose()
    await wait_for(lambda: set(ids) <= set(world.effects))


async def test_rolled_back_state_change_publishes_nothing(world):
    engine, relay, seen = world.engine, world.relay, world.seen
    with pytest.raises(RuntimeError):
        async with engine.begin() as c:
            await enqueue(c, intake_tables.outbox, OutgoingMessage(bus.EVENTS, "referral.received", b"{}", "gone"), now())
            raise RuntimeError("state change failed")
    assert await relay.drain() == 0
    await asyncio.sleep(0.3)
    assert seen == []


async def test_duplicate_delivery_is_processed_once(world):
    publisher, seen, effects = world.publisher, world.seen, world.effects
    mid = str(uuid.uuid4())
    for _ in range(3):  # the same message id three times: a redelivery or a relay re-send
        await publisher.publish(bus.EVENTS, "referral.received", b"{}", message_id=mid)
    await wait_for(lambda: len(seen) == 3)
    assert effects == [mid]


async def test_broker_drops_every_connection_mid_run_and_nothing_is_lost(world, amqp_vhost, rabbitmqctl):
    engine, relay, effects = world.engine, world.relay, world.effects
    ids = await enqueue_events(engine, 300)
    relay.start()
    relay.notify()
    await wait_for(lambda: len(effects) >= 20)
    await asyncio.to_thread(rabbitmqctl, "close_all_connections", "-p", amqp_vhost, "test: drop mid-run")
    await wait_for(lambda: len(set(effects)) == 300, timeout=60)
    assert sorted(set(effects)) == sorted(ids)
    assert len(effects) == 300  # duplicates on the wire are possible; effects are not
    async with engine.connect() as c:
        assert (await backlog(c, intake_tables.outbox, now()))[0] == 0


async def test_while_the_broker_is_down_the_relay_claims_nothing_then_catches_up(world, amqp_vhost, rabbitmqctl):
    engine, effects = world.engine, world.effects
    connected = world.publisher.connection.connected
    # A short confirm timeout: a publish attempted while the broker is away fails fast.
    relay = OutboxRelay(engine, intake_tables.outbox, world.publisher, batch_size=50,
                                      poll_interval=0.2, publish_timeout=0.3)
    relay.start()
    # Keep the broker away: no permission to reconnect, then drop every connection.
    await asyncio.to_thread(rabbitmqctl, "clear_permissions", "-p", amqp_vhost, "guest")
    try:
        await asyncio.to_thread(rabbitmqctl, "close_all_connections", "-p", amqp_vhost, "test: broker away")
        await wait_for(lambda: not connected.is_set(), timeout=10)
        ids = await enqueue_events(engine, 20)
        relay.notify()
        await asyncio.sleep(1.5)  # several polls
        async with engine.connect() as c:
            attempts = (await c.execute(sa.select(intake_tables.outbox.c.attempts))).scalars().all()
        assert attempts == [0] * 20  # nothing claimed only to fail: no failed publishes counted
    finally:
        await asyncio.to_thread(rabbitmqctl, "set_permissions", "-p", amqp_vhost, "guest", ".*", ".*", ".*")
    try:
        await wait_for(lambda: len(set(effects)) == 20, timeout=60)
    finally:
        await relay.stop(flush=False)
    assert sorted(set(effects)) == sorted(ids)


async def test_the_trace_of_the_state_change_reaches_the_consumer(world):
    engine, relay, effects = world.engine, world.relay, world.effects
    origin = tracing.new_traceparent()
    tracing.set_current(origin)  # as the HTTP middleware does for a request
    [mid] = await enqueue_events(engine, 1)
    relay.start()
    relay.notify()
    await wait_for(lambda: effects == [mid])
    consumed = world.traces[mid]
    assert tracing.trace_id(consumed) == tracing.trace_id(origin)
    assert consumed != origin  # a new span for the consuming hop
