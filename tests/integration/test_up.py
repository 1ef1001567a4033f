"""`safeguard up` starts three real processes that answer /healthz, /readyz and /metrics,
and stop cleanly on SIGTERM."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import aiohttp
import pytest

from safeguard import keys

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_ready(session: aiohttp.ClientSession, url: str, timeout: float = 60) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            async with session.get(url) as resp:
                if resp.status == 200:
                    return await resp.json()
        except aiohttp.ClientError:
            pass
        if loop.time() > deadline:
            raise AssertionError(f"{url} not ready within {timeout}s")
        await asyncio.sleep(0.25)


async def test_up_runs_three_services_that_answer_health_and_stop_cleanly(tmp_path, amqp_url):
    config = keys.init(tmp_path)
    ports = {svc: free_port() for svc in ("intake", "escalation", "notifier")}
    env = {
        **os.environ,
        "SAFEGUARD_CONFIG": str(config),
        "SAFEGUARD_DATA_DIR": str(tmp_path),
        "SAFEGUARD_AMQP_URL": amqp_url,
        **{f"SAFEGUARD_{svc.upper()}_PORT": str(p) for svc, p in ports.items()},
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "safeguard", "up", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with aiohttp.ClientSession() as session:
            for svc, port in ports.items():
                assert await wait_ready(session, f"http://127.0.0.1:{port}/healthz") == {"status": "ok"}
                ready = await wait_ready(session, f"http://127.0.0.1:{port}/readyz")
                assert ready == {"status": "ok", "checks": {"database": True, "broker": True}}, svc
                async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    assert resp.status == 200
                    assert "safeguard_messages_published_total" in await resp.text()
                async with session.get(f"http://127.0.0.1:{port}/nope") as resp:
                    assert resp.status == 404
                    assert resp.content_type == "application/problem+json"
        assert {p.name for p in tmp_path.glob("*.db")} == {"intake.db", "escalation.db", "notifier.db"}
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, text[-3000:]
    for svc, port in ports.items():
        assert f"http://127.0.0.1:{port}/" in text
        assert f"{svc:<10} | " in text  # prefixed child output
    assert "service_ready" in text


async def test_up_stops_all_when_one_service_cannot_start(tmp_path, amqp_url):
    config = keys.init(tmp_path)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    env = {
        **os.environ, "SAFEGUARD_CONFIG": str(config), "SAFEGUARD_DATA_DIR": str(tmp_path),
        "SAFEGUARD_AMQP_URL": amqp_url, "SAFEGUARD_INTAKE_PORT": str(busy.getsockname()[1]),
        "SAFEGUARD_ESCALATION_PORT": str(free_port()), "SAFEGUARD_NOTIFIER_PORT": str(free_port()),
    }
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "safeguard", "up", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 90)
    finally:
        busy.close()
    assert proc.returncode == 1
    assert "intake exited; stopped the others" in out.decode()
