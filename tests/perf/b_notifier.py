"""Benchmark 5: notifier capacity, emails per second to a local aiosmtpd sink.

A real `safeguard serve notifier` on PostgreSQL, its email pacing raised to 500/s
(`[delivery] email_per_s`), so what is measured is the notifier's own work per email: the
consumed and verified request, its contact section opened, the message rendered and built,
the `sending` and `delivered` commits with their outbox event and audit entry, the SMTP
transaction. The referral's `referral.received` goes first (the notifier keeps its hold);
then `n` signed `notification.requested` (a referral acknowledgement to the referrer) are
queued and the clock runs until the n-th email is in the sink. No baseline: the target is
absolute (≥ 150 emails/s); the notifier's CPU per email is reported beside it.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import time
import tomllib
import uuid
from datetime import UTC, datetime

import aio_pika
import sqlalchemy as sa

from services.notifier.adapters.tables import holds
from shared import bus
from shared.crypto import load_signing_key, public_key_from_b64, seal
from shared.messages import Holding, NotificationRequested
from shared.storage import create_engine
from tests.conftest import fresh_pg_database
from tests.factories import referral_received
from tests.notifier.servers import SmtpSink
from tests.perf import cpu
from tests.perf.common import service_env, setup_config, wait_until
from tests.support.processes import stop_all

REFERRER = "referrer@dev-force.example"
PACE = 500


class NotifierBench:
    name = "notifier"
    title = f"5. Notifier capacity (emails to a local aiosmtpd sink, pacing raised to {PACE}/s)"
    rows = [("emails_per_s", "emails/s", "≥ 150"),
            ("cpu_ms", "notifier CPU ms per email", "")]
    base_round = None

    def __init__(self, env, n: int) -> None:
        self.env, self.n = env, n
        self.stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> NotifierBench:
        s = self.stack
        tmp = self.env.tmpdir("notifier")
        self.smtp = s.enter_context(SmtpSink())
        config = setup_config(tmp)
        text = config.read_text()
        config.write_text(text.replace("[delivery]\n", f"[delivery]\nemail_per_s = {PACE}\n")
                          if "[delivery]\n" in text else text + f"\n[delivery]\nemail_per_s = {PACE}\n")
        amqp = self.env.amqp_url()
        connection = await aio_pika.connect_robust(amqp)
        s.push_async_callback(connection.close)
        async with connection.channel() as channel:
            await bus.declare_topology(channel, ["dev-force"])
        self.publishers = {}
        for producer in ("intake", "escalation"):
            pub = bus.Publisher(connection, producer=producer,
                                signing_key=load_signing_key(tmp / "keys" / f"service-{producer}.ed25519"))
            await pub.start()
            s.push_async_callback(pub.close)
            self.publishers[producer] = pub
        db = await s.enter_async_context(fresh_pg_database())
        self.proc = self.env.service("notifier", service_env(config, tmp, amqp, db, SAFEGUARD_SMTP_URL=self.smtp.url))
        s.push_async_callback(stop_all, [self.proc])
        await self.proc.start()
        await self.proc.ready()
        self.notifier_key = public_key_from_b64(tomllib.loads(config.read_text())["services"]["notifier"]["sealing_public_key"])
        self.referral_id = str(uuid.uuid4())
        received = referral_received(datetime.now(UTC), referral_id=self.referral_id, reference="PRV-2026-900001")
        self.received = received
        await self.publishers["intake"].publish(bus.EVENTS, received.routing_key, received.to_bytes(),
                                                message_id=str(uuid.uuid4()))
        engine = create_engine(db)
        s.push_async_callback(engine.dispose)

        async def hold_known() -> bool:
            async with engine.connect() as conn:
                return bool(await conn.scalar(sa.select(sa.func.count()).select_from(holds)))
        await wait_until(hold_known, timeout=60)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stack.aclose()

    def _request(self) -> bytes:
        r = self.received
        contacts = seal(json.dumps({"referrer": {"email": REFERRER}}).encode(), referral_id=self.referral_id,
                        recipients={"notifier-1": self.notifier_key}, reference=r.reference, section="contacts")
        return NotificationRequested(
            notification_id=str(uuid.uuid4()), referral_id=self.referral_id, reference=r.reference,
            template="referral_acknowledgement", audience="referrer", la_code=r.la_code, force=r.force,
            priority="normal", holding=Holding(no_further_sharing=True, no_family_contact=True),
            times={"received_at": r.received_at, "acknowledge_by": r.acknowledge_by, "checks_due_by": r.checks_due_by},
            contacts_sealed=contacts, requested_at=datetime.now(UTC)).to_bytes()

    async def ours_round(self, r: int) -> dict[str, float]:
        bodies = [self._request() for _ in range(self.n)]
        before = len(self.smtp.to(REFERRER))
        gate = asyncio.Semaphore(32)

        async def publish(body: bytes) -> None:
            async with gate:
                await self.publishers["escalation"].publish(bus.EVENTS, "notification.requested", body,
                                                            message_id=str(uuid.uuid4()))
        cpu_before = cpu.process_cpu_s(self.proc.pid) if self.proc.pid else 0.0
        start = time.monotonic()
        await asyncio.gather(*(publish(b) for b in bodies))
        end = await wait_until(lambda: len(self.smtp.to(REFERRER)) >= before + self.n, timeout=60 + self.n)
        await asyncio.sleep(1.0)  # the last outcomes' commits and their outbox
        spent = (cpu.process_cpu_s(self.proc.pid) - cpu_before) if self.proc.pid else 0.0
        return {"emails_per_s": self.n / (end - start), "cpu_ms": spent * 1000 / self.n}
