"""Publish with confirms and consume with verify/ack/park, against the real broker."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from aio_pika import DeliveryMode

from shared import bus
from tests.bus.helpers import Recorder, eventually, get_one, new_id, ready_count

pytestmark = pytest.mark.broker
REFERRAL_EVENTS = bus.QueueSpec("escalation.events", bus.EVENTS, ("referral.*",))


async def start_consumer(connection, publisher, spec, handler, verify_keys, **kw) -> bus.Consumer:
    consumer = bus.Consumer(connection, spec, handler, publisher=publisher, verify_keys=verify_keys, **kw)
    await consumer.start()
    return consumer


async def test_round_trip_is_confirmed_persistent_and_verified(connection, publisher, verify_keys):
    handler = Recorder()
    consumer = await start_consumer(connection, publisher, REFERRAL_EVENTS, handler, verify_keys)
    try:
        message_id, correlation_id = new_id(), new_id()
        await publisher.publish(bus.EVENTS, "referral.received", b'{"reference":"R-1"}',
                                message_id=message_id, correlation_id=correlation_id,
                                headers={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"})
        await eventually(lambda: len(handler.seen) == 1)
        seen = handler.seen[0]
        assert (seen.message_id, seen.correlation_id, seen.producer) == (message_id, correlation_id, "intake")
        assert seen.routing_key == "referral.received" and seen.json() == {"reference": "R-1"}
        assert seen.headers["traceparent"].startswith("00-")
        await eventually(lambda: not consumer._tasks)
        assert await ready_count(connection, "escalation.events") == 0  # acked
    finally:
        await consumer.stop()
    # The raw AMQP properties: persistent JSON with app_id and a timestamp.
    await publisher.publish(bus.EVENTS, "referral.received", b"{}", message_id=message_id)
    raw = await get_one(connection, "escalation.events")
    assert raw.delivery_mode == DeliveryMode.PERSISTENT
    assert (raw.content_type, raw.app_id) == ("application/json", "intake")
    assert raw.timestamp is not None


async def test_unroutable_publish_raises(connection, publisher):
    message_id = new_id()
    with pytest.raises(bus.Unroutable) as info:
        await publisher.publish(bus.EVENTS, "nobody.listens", b"{}", message_id=message_id)
    assert (info.value.exchange, info.value.routing_key, info.value.message_id) == (
        bus.EVENTS, "nobody.listens", message_id)
    # The channel stays usable afterwards.
    await publisher.publish(bus.EVENTS, "referral.received", b"{}", message_id=new_id())


async def test_publish_to_missing_exchange_fails_and_channel_recovers(publisher):
    with pytest.raises(bus.PublishFailed):
        await publisher.publish("no-such-exchange", "x", b"{}", message_id=new_id(), timeout=5)
    await publisher.publish(bus.EVENTS, "referral.received", b"{}", message_id=new_id(), timeout=5)


async def test_headers_outside_the_allow_list_are_refused(publisher):
    with pytest.raises(ValueError):
        await publisher.publish(bus.EVENTS, "referral.received", b"{}", message_id=new_id(),
                                headers={"child_name": "x"})


@pytest.mark.parametrize("how,reason", [
    ("unsigned", "unsigned"),
    ("wrong_key", "bad_signature"),
    ("altered_body", "bad_signature"),
    ("not_allowed", "producer_not_allowed"),
    ("unknown", "unknown_producer"),
])
async def test_forged_messages_are_parked_unhandled(connection, publisher, signing_keys, verify_keys, how, reason,
                                                     reliability):
    handler = Recorder()
    keys = {k: v for k, v in verify_keys.items() if k != "notifier"} if how == "unknown" else verify_keys
    consumer = await start_consumer(connection, publisher, REFERRAL_EVENTS, handler, keys,
                                    allowed_producers={"intake", "notifier"} if how != "not_allowed" else {"notifier"})
    message_id, body, key = new_id(), b'{"reference":"R-2"}', "referral.received"
    try:
        if how == "unsigned":
            await publisher.publish(bus.EVENTS, key, body, message_id=message_id, sign=False)
        elif how == "wrong_key":  # claims to be intake, signed by escalation's key
            liar = bus.Publisher(connection, producer="intake", signing_key=signing_keys["escalation"])
            await liar.publish(bus.EVENTS, key, body, message_id=message_id)
            await liar.close()
        elif how == "altered_body":
            headers = bus.sign_headers(signing_keys["intake"], "intake", key, message_id, body)
            await publisher.publish_raw(bus.EVENTS, key, body.replace(b"R-2", b"R-3"),
                                        message_id=message_id, headers=headers)
        elif how == "unknown":
            other = bus.Publisher(connection, producer="notifier", signing_key=signing_keys["notifier"])
            await other.publish(bus.EVENTS, key, body, message_id=message_id)
            await other.close()
        else:
            await publisher.publish(bus.EVENTS, key, body, message_id=message_id)
        parked = await get_one(connection, "escalation.events.parked")
    finally:
        await consumer.stop()
    assert handler.seen == []
    assert parked.message_id == message_id
    assert parked.headers["x-parked-reason"] == reason
    assert parked.headers["x-parked-from"] == "escalation.events"
    assert parked.headers["x-original-exchange"] == bus.EVENTS
    assert parked.headers["x-original-routing-key"] == key
    assert parked.headers["x-parked-at"].endswith("+00:00")
    assert parked.body.startswith(b'{"reference"')  # the original body, kept for inspection
    assert parked.delivery_mode == DeliveryMode.PERSISTENT
    assert await ready_count(connection, "escalation.events") == 0
    reliability.row("bus", forgery=how, parked_reason=reason, handled=len(handler.seen), parked=1)


async def test_reject_parks_at_once_with_its_reason(connection, publisher, verify_keys):
    async def reject(message, n):
        raise bus.Reject("schema_invalid")

    handler = Recorder(reject)
    consumer = await start_consumer(connection, publisher, REFERRAL_EVENTS, handler, verify_keys)
    try:
        message_id = new_id()
        await publisher.publish(bus.EVENTS, "referral.received", b"{}", message_id=message_id)
        parked = await get_one(connection, "escalation.events.parked")
        await asyncio.sleep(0.3)
    finally:
        await consumer.stop()
    assert parked.message_id == message_id
    assert parked.headers["x-parked-reason"] == "schema_invalid"
    assert parked.headers[bus.PRODUCER_HEADER] == "intake"  # original headers kept
    assert len(handler.seen) == 1


async def flaky_queue(connection, limit: int = 3) -> bus.QueueSpec:
    spec = bus.QueueSpec(f"test.flaky.{uuid.uuid4().hex[:6]}", bus.EVENTS, ("flaky.#",), delivery_limit=limit)
    async with connection.channel() as channel:
        await bus.declare_queue(channel, spec)
    return spec


async def test_always_failing_handler_is_parked_after_delivery_limit_attempts(connection, publisher, verify_keys):
    async def fail(message, n):
        raise RuntimeError("secret content must not leak")

    spec = await flaky_queue(connection, limit=3)
    handler = Recorder(fail)
    consumer = await start_consumer(connection, publisher, spec, handler, verify_keys, retry_backoff_s=0.05)
    try:
        message_id = new_id()
        await publisher.publish(bus.EVENTS, "flaky.one", b"{}", message_id=message_id)
        parked = await get_one(connection, spec.parking_queue)
        await asyncio.sleep(0.5)  # no further attempt arrives
    finally:
        await consumer.stop()
    assert parked.headers["x-parked-reason"] == "delivery_limit: RuntimeError"
    assert "secret" not in repr(parked.headers)
    assert len(handler.seen) == 3
    assert [m.delivery_count for m in handler.seen] == [0, 1, 2]
    assert [m.redelivered for m in handler.seen] == [False, True, True]
    assert await ready_count(connection, spec.parking_queue) == 0
    assert await ready_count(connection, spec.name) == 0


async def test_handler_failing_once_then_succeeding_is_processed(connection, publisher, verify_keys):
    seen_at: list[float] = []

    async def fail_first(message, n):
        seen_at.append(asyncio.get_running_loop().time())
        if n == 1:
            raise ConnectionError("transient")

    spec = await flaky_queue(connection)
    handler = Recorder(fail_first)
    consumer = await start_consumer(connection, publisher, spec, handler, verify_keys, retry_backoff_s=0.4)
    try:
        await publisher.publish(bus.EVENTS, "flaky.two", b"{}", message_id=new_id())
        await eventually(lambda: len(handler.seen) == 2)
        await eventually(lambda: not consumer._tasks)
    finally:
        await consumer.stop()
    assert handler.seen[0].message_id == handler.seen[1].message_id
    assert seen_at[1] - seen_at[0] >= 0.4  # backed off before the redelivery, not an instant requeue
    assert await ready_count(connection, spec.name) == 0
    assert await ready_count(connection, spec.parking_queue) == 0


async def test_no_signature_check_when_verify_keys_is_none(connection, publisher):
    handler = Recorder()
    spec = bus.QueueSpec("intake.submissions", bus.SUBMISSIONS, ("referral",))
    consumer = await start_consumer(connection, publisher, spec, handler, None)
    try:
        await publisher.publish_raw(bus.SUBMISSIONS, "referral", b"{}", message_id=new_id(),
                                    headers={"keyid": "dev-mash", "nonce": "n"})
        await eventually(lambda: len(handler.seen) == 1)
    finally:
        await consumer.stop()
    assert handler.seen[0].headers["keyid"] == "dev-mash"


@pytest.mark.slow
async def test_retry_delay_queue_returns_a_verifiable_message(connection, publisher, verify_keys):
    handler = Recorder()
    spec = bus.QueueSpec("notifier.requests", bus.EVENTS, ("notification.requested",))
    consumer = await start_consumer(connection, publisher, spec, handler, verify_keys)
    try:
        retry = bus.retry_queue_for(1)  # 5 s
        await publisher.publish("", retry, b'{"attempt":2}', message_id=new_id())
        await eventually(lambda: len(handler.seen) == 1, timeout=15)
    finally:
        await consumer.stop()
    assert handler.seen[0].routing_key == retry  # the key it was signed with
    assert await ready_count(connection, "notifier.requests.parked") == 0
