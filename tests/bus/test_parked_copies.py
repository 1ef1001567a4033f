"""Parked copies on the service queues keep no sealed section (issue 18 #3), and every
parking queue has a message TTL (issue 18 #1), against the real broker.

The escalation and notifier consumers park through their real dispatch tables: an event
the table does not know, one from the wrong producer, a handler that keeps failing. The
bus messages carry ids and codes in clear and content only sealed (`contacts_sealed`);
a parked copy drops every `*_sealed` field, at any depth, and says which it dropped."""
from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs

from services.escalation.entrypoints.amqp import DISPATCH as ESCALATION
from services.notifier.entrypoints.amqp import DISPATCH as NOTIFIER
from shared import bus
from shared.messages import Holding, NotificationRequested, RetryCopy
from tests.bus.helpers import Recorder, get_one, new_id, ready_count
from tests.factories import referral_received
from tests.bus.test_topology import list_queues

pytestmark = pytest.mark.broker
NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
ENVELOPE = {"v": 1, "alg": "XChaCha20-Poly1305", "key_version": 1, "nonce": "bm9uY2U=",
            "ciphertext": "Y2lwaGVydGV4dA==", "recipients": [{"key_id": "notifier-1", "sealed_key": "c2VhbGVk"}]}


def request(**over) -> NotificationRequested:
    return NotificationRequested(**{
        "notification_id": "n1", "referral_id": "r1", "reference": "SR-2026-000001", "template": "receipt",
        "audience": "referrer", "la_code": "E99999999", "force": "dev-force",
        "holding": Holding(no_further_sharing=True, no_family_contact=True), "requested_at": NOW,
        "contacts_sealed": ENVELOPE, **over})


def sealed_keys(value, path: str = "") -> list[str]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in
                ([f"{path}{k}"] if k.endswith("_sealed") else []) + sealed_keys(v, f"{path}{k}.")]
    if isinstance(value, list):
        return [p for v in value for p in sealed_keys(v, path)]
    return []


async def park(connection, publisher, spec, handler, publish, verify_keys, allowed):
    consumer = bus.Consumer(connection, spec, handler, publisher=publisher, verify_keys=verify_keys,
                            allowed_producers=allowed, retry_backoff_s=0.01)
    await consumer.start()
    try:
        await publish()
        return await get_one(connection, spec.parking_queue, timeout=15)
    finally:
        await consumer.stop()


async def table_handler(table, message: bus.BusMessage) -> None:
    table.parse(message)
    raise RuntimeError("the handler keeps failing")


@pytest.mark.parametrize("case", ["unknown_event", "producer_not_allowed_for_key", "delivery_limit"])
async def test_a_parked_escalation_event_keeps_no_sealed_section(case, connection, publisher, verify_keys,
                                                                  signing_keys):
    body = json.loads(request().to_bytes()) | {"feedback_sealed": ENVELOPE}  # a stray one, too
    key, producer = {"unknown_event": ("referral.reopened", "intake"),
                     "producer_not_allowed_for_key": ("referral.received", "escalation"),
                     "delivery_limit": ("referral.received", "intake")}[case]
    if case == "delivery_limit":  # a valid event its handler keeps failing on
        body = json.loads(referral_received(NOW, reference="SR-2026-000001", contacts_sealed=ENVELOPE).to_bytes())
    raw, message_id = json.dumps(body).encode(), new_id()
    sender = bus.Publisher(connection, producer=producer, signing_key=signing_keys[producer])

    async def publish():
        await sender.publish(bus.EVENTS, key, raw, message_id=message_id)

    handler = Recorder(lambda m, n: table_handler(ESCALATION, m)) if case == "delivery_limit" else \
        Recorder(lambda m, n: ESCALATION(m))
    try:
        parked = await park(connection, publisher, bus.queue_spec(bus.ESCALATION_EVENTS), handler, publish,
                            verify_keys, {"intake", "escalation"})
    finally:
        await sender.close()
    assert parked.headers["x-parked-reason"] == ("delivery_limit: RuntimeError" if case == "delivery_limit" else case)
    assert sealed_keys(json.loads(parked.body)) == []
    assert b"_sealed" not in parked.body and b"ciphertext" not in parked.body
    stripped = {"delivery_limit": "contacts_sealed"}.get(case, "contacts_sealed,feedback_sealed")
    assert (parked.headers["x-parked-form"], parked.headers["x-parked-stripped"]) == ("stripped", stripped)
    assert json.loads(parked.body)["reference"] == "SR-2026-000001"  # the ids and codes stay


async def test_a_parked_notifier_retry_copy_loses_its_nested_sealed_section(connection, publisher, verify_keys,
                                                                             signing_keys):
    copy = RetryCopy(channel="email", attempt=2, request=request())
    assert sealed_keys(json.loads(copy.to_bytes())) == ["request.contacts_sealed"]
    notifier = bus.Publisher(connection, producer="notifier", signing_key=signing_keys["notifier"])

    async def publish():  # as it returns from a delay queue: straight to the work queue
        await notifier.publish("", bus.NOTIFIER_REQUESTS, copy.to_bytes(), message_id=new_id())

    async def reject(message, n):
        raise bus.Reject(NOTIFIER.unknown)

    try:
        parked = await park(connection, publisher, bus.queue_spec(bus.NOTIFIER_REQUESTS), Recorder(reject),
                            publish, verify_keys, NOTIFIER.producers)
    finally:
        await notifier.close()
    assert parked.headers["x-parked-reason"] == "unexpected_routing_key"
    assert (parked.headers["x-parked-form"], parked.headers["x-parked-stripped"]) == (
        "stripped", "request.contacts_sealed")
    assert sealed_keys(json.loads(parked.body)) == [] and json.loads(parked.body)["request"]["reference"]


async def test_a_message_without_sealed_sections_is_parked_unchanged(connection, publisher, verify_keys):
    async def reject(message, n):
        raise bus.Reject("schema_invalid")

    body = b'{"reference":"R-1"}'

    async def publish():
        await publisher.publish(bus.EVENTS, "referral.closed", body, message_id=new_id())

    parked = await park(connection, publisher, bus.queue_spec(bus.ESCALATION_EVENTS), Recorder(reject), publish,
                        verify_keys, {"intake"})
    assert parked.body == body and parked.headers["x-parked-form"] == "original"
    assert "x-parked-stripped" not in parked.headers and parked.headers[bus.SIGNATURE_HEADER]


async def test_every_parking_queue_has_the_message_ttl(connection, amqp_vhost, rabbitmqctl):
    async with connection.channel() as channel:
        await bus.declare_topology(channel, ["dev-force"], parking_ttl_s=3 * 86400)
    queues = list_queues(rabbitmqctl, amqp_vhost)
    parked = {name: args for name, (_, _, args) in queues.items() if name.endswith(".parked")}
    assert len(parked) == 6
    assert {name: args.get("x-message-ttl") for name, args in parked.items()} == {
        name: 3 * 86400 * 1000 for name in parked}
    assert bus.DEFAULT_PARKING_TTL_S == 14 * 86400


async def test_a_parking_queue_declared_before_the_ttl_is_kept_with_a_warning(connection, amqp_vhost, rabbitmqctl,
                                                                              publisher):
    spec = bus.QueueSpec(f"test.old.{new_id()[:6]}", bus.EVENTS, ("old.#",))
    async with connection.channel() as channel:  # as an earlier version declared it
        await channel.declare_queue(spec.parking_queue, durable=True, arguments={"x-queue-type": "quorum"})
    with capture_logs() as logs:
        async with connection.channel() as channel:
            await bus.declare_queue(channel, spec)
            await bus.declare_queue(channel, spec)  # the channel still works afterwards
    warned = [e for e in logs if e["event"] == "parking_queue_without_ttl"]
    assert [e["queue"] for e in warned] == [spec.parking_queue] * 2
    assert list_queues(rabbitmqctl, amqp_vhost)[spec.parking_queue][2] == {"x-queue-type": "quorum"}
    await publisher.publish(bus.DEAD_LETTER, spec.name, b"{}", message_id=new_id())  # still bound
    assert await ready_count(connection, spec.parking_queue) == 1
