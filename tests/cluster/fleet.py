"""Service replicas for the cluster run: `safeguard serve NAME` processes (`ServiceProcess`),
each on its own HTTP port, given the list of the cluster's RabbitMQ nodes with its own node
first (`node_list`), logging JSON to a file the test reads afterwards (`log_entries`,
`events`, `broker_moves`).

`BrokerWatch` polls every replica's /readyz and records each broker-ready → not-ready →
ready transition, so the test can report who lost the broker and for how long.
"""
from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.support.processes import ServiceProcess


def node_list(first, nodes) -> str:
    """SAFEGUARD_AMQP_URL for a replica: node `first`, then the cluster's other nodes in order."""
    return ",".join(n.url for n in [first, *(n for n in nodes if n is not first)])


def replica(service: str, name: str, amqp_url: str, env: dict[str, str], logs: Path) -> ServiceProcess:
    """One replica of `service` on the RabbitMQ node(s) `amqp_url` names, its data in `logs/name`."""
    return ServiceProcess.serve(service, {**env, "SAFEGUARD_AMQP_URL": amqp_url, "SAFEGUARD_LOG_FORMAT": "json",
                                          "SAFEGUARD_DATA_DIR": str(logs / name)},
                                name=name, logs=logs, ready_interval=0.5)


def log_entries(replica: ServiceProcess) -> list[dict]:
    """This replica's JSON log lines (other lines skipped)."""
    out = []
    for line in replica.lines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out


def broker_moves(replica: ServiceProcess) -> list[dict]:
    """Each time this replica's bus connection lost its node: the node (host:port), the node it
    was connected to next and the seconds between (`broker_node_lost`, `broker_node_connected`)."""
    moves, lost = [], None
    for e in log_entries(replica):
        if e.get("event") == "broker_node_lost" and lost is None:
            lost = e
        elif e.get("event") == "broker_node_connected" and lost is not None:
            moves.append({"from": lost["node"], "to": e["node"], "seconds": e["seconds"]})
            lost = None
    if lost is not None:
        moves.append({"from": lost["node"], "to": None, "seconds": None})
    return moves


def events(replica: ServiceProcess) -> Counter:
    """How many times each log event name occurs in this replica's log."""
    return Counter(e.get("event", "?") for e in log_entries(replica))


@dataclass
class BrokerWatch:
    """Polls /readyz of every replica; `outages[name]` lists (lost_at, back_at or None)."""

    replicas: list[ServiceProcess]
    interval: float = 1.0
    outages: dict[str, list[list[float | None]]] = field(default_factory=dict)
    _task: asyncio.Task | None = None

    async def _poll(self, session: aiohttp.ClientSession, replica: ServiceProcess) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with session.get(f"{replica.url}/readyz") as resp:
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
