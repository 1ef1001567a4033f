"""The faults, each a bounded coroutine that breaks one thing, heals it and waits until the
services say they are ready again; each returns the `Fault` window the checker uses.

Restarting the shared RabbitMQ or PostgreSQL server disturbs every other test on the
machine, so those two run only with FAULTS_RESTART_SERVERS=1.
"""
from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

from tests.faults.checker import Fault
from tests.faults.harness import Rig, all_ready

SMTP_REFUSE_S, SMTP_DOWN_S = 20.0, 10.0
LATENCY_S, LATENCY_FOR_S = 0.25, 15.0
CUT_FOR_S = 5.0


def _run(*cmd: str, timeout: float = 120) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout


async def kill_9(rig: Rig, name: str) -> Fault:
    start = time.time()
    code = await rig.services[name].kill9()
    assert code == -9, code
    await rig.services[name].start()
    await rig.services[name].ready()
    return Fault(f"kill -9 {name}, restart", start, time.time())


async def close_connections(rig: Rig) -> Fault:
    """Every broker connection of the run's vhost (the services' and the test's own tap)."""
    start = time.time()
    await asyncio.to_thread(_run, "rabbitmqctl", "-q", "close_all_connections", "--vhost", rig.vhost,
                            "--limit", "10000", "fault injection")
    await asyncio.sleep(1)
    await all_ready(rig)
    return Fault("close every broker connection (vhost)", start, time.time())


async def smtp_refuses(rig: Rig) -> Fault:
    start = time.time()
    rig.sink.refuse(True)
    try:
        await asyncio.sleep(SMTP_REFUSE_S)
    finally:
        rig.sink.refuse(False)
    return Fault(f"SMTP answers 451 for {SMTP_REFUSE_S:.0f} s", start, time.time())


async def smtp_down(rig: Rig) -> Fault:
    start = time.time()
    await asyncio.to_thread(rig.sink.stop)
    try:
        await asyncio.sleep(SMTP_DOWN_S)
    finally:
        await asyncio.to_thread(rig.sink.start)
    return Fault(f"SMTP server stopped for {SMTP_DOWN_S:.0f} s", start, time.time())


async def broker_slow(rig: Rig) -> Fault:
    start = time.time()
    rig.proxy.latency_s = LATENCY_S
    try:
        await asyncio.sleep(LATENCY_FOR_S)
    finally:
        rig.proxy.latency_s = 0.0
    return Fault(f"broker path +{LATENCY_S * 1000:.0f} ms per chunk for {LATENCY_FOR_S:.0f} s", start, time.time())


async def broker_cut(rig: Rig) -> Fault:
    start = time.time()
    rig.proxy.cut()
    try:
        await asyncio.sleep(CUT_FOR_S)
    finally:
        rig.proxy.restore()
    await all_ready(rig)
    return Fault(f"broker path cut for {CUT_FOR_S:.0f} s", start, time.time())


async def restart_rabbitmq(rig: Rig) -> Fault:
    """The whole node's app (every vhost on it): FAULTS_RESTART_SERVERS=1 only."""
    start = time.time()
    try:
        await asyncio.to_thread(_run, "rabbitmqctl", "-q", "stop_app")
    finally:  # never leave the shared broker stopped
        await asyncio.to_thread(_run, "rabbitmqctl", "-q", "start_app")
    await asyncio.to_thread(_run, "rabbitmqctl", "-q", "await_startup")
    await all_ready(rig, timeout=180)
    return Fault("restart RabbitMQ (stop_app / start_app)", start, time.time())


async def restart_postgres(rig: Rig) -> Fault:
    """The whole PostgreSQL cluster (fast shutdown): FAULTS_RESTART_SERVERS=1 only."""
    version = max((p.name for p in Path("/etc/postgresql").iterdir()),
                  key=lambda v: tuple(int(x) for x in v.split(".") if x.isdigit()))
    start = time.time()
    ctl = ("pg_ctlcluster", "--skip-systemctl-redirect", version, "main")
    try:
        await asyncio.to_thread(_run, *ctl, "restart", "-m", "fast")
    except (RuntimeError, subprocess.TimeoutExpired):
        subprocess.run([*ctl, "start"], capture_output=True, timeout=120)  # never leave it stopped
        raise
    await all_ready(rig, timeout=180)
    return Fault("restart PostgreSQL (pg_ctlcluster restart -m fast)", start, time.time())
