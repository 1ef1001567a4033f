"""The system under test, started and always stopped: the three services as processes
(their broker path through the proxy), the mail sink and the control-room tap."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from safeguard import keys
from shared.bus import topology
from tests.faults import expect
from tests.faults.observe import ControlRoomTap, TimedSink
from tests.faults.proxy import Proxy
from tests.support.loadrun import load_run_config
from tests.support.processes import ServiceProcess

SERVICES = ("intake", "escalation", "notifier")


@dataclass
class Rig:
    services: dict[str, ServiceProcess]
    sink: TimedSink
    proxy: Proxy
    vhost: str
    tap: ControlRoomTap
    keys_dir: Path
    exit_codes: dict[str, int | None] = field(default_factory=dict)  # filled in when they stop


async def all_ready(rig: Rig, timeout: float = 120) -> None:
    await asyncio.gather(*(s.ready(timeout) for s in rig.services.values()))


@contextlib.asynccontextmanager
async def running(tmp_path: Path, amqp_url: str, vhost: str, databases: dict[str, str]) -> AsyncIterator[Rig]:
    config = keys.init(tmp_path)
    load_run_config(config, reescalate_minutes=expect.REESCALATE_MIN)
    async with contextlib.AsyncExitStack() as stack:
        sink = stack.enter_context(TimedSink())
        proxy = Proxy("127.0.0.1", urlsplit(amqp_url).port or 5672)
        await proxy.start()
        stack.push_async_callback(proxy.close)
        # One node only (no list): a cut of the proxy must be a broker outage, not a move.
        via_proxy = amqp_url.replace(urlsplit(amqp_url).netloc.split("@")[1], f"127.0.0.1:{proxy.port}")
        env = {"SAFEGUARD_CONFIG": str(config), "SAFEGUARD_SMTP_URL": sink.url, "SAFEGUARD_AMQP_URL": via_proxy,
               "SAFEGUARD_LOG_FORMAT": "json"}
        services = {n: ServiceProcess.serve(n, {**env, "SAFEGUARD_DATA_DIR": str(tmp_path / n),
                                                "SAFEGUARD_DATABASE_URL": databases[n]}, logs=tmp_path)
                    for n in SERVICES}
        rig = Rig(services, sink, proxy, vhost, ControlRoomTap(amqp_url, topology.control_room_queue("dev-force").name),
                  tmp_path / "keys")

        async def stop_services() -> None:
            for s in services.values():
                rig.exit_codes[s.name] = await s.stop(grace=40)

        stack.push_async_callback(stop_services)
        for s in services.values():
            (tmp_path / s.name).mkdir()
            await s.start()
        await all_ready(rig)
        await rig.tap.start()
        stack.push_async_callback(rig.tap.close)
        yield rig
