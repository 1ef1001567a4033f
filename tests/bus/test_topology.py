"""Topology: exchanges and quorum queues exist with the §6 arguments; declaring is idempotent."""
from __future__ import annotations

import json

import aiormq.exceptions
import pytest

from shared import bus
from tests.bus.helpers import get_one, new_id


def test_names_and_retry_schedule():
    assert bus.control_room_queue("met") == bus.QueueSpec("control-room.met", bus.ALERTS, ("control-room.met",))
    assert bus.control_room_queue("met").parking_queue == "control-room.met.parked"
    assert [bus.retry_queue_for(n) for n in (1, 2, 5, 6)] == [
        "notifier.retry.5s", "notifier.retry.30s", "notifier.retry.1800s", "notifier.retry.1800s"]
    names = [q.name for q in bus.all_queues(["a", "b"])]
    assert names == ["intake.submissions", "escalation.events", "notifier.requests", "ops.alerts",
                     "ops.events", "control-room.a", "control-room.b"]


def list_queues(rabbitmqctl, vhost: str) -> dict[str, tuple[str, bool, dict]]:
    out = rabbitmqctl("list_queues", "-p", vhost, "--formatter", "json", "name", "type", "durable", "arguments")
    return {q["name"]: (q["type"], q["durable"], {a[0]: a[2] for a in q["arguments"]}) for q in json.loads(out)}


@pytest.mark.broker
async def test_declare_topology_twice_creates_quorum_queues_with_limits(connection, amqp_vhost, rabbitmqctl):
    async with connection.channel() as channel:
        await bus.declare_topology(channel, ["dev-force", "met"])
        await bus.declare_topology(channel, ["dev-force", "met"])  # idempotent

    exchanges = json.loads(rabbitmqctl("list_exchanges", "-p", amqp_vhost, "--formatter", "json",
                                       "name", "type", "durable"))
    found = {e["name"]: (e["type"], e["durable"]) for e in exchanges}
    assert found[bus.EVENTS] == ("topic", True)
    assert found[bus.ALERTS] == ("topic", True)
    assert found[bus.SUBMISSIONS] == ("direct", True)
    assert found[bus.DEAD_LETTER] == ("direct", True)

    queues = list_queues(rabbitmqctl, amqp_vhost)
    for name in ("intake.submissions", "escalation.events", "notifier.requests", "ops.alerts", "ops.events",
                 "control-room.dev-force", "control-room.met"):
        kind, durable, args = queues[name]
        assert (kind, durable) == ("quorum", True)
        assert args == {
            "x-queue-type": "quorum", "x-delivery-limit": 5,
            "x-dead-letter-exchange": "safeguard.dead-letter", "x-dead-letter-routing-key": name,
            "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish",
        }
        assert queues[f"{name}.parked"] == ("quorum", True, {"x-queue-type": "quorum",
                                                            "x-message-ttl": bus.DEFAULT_PARKING_TTL_S * 1000})
    for delay in bus.RETRY_DELAYS_S:
        kind, durable, args = queues[f"notifier.retry.{delay}s"]
        assert (kind, durable) == ("quorum", True)
        assert args["x-message-ttl"] == delay * 1000
        assert args["x-dead-letter-exchange"] == ""
        assert args["x-dead-letter-routing-key"] == "notifier.requests"
    kind, durable, args = queues["safeguard.audit.checkpoints"]  # issue 18 #2: outside the services' tables
    assert (kind, durable, args) == ("stream", True, {"x-queue-type": "stream", "x-max-age": "10Y"})
    assert len(queues) == 7 * 2 + len(bus.RETRY_DELAYS_S) + 1


@pytest.mark.broker
async def test_redeclare_with_other_arguments_is_refused(connection, topology):
    channel = await connection.channel()
    try:
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
            await channel.declare_queue("escalation.events", durable=True, robust=False,
                                        arguments={"x-queue-type": "quorum", "x-delivery-limit": 99})
    finally:
        await channel.close()


@pytest.mark.broker
@pytest.mark.parametrize("exchange,key,queue", [
    (bus.SUBMISSIONS, "referral", "intake.submissions"),
    (bus.EVENTS, "referral.received", "escalation.events"),
    (bus.EVENTS, "notification.requested", "notifier.requests"),
    (bus.EVENTS, "referral.feedback_released", "notifier.requests"),
    (bus.EVENTS, "referral.checks_completed", "notifier.requests"),
    (bus.EVENTS, "notification.failed", "ops.events"),
    (bus.ALERTS, "ops.outbox.lag", "ops.alerts"),
    (bus.EVENTS, "deadline.breached", "ops.events"),
    (bus.EVENTS, "alert.raised", "ops.events"),
    (bus.EVENTS, "alert.acknowledged", "notifier.requests"),  # status callbacks (DESIGN §3.6)
    (bus.EVENTS, "referral.track_closed", "notifier.requests"),
    (bus.ALERTS, "control-room.dev-force", "control-room.dev-force"),
    (bus.DEAD_LETTER, "escalation.events", "escalation.events.parked"),
])
async def test_bindings_route_to_the_right_queue(connection, publisher, exchange, key, queue):
    message_id = new_id()
    await publisher.publish(exchange, key, b"{}", message_id=message_id)
    assert (await get_one(connection, queue)).message_id == message_id


@pytest.mark.broker
async def test_ping_and_is_connected(amqp_url, amqp_vhost, connection, rabbitmqctl):
    listed = json.loads(rabbitmqctl("list_connections", "--formatter", "json", "vhost", "client_properties"))
    ours = [c for c in listed if c["vhost"] == amqp_vhost]
    assert any(["connection_name", "longstr", "test-bus"] in c["client_properties"] for c in ours)
    assert await bus.ping(amqp_url)
    assert not await bus.ping(amqp_url.replace("guest:guest", "guest:wrong"), timeout=2)
    assert bus.is_connected(connection)
    await connection.close()
    assert not bus.is_connected(connection)
