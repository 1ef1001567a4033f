"""`safeguard dev-watch`: under `safeguard up` (make run), the consumer of the queues no
service consumes: `ops.events`, `ops.alerts` and `control-room.<force>`.

In production a control-room system and the ops tooling read these; on a developer's
machine nothing did, so they grew into a backlog that looked like a fault. This stands in
for those readers: it takes each message off (ack) and prints one line in the console log,
so a newcomer sees the control-room alert arrive. A TTL was the other choice, but these are
quorum queues that dead-letter into `<queue>.parked`: an expiring message would land in a
parking queue, the very noise this is meant to stop, and a policy cannot lift that.
Only metadata is printed (the routing key and the fields below), never content.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from shared import bus
from shared.config import load_settings

SHOWN = ("reference", "kind", "level", "status", "channel", "template", "audience", "alert_id", "force")


def line(routing_key: str, body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        doc = {}
    fields = " ".join(f"{k}={doc[k]}" for k in SHOWN if isinstance(doc, dict) and isinstance(doc.get(k), str | int))
    return f"{routing_key} {fields}".rstrip()


def queues(forces: list[str]) -> list[str]:
    return [bus.OPS_EVENTS, bus.OPS_ALERTS, *(bus.control_room_queue(f).name for f in forces)]


async def watch(url: str, names: list[str], stop: asyncio.Event) -> None:
    connection = await bus.connect(url, name="safeguard-dev-watch", timeout=10)
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=50)
        for name in names:
            queue = await channel.declare_queue(name, passive=True)

            async def show(message, queue=name) -> None:
                async with message.process():
                    print(f"{queue}: {line(message.routing_key or '', message.body)}", flush=True)

            await queue.consume(show)
        print(f"watching {', '.join(names)} (what a control room and ops would read)", flush=True)
        await stop.wait()
    finally:
        await connection.close()


async def _main() -> int:
    settings = load_settings()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    names = queues([f.slug for f in settings.file.forces])
    for _ in range(60):  # the services declare the topology as they start
        try:
            await watch(settings.amqp_url, names, stop)
            return 0
        except Exception as exc:  # not declared yet, or the broker is away: try again
            if stop.is_set():
                return 0
            error = type(exc).__name__
        try:
            await asyncio.wait_for(stop.wait(), 2)
            return 0
        except TimeoutError:
            pass
    print(f"dev-watch: gave up ({error})", file=sys.stderr)
    return 1


def _cmd(_args: argparse.Namespace) -> int:
    return asyncio.run(_main())


def register(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("dev-watch", help="development: read ops.* and control-room.* and print one line each").set_defaults(
        func=_cmd)
