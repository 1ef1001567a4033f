"""`safeguard up` starts three real processes that answer /healthz and /readyz on their public
ports and /metrics on a port of their own (never the public one), and stop cleanly on SIGTERM."""
from __future__ import annotations

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
