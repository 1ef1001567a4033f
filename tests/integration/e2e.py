"""The three services running together in one process, for the end-to-end test.

Real RabbitMQ (the test's vhost), one fresh PostgreSQL database per service, an
aiosmtpd server and a Teams webhook stand-in (tests/notifier/servers.py), the dev
config of `safeguard keys init` pointed at them. intake and escalation read one
`ManualClock`, so a referral can be "received" at any chosen instant; everything
else keeps real time. A tap queue bound to every exchange copies each bus message,
and the logs of all three services go to one JSON stream.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import structlog
from aiohttp.test_utils import TestClient, TestServer

from safeguard import keys
from safeguard.bus_cli import declare_all
from services.escalation.bootstrap import create_app as escalation_app
from services.intake.bootstrap import create_app as intake_app
from services.intake.entrypoints.http import CONTEXT
from services.notifier.bootstrap import create_app as notifier_app
from shared import bus
from shared.clock import ManualClock
from shared.config import load_settings
from shared.crypto import load_signing_key
from shared.logging import configure
from tests.conftest import fresh_pg_database
from shared.httpsig import authority_of, sign_request
from tests.factories import SUBMIT_PATH, referral_post_headers
from tests.notifier.servers import SmtpSink, TeamsStub

SERVICES = ("intake", "escalation", "notifier")


@dataclass
class System:
    intake: TestClient
    clock: ManualClock
    smtp: SmtpSink
    teams: TeamsStub
    connection: Any
    keys_dir: Path
    logs: io.StringIO
    tapped: list[aio_pika.abc.AbstractIncomingMessage] = field(default_factory=list)
    databases: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    servers: dict[str, TestServer] = field(default_factory=dict)

    async def submit(self, doc: dict) -> Any:
        body = json.dumps(doc).encode()
        headers = referral_post_headers(body, load_signing_key(self.keys_dir / "dev-mash.ed25519"),
                                        authority=authority_of(self.intake.make_url(SUBMIT_PATH)))
        return await self.intake.post(SUBMIT_PATH, data=body, headers=headers)

    async def act(self, client_id: str, reference: str, action: str, doc: dict | None = None) -> Any:
        """A staff system's signed lifecycle action (`dev-prevent`, `dev-social-care`)."""
        path = f"/v1/referrals/{reference}/{action}"
        body = b"" if doc is None else json.dumps(doc).encode()
        headers = sign_request(method="POST", path=path, body=body, key_id=client_id,
                               key=load_signing_key(self.keys_dir / f"{client_id}.ed25519"),
                               authority=authority_of(self.intake.make_url(path)))
        if doc is not None:
            headers["Content-Type"] = "application/json"
        return await self.intake.post(path, data=body, headers=headers)

    def tapped_keys(self) -> list[str]:
        return [m.routing_key or "" for m in self.tapped]

    def tapped_text(self) -> str:
        """Every tapped message: body, headers and properties, as text."""
        return "\n".join(f"{m.body.decode('utf-8', 'replace')} {m.headers!r} {m.message_id} {m.correlation_id} "
                         f"{m.type} {m.app_id} {m.routing_key}" for m in self.tapped)

    async def take(self, queue: str) -> list[dict]:
        async with self.connection.channel() as channel:
            q = await channel.declare_queue(queue, passive=True)
            out = []
            while (m := await q.get(no_ack=True, fail=False)) is not None:
                out.append(json.loads(m.body))
            return out


async def until(check, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


def write_config(directory: Path, teams_base: str) -> Path:
    path = keys.init(directory)
    path.write_text(path.read_text().replace(keys.TEAMS_SINK, teams_base))
    return path


async def _tap(connection: Any, tapped: list) -> None:
    """An exclusive queue bound with `#` to every exchange (and, on the direct ones,
    to every routing key they are used with), collecting what it sees."""
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    direct_keys = {bus.topology.SUBMISSIONS: ["referral"],
                   bus.topology.DEAD_LETTER: [s.name for s in bus.topology.all_queues(["dev-force"])]}
    for exchange in bus.topology.EXCHANGES:
        for key in ("#", *direct_keys.get(exchange, [])):
            await queue.bind(exchange, key)

    async def keep(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        tapped.append(message)

    await queue.consume(keep, no_ack=True)


@contextlib.contextmanager
def captured_logs():
    """All log lines (structlog and stdlib, DEBUG and up) as rendered, into a buffer."""
    root, saved = logging.getLogger(), structlog.get_config()
    handlers, level = root.handlers[:], root.level
    buf = io.StringIO()
    configure(None, "json", level=logging.DEBUG, stream=buf)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # the test's SMTP server, not a service
    try:
        yield buf
    finally:
        root.handlers[:], root.level = handlers, level
        structlog.configure(**saved)


@contextlib.asynccontextmanager
async def running_system(tmp_path: Path, amqp_url: str, start: datetime, db: str = "postgres",
                         service_urls: dict[str, str] | None = None):
    """`service_urls`: each service's own broker user (SAFEGUARD_AMQP_URL_<SERVICE>); the
    topology is then declared first with `amqp_url`, as `safeguard bus declare` does."""
    async with contextlib.AsyncExitStack() as stack:
        teams, smtp = await stack.enter_async_context(TeamsStub()), stack.enter_context(SmtpSink())
        config = write_config(tmp_path, teams.base)
        clock = ManualClock(start.astimezone(UTC))
        logs = stack.enter_context(captured_logs())
        settings = {}
        for svc in SERVICES:
            env = {"SAFEGUARD_CONFIG": str(config), "SAFEGUARD_DATA_DIR": str(tmp_path),
                   "SAFEGUARD_AMQP_URL": amqp_url, "SAFEGUARD_SMTP_URL": smtp.url}
            if service_urls:
                env[f"SAFEGUARD_AMQP_URL_{svc.upper()}"] = service_urls[svc]
            if db == "postgres":  # else the embedded default: one SQLite file per service
                env["SAFEGUARD_DATABASE_URL"] = await stack.enter_async_context(fresh_pg_database())
            settings[svc] = load_settings(env)
        if service_urls:
            await declare_all(amqp_url, ["dev-force"], bus.DEFAULT_PARKING_TTL_S)
        intake = TestClient(TestServer(intake_app(settings["intake"])))
        await intake.start_server()
        stack.push_async_callback(intake.close)
        intake.server.app[CONTEXT].clock = clock
        escalation = TestServer(escalation_app(settings["escalation"], clock, timer_options={"poll_interval_s": 3600}))
        await escalation.start_server()
        stack.push_async_callback(escalation.close)
        notifier = TestServer(notifier_app(settings["notifier"]))
        await notifier.start_server()
        stack.push_async_callback(notifier.close)
        connection = await bus.connect(amqp_url, name="test-e2e-tap")
        stack.push_async_callback(connection.close)
        system = System(intake, clock, smtp, teams, connection, tmp_path / "keys", logs,
                        databases={svc: st.database_url_for(svc) for svc, st in settings.items()},
                        settings=settings,
                        servers={"intake": intake.server, "escalation": escalation, "notifier": notifier})
        await _tap(connection, system.tapped)
        yield system
