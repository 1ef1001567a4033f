"""Service replicas as real processes (`python -m safeguard serve NAME`), each on its own
HTTP port and its own RabbitMQ node, logging JSON to a file the test reads afterwards.

`BrokerWatch` polls every replica's /readyz and records each broker-ready → not-ready →
ready transition, so the test can report who lost the broker and for how long.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests import readiness
from tests.cluster.rabbit import free_port


@dataclass
class Replica:
    service: str
    name: str
    node: str
    amqp_url: str
    log: Path
    port: int = field(default_factory=free_port)
    proc: asyncio.subprocess.Process | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_entries(self) -> list[dict]:
        """This replica's JSON log lines (other lines skipped)."""
        out = []
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                out.append(entry)
        return out

    def events(self) -> Counter:
        """How many times each log event name occurs in this replica's log."""
        return Counter(e.get("event", "?") for e in self.log_entries())


async def start(replica: Replica, env: dict[str, str]) -> None:
    with open(replica.log, "wb") as out:
        replica.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "safeguard", "serve", replica.service, "--port", str(replica.port),
            env={**os.environ, **env, "SAFEGUARD_AMQP_URL": replica.amqp_url, "SAFEGUARD_LOG_FORMAT": "json"},
            stdout=out, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL)


async def wait_ready(replica: Replica, timeout: float = 120) -> None:
    await readiness.wait_ready(replica.base, alive=lambda: replica.proc is None or replica.proc.returncode is None,
                               name=replica.name, timeout=timeout, interval=0.5,
                               tail=lambda: replica.log.read_text()[-2000:])


async def stop(replicas: list[Replica], grace: float = 30) -> dict[str, int | None]:
    """SIGTERM every replica, SIGKILL what is left after `grace`; returns exit codes."""
    running = [r for r in replicas if r.proc is not None and r.proc.returncode is None]
    for r in running:
        r.proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.gather(*(r.proc.wait() for r in running)), grace)
    except TimeoutError:
        for r in running:
            if r.proc.returncode is None:
                r.proc.kill()
        await asyncio.gather(*(r.proc.wait() for r in running))
    return {r.name: r.proc.returncode for r in replicas if r.proc is not None}


async def metric_total(session: aiohttp.ClientSession, replica: Replica, name: str) -> float:
    """Sum of every sample of the Prometheus metric `name` on one replica."""
    async with session.get(f"{replica.base}/metrics") as resp:
        text = await resp.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name)] in "{ ":
            total += float(line.rsplit(" ", 1)[1])
    return total


@dataclass
class BrokerWatch:
    """Polls /readyz of every replica; `outages[name]` lists (lost_at, back_at or None)."""

    replicas: list[Replica]
    interval: float = 1.0
    outages: dict[str, list[list[float | None]]] = field(default_factory=dict)
    _task: asyncio.Task | None = None

    async def _poll(self, session: aiohttp.ClientSession, replica: Replica) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with session.get(f"{replica.base}/readyz") as resp:
                    broker = (await resp.json()).get("checks", {}).get("broker", False)
            except (aiohttp.ClientError, ValueError, asyncio.TimeoutError):
                await asyncio.sleep(self.interval)  # no answer (busy): says nothing about the broker
                continue
            spans = self.outages.setdefault(replica.name, [])
            if not broker and (not spans or spans[-1][1] is not None):
                spans.append([loop.time(), None])
            elif broker and spans and spans[-1][1] is None:
                spans[-1][1] = loop.time()
            await asyncio.sleep(self.interval)

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(self._poll(session, r) for r in self.replicas))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
