"""The notifier running for real: RabbitMQ vhost, PostgreSQL database, aiosmtpd sink and
a Teams webhook stand-in, with the dev config from `safeguard keys init` pointed at them."""
from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web

from safeguard import keys
from services.notifier.adapters import tables
from services.notifier.bootstrap import create_app
from services.notifier.domain.retry import RetryPolicy
from shared import bus
from shared.config import Settings, load_settings
from shared.crypto import load_signing_key, public_key_from_b64, seal
from shared.messages import FeedbackReleased, Holding, Message, NotificationRequested
from shared.runtime import RUNTIME
from tests.factories import referral_received
from tests.notifier.servers import SmtpSink, TeamsStub

CANARY = "CANARY-Zebedee-Quux-7731"
LA, FORCE = "E99999999", "dev-force"
TIMES = {"received_at": datetime(2026, 12, 24, 15, tzinfo=UTC), "acknowledge_by": datetime(2026, 12, 29, 15, tzinfo=UTC),
         "checks_due_by": datetime(2027, 1, 21, 15, tzinfo=UTC)}
ACK_BY_TEXT = "Tuesday 29 December 2026 at 3:00pm"
TEST_POLICY = RetryPolicy(delays_s=(1, 2), max_attempts=3, max_age=timedelta(seconds=60),
                          urgent_max_age=timedelta(seconds=60))


def write_config(directory: Path, teams_base: str) -> Path:
    path = keys.init(directory)
    text = path.read_text().replace(keys.TEAMS_SINK, teams_base)
    lines = []
    for line in text.splitlines():
        if line.startswith("emergency_duty_team = "):  # a webhook that is not https: refused before any request
            line = line.replace(f"{teams_base}/teams/emergency-duty-team.dev-borough", "http://example.com/hook")
        if line.startswith("duty_inspector = "):        # a route with no channel the notifier has
            line = 'duty_inspector = { sms = "+447700900123" }'
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class World:
    settings: Settings
    app: web.Application
    smtp: SmtpSink
    teams: TeamsStub
    connection: Any
    publishers: dict[str, bus.Publisher]
    referral_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    reference: str = "SR-2026-000123"

    @property
    def engine(self):
        return self.app[RUNTIME].engine

    async def publish(self, msg: Message, producer: str, *, message_id: str | None = None,
                      routing_key: str | None = None, body: bytes | None = None) -> None:
        await self.publishers[producer].publish(bus.EVENTS, routing_key or msg.routing_key,
                                                body if body is not None else msg.to_bytes(),
                                                message_id=message_id or str(uuid.uuid4()))

    def request(self, template: str, audience: str, *, priority: str = "normal", nfc: bool = True,
                nfs: bool = True, contacts: Any = None, **kw: Any) -> NotificationRequested:
        return NotificationRequested(
            notification_id=str(uuid.uuid4()), referral_id=self.referral_id, reference=self.reference,
            template=template, audience=audience, la_code=LA, force=FORCE, priority=priority,
            holding=Holding(no_further_sharing=nfs, no_family_contact=nfc), times=TIMES,
            contacts_sealed=contacts, requested_at=datetime.now(UTC), **kw)

    def sealed_contacts(self, contacts: dict[str, Any], *, key_b64: str | None = None, key_id: str = "notifier-1") -> dict:
        pub = public_key_from_b64(key_b64 or self.settings.file.services["notifier"].sealing_public_key)
        return seal(json.dumps(contacts).encode(), referral_id=self.referral_id, recipients={key_id: pub},
                    reference=self.reference, section="contacts")  # as intake seals them

    async def received(self, *, nfc: bool = True, nfs: bool = True) -> None:
        await self.publish(referral_received(
            TIMES["received_at"], referral_id=self.referral_id, reference=self.reference, force=FORCE, la_code=LA,
            at=datetime.now(UTC), out_of_hours=False, concern_types=("extreme_right_wing",),
            holding=Holding(no_further_sharing=nfs, no_family_contact=nfc),
            acknowledge_by=TIMES["acknowledge_by"], checks_due_by=TIMES["checks_due_by"]), "intake")
        await self.wait(lambda: self.hold() is not None)

    async def released(self, *, lifted: bool, audiences=("social_care", "referrer", "guardians")) -> None:
        await self.publish(FeedbackReleased(
            referral_id=self.referral_id, reference=self.reference, force=FORCE, la_code=LA, at=datetime.now(UTC),
            family_contact_lifted=lifted, audiences=audiences), "intake")
        await self.wait(lambda: (h := self.hold()) is not None and h.feedback_released)

    # --- observing -----------------------------------------------------------------
    _rows: dict[str, list[Any]] = field(default_factory=dict)
    _hold: Any = None

    async def refresh(self, notification_id: str | None = None) -> None:
        async with self.engine.connect() as conn:
            self._hold = (await conn.execute(sa.select(tables.holds).where(
                tables.holds.c.referral_id == self.referral_id))).first()
            if notification_id:
                self._rows[notification_id] = list((await conn.execute(sa.select(tables.deliveries).where(
                    tables.deliveries.c.notification_id == notification_id).order_by(tables.deliveries.c.id))).all())

    def hold(self):
        return self._hold

    async def wait(self, check, *, notification_id: str | None = None, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while True:
                await self.refresh(notification_id)
                if check():
                    return
                await asyncio.sleep(0.1)

    async def settled(self, req: NotificationRequested, count: int | None = None, timeout: float = 20.0) -> dict[str, Any]:
        """Wait until the request's delivery rows are all final; return {channel: row}."""
        finals = {"delivered", "permanent-failure", "technical-failure", "refused"}

        def done() -> bool:
            rows = self._rows.get(req.notification_id, [])
            return bool(rows) and all(r.status in finals for r in rows) and (count is None or len(rows) == count)

        await self.wait(done, notification_id=req.notification_id, timeout=timeout)
        return {r.channel: r for r in self._rows[req.notification_id]}

    async def drain(self, queue_name: str) -> list[Any]:
        out = []
        async with self.connection.channel() as channel:
            queue = await channel.declare_queue(queue_name, passive=True)
            while (m := await queue.get(no_ack=True, fail=False)) is not None:
                out.append(m)
        return out

    async def events(self, expected: int, timeout: float = 15.0) -> list[dict]:
        seen: list[Any] = []
        async with asyncio.timeout(timeout):
            while len(seen) < expected:
                seen += await self.drain(bus.topology.OPS_EVENTS)
                await asyncio.sleep(0.1)
        return [json.loads(m.body) for m in seen]

    async def audit_actions(self) -> list[tuple[str, str]]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(tables.audit.c.action, tables.audit.c.outcome)
                                       .order_by(tables.audit.c.seq))).all()
        return [(r.action, r.outcome) for r in rows]


@pytest.fixture
async def world(tmp_path, amqp_url, pg_url):
    async with running_world(tmp_path, amqp_url, pg_url) as w:
        yield w


@pytest.fixture
async def world_sqlite(tmp_path, amqp_url):
    """The embedded default: SQLite under the data directory."""
    async with running_world(tmp_path, amqp_url, None) as w:
        yield w


@contextlib.asynccontextmanager
async def running_world(tmp_path: Path, amqp_url: str, db_url: str | None, extra_toml: str = ""):
    """`extra_toml` is appended to the dev config (e.g. `[[subscriptions]]`)."""
    async with contextlib.AsyncExitStack() as stack:
        teams, smtp = await stack.enter_async_context(TeamsStub()), stack.enter_context(SmtpSink())
        config = write_config(tmp_path, teams.base)
        if extra_toml:
            config.write_text(config.read_text() + "\n" + extra_toml)
        settings = load_settings({"SAFEGUARD_CONFIG": str(config), "SAFEGUARD_DATA_DIR": str(tmp_path),
                                  "SAFEGUARD_AMQP_URL": amqp_url, "SAFEGUARD_DATABASE_URL": db_url or "",
                                  "SAFEGUARD_SMTP_URL": smtp.url})
        app = create_app(settings, policy=TEST_POLICY)
        runner = web.AppRunner(app)
        await runner.setup()  # runs the runtime and the notifier's cleanup contexts: consuming now
        connection = await bus.connect(amqp_url, name="test-notifier-driver")
        publishers = {}
        for producer in ("escalation", "intake"):
            key = load_signing_key(tmp_path / "keys" / f"service-{producer}.ed25519")
            publishers[producer] = bus.Publisher(connection, producer=producer, signing_key=key)
            await publishers[producer].start()
        w = World(settings, app, smtp, teams, connection, publishers)
        try:
            yield w
        finally:
            for p in publishers.values():
                await p.close()
            await connection.close()
            await runner.cleanup()
