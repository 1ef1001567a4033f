"""`safeguard up` starts three real processes that answer /healthz and /readyz on their public
ports and /metrics on a port of their own (never the public one), and stop cleanly on SIGTERM."""
from __future__ import annotations

import asyncio
import re
import socket

import aiohttp
import pytest

from safeguard import devidp, keys
from tests.support.processes import ServiceProcess, free_port, port_env

pytestmark = [pytest.mark.broker, pytest.mark.slow]
SERVICES = ("intake", "escalation", "notifier")


async def test_up_runs_three_services_that_answer_health_and_stop_cleanly(tmp_path, amqp_url):
    config = keys.init(tmp_path)
    idp_port = free_port()  # the development identity provider, on a port of the test's own
    config.write_text(config.read_text().replace(devidp.issuer(), devidp.issuer(idp_port)))
    ports = {svc: free_port() for svc in SERVICES}
    metrics_ports = {svc: free_port() for svc in SERVICES}
    env = {"SAFEGUARD_CONFIG": str(config), "SAFEGUARD_DATA_DIR": str(tmp_path), "SAFEGUARD_AMQP_URL": amqp_url}
    for svc, port in ports.items():
        env |= port_env(svc, port, metrics_ports[svc])
    up = ServiceProcess.cli("up", env=env, logs=tmp_path)
    await up.start()
    try:
        async with aiohttp.ClientSession() as session:
            for svc, port in ports.items():
                base = f"http://127.0.0.1:{port}"
                for path, want in (("/healthz", {"status": "ok"}),
                                   ("/readyz", {"status": "ok", "checks": {"database": True, "broker": True}})):
                    await up.ready(60, url=base, path=path)
                    async with session.get(base + path) as resp:
                        assert await resp.json() == want, svc
                async with session.get(f"{base}/metrics") as resp:  # not on the public port
                    assert resp.status == 404, svc
                async with session.get(f"http://127.0.0.1:{metrics_ports[svc]}/metrics") as resp:
                    assert resp.status == 200
                    assert resp.content_type == "text/plain"
                    assert "safeguard_messages_published_total" in await resp.text()
                async with session.get(f"{base}/nope") as resp:
                    assert resp.status == 404
                    assert resp.content_type == "application/problem+json"
        assert {p.name for p in tmp_path.glob("*.db")} == {"intake.db", "escalation.db", "notifier.db"}
        await up.ready(60, url=devidp.issuer(idp_port), path="/.well-known/openid-configuration")
    finally:
        code = await up.stop(grace=60)
    text = up.output()
    assert code == 0, text[-3000:]
    for svc, port in ports.items():
        assert f"http://127.0.0.1:{port}/" in text
        assert f"http://127.0.0.1:{metrics_ports[svc]}/metrics" in text  # where Prometheus reads it
        assert f"{svc:<10} | " in text  # prefixed child output
    assert "service_ready" in text
    assert f"sign-in    {devidp.issuer(idp_port)}/" in text  # how to sign in as each dev person
    assert f"http://127.0.0.1:{ports['intake']}/referrals" in text  # every page, with its URL
    assert f"http://127.0.0.1:{ports['escalation']}/console" in text and "Deprecation" not in text
    for person in devidp.DEV_PEOPLE:
        assert person.sub in text and person.name in text


async def test_up_stops_all_when_one_service_cannot_start(tmp_path, amqp_url):
    config = keys.init(tmp_path)
    busy = socket.socket()  # intake's port, taken
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    up = ServiceProcess.cli("up", env={
        "SAFEGUARD_CONFIG": str(config), "SAFEGUARD_DATA_DIR": str(tmp_path), "SAFEGUARD_AMQP_URL": amqp_url,
        **port_env("intake", busy.getsockname()[1]), **port_env("escalation", free_port()),
        **port_env("notifier", free_port())}, logs=tmp_path)
    try:
        await up.start()
        code = await up.wait(90)
    finally:
        busy.close()
        await up.stop()
    assert code == 1
    assert "intake exited; stopped the others" in up.output()


async def test_up_init_runs_on_a_dev_vhost_with_a_user_per_service_and_watches_alert_queues(tmp_path):
    """issue 18/19: `up --init` makes the data directory's own vhost and one least-privilege
    user per service (passwords 0600 in the data directory), declares the topology as the
    administrator, runs each service as its own user, and the dev watcher takes what lands on
    control-room.* and ops.* (no fake backlog), printing one line of metadata."""
    import aio_pika
    from safeguard import devbroker
    from shared import bus
    from shared.bus import definitions as d
    from tests.conftest import AMQP_HOST, _rabbitmqctl

    config = keys.init(tmp_path)
    idp_port = free_port()
    config.write_text(config.read_text().replace(devidp.issuer(), devidp.issuer(idp_port)))
    vhost = devbroker.dev_vhost(tmp_path)
    env = {"SAFEGUARD_DATA_DIR": str(tmp_path), "SAFEGUARD_AMQP_URL": f"amqp://guest:guest@{AMQP_HOST}:5672/"}
    ports = {svc: free_port() for svc in SERVICES}
    for svc, port in ports.items():
        env |= port_env(svc, port)
    up = ServiceProcess.cli("up", "--init", env=env, logs=tmp_path)
    passwords: dict[str, str] = {n: "" for n in (*SERVICES, "dev-mash", "dev-control-room")}
    await up.start()
    try:
        for svc, port in ports.items():
            await up.ready(90, url=f"http://127.0.0.1:{port}")
        state = tmp_path / devbroker.STATE
        assert state.stat().st_mode & 0o777 == 0o600
        passwords = __import__("json").loads(state.read_text())["passwords"]
        assert set(SERVICES) | {"dev-mash", "dev-control-room"} <= set(passwords)
        conns = _rabbitmqctl("list_connections", "user", "vhost", "client_properties")
        for svc in SERVICES:
            assert re.search(rf"^{vhost}-{svc}\t{vhost}\t.*safeguard-{svc}", conns, re.M), conns
        admin = d.url_for(env["SAFEGUARD_AMQP_URL"], "guest", "guest", vhost)
        connection = await aio_pika.connect(admin)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(bus.ALERTS, ensure=False)
            await exchange.publish(aio_pika.Message(b'{"reference": "SG-TEST-1", "level": "control_room"}'),
                                   "control-room.dev-force", mandatory=True)
            for _ in range(100):
                if "control-room.dev-force: control-room.dev-force reference=SG-TEST-1" in up.output():
                    break
                await asyncio.sleep(0.1)
            queue = await channel.declare_queue("control-room.dev-force", passive=True)
            assert queue.declaration_result.message_count == 0
            assert queue.declaration_result.consumer_count == 1
    finally:
        code = await up.stop(grace=60)
        _rabbitmqctl("eval", f'rabbit_vhost:delete(<<"{vhost}">>, <<"tests">>), '
                     + f'[rabbit_auth_backend_internal:delete_user(<<"{vhost}-", U/binary>>, <<"tests">>) '
                     + f'|| U <- [{",".join(f"<<{chr(34)}{n}{chr(34)}>>" for n in passwords)}]].')
    text = up.output()
    assert code == 0, text[-3000:]
    assert f"broker: vhost {vhost}, one least-privilege user per service" in text
    assert "control-room.dev-force: control-room.dev-force reference=SG-TEST-1" in text
