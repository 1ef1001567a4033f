"""Escalation against the real RabbitMQ and PostgreSQL, with an injected clock.

`esc` gives a dev set-up (`safeguard keys init`) plus a second force, the real broker
vhost and a fresh PostgreSQL database; it starts real apps (`create_app` on a real
TCP port), publishes events signed as intake, and reads what escalation published.
`esc_web` is the same, signing people in at the real development identity provider (one
child process for the whole session, `idp_url`), with a control-room operator of the
second force added to it, and the app on the port its `console_base_url` names.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import subprocess
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp.test_utils import TestServer
from nacl.signing import SigningKey

from safeguard import devidp, keys
from services.escalation.bootstrap import TIMERS, create_app
from shared import bus
from shared.clock import LONDON, ManualClock
from shared.config import load_settings
from shared.crypto import load_signing_key
from shared.messages import Message
from shared.storage import create_engine
from tests.factories import london
from tests.support.processes import free_port

OTHER = "other-force"
# A control-room operator of the second force, added to the identity provider by the tests.
OTHER_OPERATOR = {"sub": "control.room@other-force.example", "name": "Kim Hale", "groups": ["sg-control-room-other-force"]}


class World:
    def __init__(self, settings, clock: ManualClock, keys_dir, connection, engine, other_key: SigningKey):
        self.settings, self.clock, self.keys_dir = settings, clock, keys_dir
        self.connection, self.engine, self.other_key = connection, engine, other_key
        self.port: int | None = None  # esc_web: the port console_base_url names
        self.intake_key = load_signing_key(keys_dir / "service-intake.ed25519")
        self.publisher = bus.Publisher(connection, producer="intake", signing_key=self.intake_key)

    def client_key(self, client_id: str) -> SigningKey:
        return load_signing_key(self.keys_dir / f"{client_id}.ed25519")

    @contextlib.asynccontextmanager
    async def app(self, clock: ManualClock | None = None, **timer_options) -> AsyncIterator[TestServer]:
        options = {"poll_interval_s": 3600, "retry_base_s": 60, **timer_options}
        app = create_app(self.settings, clock or self.clock, timer_options=options)
        server = TestServer(app, host="127.0.0.1", port=self.port)
        await server.start_server()
        try:
            yield server
        finally:
            await server.close()

    @staticmethod
    async def fire(server: TestServer) -> int:
        return await server.app[TIMERS].fire_due()

    async def publish(self, message: Message, *, message_id: str | None = None, body: bytes | None = None,
                      routing_key: str | None = None) -> str:
        mid = message_id or uuid.uuid4().hex
        await self.publisher.publish(bus.EVENTS, routing_key or message.routing_key,
                                     message.to_bytes() if body is None else body, message_id=mid)
        return mid

    async def take(self, queue: str, timeout: float = 0.0) -> list:
        """Every message now in `queue` (waiting up to `timeout` for the first)."""
        out = []
        async with self.connection.channel() as channel:
            q = await channel.declare_queue(queue, passive=True)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                message = await q.get(no_ack=True, fail=False)
                if message is not None:
                    out.append(message)
                    continue
                if out or loop.time() >= deadline:
                    return out
                await asyncio.sleep(0.02)

    async def take_json(self, queue: str, timeout: float = 0.0) -> list[tuple[str, dict]]:
        return [(m.routing_key, json.loads(m.body)) for m in await self.take(queue, timeout)]

    async def notes(self, timeout: float = 2.0) -> list[dict]:
        """NotificationRequested bodies escalation sent (the notifier's queue also gets referral.*)."""
        return [b for k, b in await self.take_json("notifier.requests", timeout) if k == "notification.requested"]

    async def settle(self, seconds: float = 0.6) -> None:
        """Let the consumers and the outbox relay catch up."""
        await asyncio.sleep(seconds)

    async def wait_processed(self, message_id: str, timeout: float = 10.0) -> None:
        from sqlalchemy import select

        from services.escalation.adapters.tables import processed
        async with asyncio.timeout(timeout):
            while True:
                async with self.engine.connect() as conn:
                    if await conn.scalar(select(processed.c.message_id).where(processed.c.message_id == message_id)):
                        return
                await asyncio.sleep(0.05)

    async def rows(self, query):
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).all())


def _add_other_force(config_path, other_key: SigningKey) -> None:
    pub = base64.b64encode(b"\x01" * 32).decode()
    verify = base64.b64encode(bytes(other_key.verify_key)).decode()
    with open(config_path, "a", encoding="utf-8") as f:
        f.write(f'\n[[forces]]\nslug = "{OTHER}"\nname = "Other Force"\n'
                f'sealing_keys = [{{ key_id = "{OTHER}-1", public_key = "{pub}" }}]\n'
                f'\n[[clients]]\nid = "other-control-room"\nrole = "control_room"\norganisation = "{OTHER}"\n'
                f'verify_key = "{verify}"\n')


def _env(tmp_path, amqp_url: str, pg_url: str) -> dict[str, str]:
    return {"SAFEGUARD_CONFIG": str(tmp_path / "safeguard.toml"), "SAFEGUARD_DATA_DIR": str(tmp_path),
            "SAFEGUARD_AMQP_URL": amqp_url, "SAFEGUARD_DATABASE_URL": pg_url}


@pytest.fixture
async def esc(tmp_path, amqp_url, pg_url) -> AsyncIterator[World]:
    config = keys.init(tmp_path)
    other_key = SigningKey.generate()
    _add_other_force(config, other_key)
    settings = load_settings(_env(tmp_path, amqp_url, pg_url))
    connection = await bus.connect(amqp_url, name="test-escalation")
    async with connection.channel() as channel:
        await bus.declare_topology(channel, [f.slug for f in settings.file.forces])
    engine = create_engine(pg_url)
    world = World(settings, ManualClock(london(2026, 11, 7, 10)), tmp_path / "keys", connection, engine, other_key)
    await world.publisher.start()
    try:
        yield world
    finally:
        await world.publisher.close()
        await connection.close()
        await engine.dispose()


@pytest.fixture(scope="session")
def idp_url(tmp_path_factory) -> Iterator[str]:
    """The development identity provider (oidc-provider-mock) on a free port, for the session;
    `OTHER_OPERATOR` added to its people."""
    port = free_port()
    with open(tmp_path_factory.mktemp("idp") / "idp.log", "wb") as log:
        proc = subprocess.Popen(devidp.command(port), stdout=log, stderr=subprocess.STDOUT)
    issuer = devidp.issuer(port)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "the identity provider exited"
            try:
                with urllib.request.urlopen(f"{issuer}/.well-known/openid-configuration", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the identity provider did not start"
                time.sleep(0.1)
        put = urllib.request.Request(f"{issuer}/users/{OTHER_OPERATOR['sub']}", method="PUT",
                                     data=json.dumps(OTHER_OPERATOR).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(put, timeout=5) as resp:
            assert resp.status == 204
        yield issuer
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
async def esc_web(esc, idp_url, tmp_path, amqp_url, pg_url) -> World:
    """`esc` whose people sign in at `idp_url`; its apps serve on `esc.port`."""
    esc.port = free_port()
    config = tmp_path / "safeguard.toml"
    text = config.read_text(encoding="utf-8").replace(devidp.issuer(), idp_url)
    text = text.replace('console_base_url = "http://127.0.0.1:8081"', f'console_base_url = "http://127.0.0.1:{esc.port}"')
    text += (f'\n[[identity_providers.claims]]\ngroup = "{OTHER_OPERATOR["groups"][0]}"\nrole = "control_room"\n'
             f'organisation = "{OTHER}"\n')
    config.write_text(text, encoding="utf-8")
    esc.settings = load_settings(_env(tmp_path, amqp_url, pg_url))
    return esc
