"""Least-privilege broker users (DESIGN §5, issue 18): one RabbitMQ user per service and per
AMQP client, permissions derived from the topology (shared/bus/permissions.py), checked
against the real broker on a fresh vhost."""
from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import tempfile
import time
from contextlib import asynccontextmanager

import aio_pika
import aiormq.exceptions
import pytest

from safeguard.bus_cli import declare_all
from shared import bus
from shared.bus import definitions as d
from shared.bus.permissions import client_permissions, declare_own, permissions_for
from tests.conftest import AMQP_HOST, _rabbitmqctl

FORCE = "dev-force"
CLIENTS = [("mash-a", "referrer", FORCE), ("cr-a", "control_room", FORCE), ("sc-a", "social_care", "E99999999")]
Refused = aiormq.exceptions.ChannelAccessRefused


def _matches(expr: str, name: str) -> bool:
    return re.search(expr, name) is not None  # RabbitMQ matches the same way (unanchored PCRE)


def test_expressions_follow_the_topology():
    intake, notifier = permissions_for("intake"), permissions_for("notifier")
    for queue in ("control-room.dev-force", "ops.alerts", "ops.events", "notifier.requests", "escalation.events",
                  "intake.submissions.parked", bus.topology.AUDIT_CHECKPOINTS):
        assert not _matches(intake.read, queue) and not _matches(intake.configure, queue), queue
    assert _matches(intake.read, "intake.submissions") and not _matches(intake.write, bus.ALERTS)
    assert _matches(notifier.configure, "notifier.retry.5s") and not _matches(notifier.configure, "notifier.retry.x")
    for svc in d.SERVICES:  # none may delete or declare the audit stream (it only appends, via amq.default)
        perm = permissions_for(svc)
        assert not _matches(perm.configure, bus.topology.AUDIT_CHECKPOINTS) and _matches(perm.write, "amq.default")
    mash = client_permissions("referrer", FORCE)
    assert (mash.configure, mash.read) == ("^$", "^$") and _matches(mash.write, bus.SUBMISSIONS)
    assert not _matches(mash.write, bus.EVENTS) and not _matches(mash.write, "amq.default")
    assert client_permissions("social_care", "E99999999") is None


@pytest.fixture
async def users(amqp_vhost, amqp_url):
    """The topology and every user on this vhost, made in one import of the definitions the
    compose broker loads at boot; the users are deleted afterwards (they are per broker)."""
    accounts = d.accounts(f"{amqp_vhost}-", CLIENTS)
    passwords = {a.name: d.new_password() for a in accounts}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(d.render(amqp_vhost, accounts, passwords) | d.topology(amqp_vhost, [FORCE], bus.DEFAULT_PARKING_TTL_S), f)
    os.chmod(f.name, 0o644)
    try:
        _rabbitmqctl("import_definitions", f.name)
    finally:
        os.unlink(f.name)
    urls = {a.name: d.url_for(f"amqp://{AMQP_HOST}:5672/", a.username, passwords[a.name], amqp_vhost)
            for a in accounts}
    deadline = time.monotonic() + 15
    for url in urls.values():  # the import is asynchronous
        while not await bus.ping(url, timeout=3):
            assert time.monotonic() < deadline, "the imported users never could connect"
            await asyncio.sleep(0.2)
    await declare_all(amqp_url, [FORCE], bus.DEFAULT_PARKING_TTL_S)  # same names and arguments: a no-op
    yield urls
    names = ",".join(f'<<"{a.username}">>' for a in accounts)
    subprocess.run(["rabbitmqctl", "eval", f'[rabbit_auth_backend_internal:delete_user(U, <<"tests">>) || U <- [{names}]].'],
                   capture_output=True, timeout=60)


@asynccontextmanager
async def channel_of(url: str):
    connection = await aio_pika.connect(url)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


async def refused(url: str, action) -> str:
    async with channel_of(url) as channel:
        with pytest.raises(Refused) as info:
            await action(channel)
    return str(info.value)


async def _ignore(_message) -> None:
    return None


async def _consume(channel, name: str) -> None:
    queue = await channel.get_queue(name, ensure=False)
    await queue.consume(_ignore)


async def _publish(channel, exchange: str, key: str, **props) -> None:
    target = channel.default_exchange if exchange == "" else await channel.get_exchange(exchange, ensure=False)
    await target.publish(aio_pika.Message(b"{}", **props), key, mandatory=True)


async def test_intakes_user_cannot_read_control_room_or_touch_other_queues(users, amqp_url, reliability):
    intake = users["intake"]
    async with channel_of(intake) as channel:  # what it needs works: its own queue, events, the stream
        await declare_own(channel, "intake")
        await _publish(channel, bus.EVENTS, "referral.received")
        await _publish(channel, "", bus.topology.AUDIT_CHECKPOINTS)
        await (await channel.get_queue(bus.INTAKE_SUBMISSIONS, ensure=False)).get(fail=False)
    msg = await refused(intake, lambda ch: _consume(ch, "control-room.dev-force"))
    assert "ACCESS_REFUSED" in msg and "control-room.dev-force" in msg
    await refused(intake, lambda ch: _consume(ch, bus.NOTIFIER_REQUESTS))
    await refused(intake, lambda ch: _consume(ch, "intake.submissions.parked"))  # parked content is ops'
    await refused(intake, lambda ch: _publish(ch, bus.ALERTS, "control-room.dev-force"))

    async def tap_alerts(ch):  # bind its own queue to the alerts: read on the exchange is refused
        await (await ch.get_queue(bus.INTAKE_SUBMISSIONS, ensure=False)).bind(bus.ALERTS, "#")
    await refused(intake, tap_alerts)

    async def delete_stream(ch):
        await ch.queue_delete(bus.topology.AUDIT_CHECKPOINTS)
    await refused(intake, delete_stream)
    await refused(intake, lambda ch: ch.declare_queue("intake.extra", durable=True))
    reliability.row("attacks", finding="least privilege", attack="as intake's broker user: consume "
                    "control-room.dev-force, notifier.requests and intake.submissions.parked, publish an alert, "
                    "bind its queue to the alerts exchange, delete the audit checkpoint stream, declare a queue",
                    before="every service connected as one user with `.*` configure/write/read: all of it allowed",
                    after="ACCESS_REFUSED for each of the 7 (its own queue, events and the stream's append still work)")


async def test_a_mash_client_can_only_publish_submissions(users, amqp_url, reliability):
    mash = users["mash-a"]
    async with channel_of(mash) as channel:
        await _publish(channel, bus.SUBMISSIONS, "referral", message_id="m-1")
        replies = await channel.get_queue("amq.rabbitmq.reply-to", ensure=False)  # direct reply-to needs no permission
        await replies.consume(_ignore, no_ack=True)
        await _publish(channel, bus.SUBMISSIONS, "referral", message_id="m-2", reply_to="amq.rabbitmq.reply-to")
    async with channel_of(amqp_url) as admin:
        queue = await admin.declare_queue(bus.INTAKE_SUBMISSIONS, passive=True)
        assert queue.declaration_result.message_count == 2
    for queue in (bus.INTAKE_SUBMISSIONS, "control-room.dev-force", "ops.events", "intake.submissions.parked"):
        await refused(mash, lambda ch, q=queue: _consume(ch, q))
    await refused(mash, lambda ch: ch.declare_queue("mash-a.replies", durable=True))
    await refused(mash, lambda ch: ch.declare_queue(exclusive=True))  # not even a server-named one
    await refused(mash, lambda ch: _publish(ch, bus.EVENTS, "referral.received"))
    await refused(mash, lambda ch: _publish(ch, "", bus.INTAKE_SUBMISSIONS))  # no side door by the default exchange
    await refused(mash, lambda ch: _publish(ch, bus.DEAD_LETTER, bus.INTAKE_SUBMISSIONS))
    reliability.row("attacks", finding="least privilege", attack="as a MASH client's broker user: consume "
                    "intake.submissions, control-room.dev-force, ops.events and the parked submissions, declare a "
                    "queue (named or server-named), publish to the events exchange, the default exchange and the "
                    "dead-letter exchange",
                    before="MASH systems were given the services' user: every queue readable, every exchange writable",
                    after="ACCESS_REFUSED for each of the 9; publishing a submission (with direct reply-to) works")


async def test_a_control_room_user_reads_its_own_alert_queue_only(users):
    room = users["cr-a"]
    async with channel_of(room) as channel:
        await _consume(channel, "control-room.dev-force")
    await refused(room, lambda ch: _consume(ch, bus.OPS_ALERTS))
    await refused(room, lambda ch: _publish(ch, bus.SUBMISSIONS, "referral"))


async def test_each_service_runs_a_referral_end_to_end_with_its_own_user(users, amqp_url, tmp_path):
    """Out of hours, so all three act: intake publishes, escalation alerts the control room,
    the notifier delivers; each connected as its own user, none declaring beyond its own."""
    from tests.factories import referral
    from tests.integration.e2e import running_system, until
    from tests.integration.test_end_to_end import at, next_day

    saturday = next_day(5, working_after=2)
    service_urls = {svc: users[svc] for svc in d.SERVICES}
    async with running_system(tmp_path, amqp_url, at(saturday, 10), service_urls=service_urls) as system:
        resp = await system.submit(referral())
        assert resp.status == 202, await resp.text()
        ref = (await resp.json())["reference"]
        await until(lambda: system.smtp.mails and "alert.raised" in system.tapped_keys(), timeout=60)
        await until(lambda: system.tapped_keys().count("notification.sent") >= 1, timeout=60)
        async with channel_of(users["cr-a"]) as channel:  # the control room reads it as its own user
            queue = await channel.get_queue("control-room.dev-force", ensure=False)
            alert = await queue.get(timeout=10)
            assert json.loads(alert.body)["reference"] == ref
    names = {svc: st.amqp_url_for(svc) for svc, st in system.settings.items()}
    assert names == service_urls and all(system.settings[s].own_broker_user(s) for s in d.SERVICES)
