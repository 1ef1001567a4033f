"""Broker-side connection loss and graceful shutdown."""
from __future__ import annotations

import asyncio
import time

import pytest

from shared import bus
from tests.bus.helpers import Recorder, eventually, new_id, ready_count

pytestmark = pytest.mark.broker
REFERRAL_EVENTS = bus.QueueSpec("escalation.events", bus.EVENTS, ("referral.*",))


async def test_consumer_and_publisher_survive_a_broker_side_close(
    connection, publisher, verify_keys, amqp_vhost, rabbitmqctl
):
    handler = Recorder()
    consumer = bus.Consumer(connection, REFERRAL_EVENTS, handler, publisher=publisher, verify_keys=verify_keys)
    await consumer.start()
    during_id, outage_publish, reconnected = new_id(), [], asyncio.Event()

    def on_close(sender, exc) -> None:  # runs the moment the transport is gone
        assert not bus.is_connected(connection)
        outage_publish.append(asyncio.create_task(publisher.publish(
            bus.EVENTS, "referral.received", b"{}", message_id=during_id, timeout=8)))

    try:
        before = new_id()
        await publisher.publish(bus.EVENTS, "referral.received", b"{}", message_id=before)
        await eventually(lambda: len(handler.seen) == 1)
        connection.close_callbacks.add(on_close)
        connection.reconnect_callbacks.add(lambda sender: reconnected.set())

        await asyncio.to_thread(rabbitmqctl, "close_all_connections", "-p", amqp_vhost, "test")
        await asyncio.wait_for(reconnected.wait(), 15)
        connection.close_callbacks.remove(on_close)
        assert len(outage_publish) == 1
        # Issued during the outage: it either waited for the reconnection and was
        # confirmed, or failed within its bound; it never hangs.
        try:
            await asyncio.wait_for(outage_publish[0], 9)
            published_during = True
        except bus.PublishFailed:
            published_during = False

        after = new_id()
        await publisher.publish(bus.EVENTS, "referral.received", b"{}", message_id=after)
        expected = {before, after} | ({during_id} if published_during else set())
        await eventually(lambda: {m.message_id for m in handler.seen} >= expected, timeout=15)
        assert published_during  # the broker came straight back: it must have gone through
        assert bus.is_connected(connection)
        await eventually(lambda: not consumer._tasks)
    finally:
        await consumer.stop()
    assert await ready_count(connection, "escalation.events") == 0
    assert await ready_count(connection, "escalation.events.parked") == 0


async def test_concurrent_publishes_across_a_close_are_confirmed_or_fail_never_lost(
    connection, publisher, amqp_vhost, rabbitmqctl
):
    outcomes: list[str] = []
    closed = asyncio.Event()
    connection.close_callbacks.add(lambda sender, exc: closed.set())

    async def one() -> None:
        try:
            await publisher.publish(bus.EVENTS, "referral.received", b"{}", message_id=new_id(), timeout=8)
            outcomes.append("confirmed")
        except bus.PublishFailed:
            outcomes.append("failed")

    async def burst() -> int:
        """Publish until 100 messages after the connection was closed under us."""
        tasks: list[asyncio.Task[None]] = []
        after_close = 0
        while after_close < 100 and len(tasks) < 5000:
            tasks.append(asyncio.create_task(one()))
            after_close += closed.is_set()
            await asyncio.sleep(0.005)
        await asyncio.gather(*tasks)
        return len(tasks)

    running = asyncio.create_task(burst())
    await asyncio.sleep(0.2)
    await asyncio.to_thread(rabbitmqctl, "close_all_connections", "-p", amqp_vhost, "test")
    sent = await asyncio.wait_for(running, 60)
    assert closed.is_set() and len(outcomes) == sent  # no other exception type escaped
    # Every confirmed message is in the queue (a re-send after a lost confirm may add a duplicate).
    assert await ready_count(connection, "escalation.events") >= outcomes.count("confirmed") > 0


async def test_publish_during_a_long_outage_fails_within_its_timeout_then_recovers(
    connection, publisher, verify_keys, amqp_vhost, rabbitmqctl
):
    handler = Recorder()
    consumer = bus.Consumer(connection, REFERRAL_EVENTS, handler, publisher=publisher, verify_keys=verify_keys)
    await consumer.start()
    try:
        # Keep the broker "away" for this vhost only: reconnection is refused until
        # guest's permissions on it are restored.
        await asyncio.to_thread(rabbitmqctl, "clear_permissions", "-p", amqp_vhost, "guest")
        await asyncio.to_thread(rabbitmqctl, "close_all_connections", "-p", amqp_vhost, "test")
        await eventually(lambda: not bus.is_connected(connection), timeout=5)

        started = time.monotonic()
        with pytest.raises(bus.PublishFailed):
            await publisher.publish(bus.EVENTS, "referral.received", b"{}", message_id=new_id(), timeout=1.5)
        assert 1.4 < time.monotonic() - started < 2.5

        await asyncio.to_thread(rabbitmqctl, "set_permissions", "-p", amqp_vhost, "guest", ".*", ".*", ".*")
        await eventually(lambda: bus.is_connected(connection), timeout=15)
        after = new_id()
        await publisher.publish(bus.EVENTS, "referral.received", b"{}", message_id=after)
        await eventually(lambda: after in {m.message_id for m in handler.seen}, timeout=15)
    finally:
        await consumer.stop()


async def test_stop_waits_for_in_flight_work_then_stops_deliveries(connection, publisher, verify_keys):
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(message, n):
        started.set()
        await release.wait()

    handler = Recorder(slow)
    consumer = bus.Consumer(connection, REFERRAL_EVENTS, handler, publisher=publisher, verify_keys=verify_keys)
    await consumer.start()
    await publisher.publish(bus.EVENTS, "referral.received", b"{}", message_id=new_id())
    await asyncio.wait_for(started.wait(), 10)

    stopping = asyncio.create_task(consumer.stop(timeout=10))
    await asyncio.sleep(0.3)
    assert not stopping.done()  # the handler is still running
    await publisher.publish(bus.EVENTS, "referral.received", b"{}", message_id=new_id())
    await asyncio.sleep(0.3)
    release.set()
    await asyncio.wait_for(stopping, 10)

    assert len(handler.seen) == 1  # nothing delivered after stop() began
    # The in-flight message was acked; the later one waits in the queue.
    assert await ready_count(connection, "escalation.events") == 1
