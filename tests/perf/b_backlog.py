"""Benchmark 4: backlog replay after an outage.

Ours: N signed `referral.received` events (as intake publishes them, with a sealed contact
section) are queued while escalation and notifier are down; then both start and the
backlog drains. Reported: escalation's drain rate from its first applied event to its last (its
own `processed_at` stamps; its start-up is not draining, and the floor is timed from its
first consume too), and the whole recovery from the spawn until the N-th MASH email lands in
the aiosmtpd sink. Baseline: N messages of the same size
queued in the first hop of the bare three-hop relay before its consumers start. Durable floor
(escalation's drain only): the same N queued for `floors.ConsumerFloor` (a row and a processed
id per transaction, ack after commit, one confirmed publish).
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

from services.escalation.adapters.tables import processed
from shared import bus
from shared.crypto import load_signing_key, public_key_from_b64, seal
from shared.storage import create_engine
from shared.storage.migrate import upgrade
from tests.conftest import fresh_pg_database
from tests.factories import referral_received
from tests.notifier.servers import SmtpSink, TeamsStub
from tests.perf.b_e2e import MASH
from tests.perf.baselines import HOPS, Relay
from tests.perf.floors import ConsumerFloor
from tests.perf.common import service_env, setup_config, wait_until
from tests.support.processes import stop_all


class BacklogBench:
    name = "backlog"
    title = "4. Backlog replay (referral.received queued while escalation and notifier were down)"
    rows = [("drain_per_s", "referrals/s drained to MASH email", "vs baseline 2 relay"),
            ("esc_drain_per_s", "referral.received/s drained by escalation", "≥ 0.5 × floor")]

    def __init__(self, env, n: int) -> None:
        self.env, self.n = env, n
        self.stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> BacklogBench:
        s = self.stack
        self.tmp = self.env.tmpdir("backlog")
        self.smtp, self.teams = s.enter_context(SmtpSink()), await s.enter_async_context(TeamsStub())
        config = setup_config(self.tmp, teams_base=self.teams.base)
        amqp = self.env.amqp_url()
        connection = await aio_pika.connect_robust(amqp)
        s.push_async_callback(connection.close)
        async with connection.channel() as channel:
            await bus.declare_topology(channel, ["dev-force"])
        self.publisher = bus.Publisher(connection, producer="intake",
                                       signing_key=load_signing_key(self.tmp / "keys" / "service-intake.ed25519"))
        await self.publisher.start()
        s.push_async_callback(self.publisher.close)
        self.envs = {}
        for name in ("escalation", "notifier"):
            db = await s.enter_async_context(fresh_pg_database())
            self.envs[name] = service_env(config, self.tmp, amqp, db, SAFEGUARD_SMTP_URL=self.smtp.url)
        self.esc_engine = create_engine(self.envs["escalation"]["SAFEGUARD_DATABASE_URL"])
        s.push_async_callback(self.esc_engine.dispose)
        await upgrade(self.esc_engine, "escalation")  # what its first start did, before the outage
        self.relay = Relay(self.env.amqp_url())
        s.push_async_callback(self.relay.close)
        await self.relay.open()
        floor_db = await s.enter_async_context(fresh_pg_database())
        self.floor = ConsumerFloor(self.env.amqp_url(), floor_db.replace("+asyncpg", ""))
        await self.floor.open()
        s.push_async_callback(self.floor.close)
        keys = tomllib.loads(config.read_text())["services"]["notifier"]
        self.notifier_pub = public_key_from_b64(keys["sealing_public_key"])
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stack.aclose()

    def _event(self) -> bytes:
        rid = uuid.uuid4().hex
        contacts = json.dumps({"referrer": {"email": "referrer@dev-force.example"}}).encode()
        ref = f"SR-{rid[:8].upper()}"
        sealed = seal(contacts, referral_id=rid, recipients={"notifier-1": self.notifier_pub}, reference=ref,
                      section="contacts")  # as intake seals them
        return referral_received(datetime.now(UTC), referral_id=rid, reference=ref, contacts_sealed=sealed).to_bytes()

    async def _processed(self) -> int:
        async with self.esc_engine.connect() as conn:
            return int(await conn.scalar(sa.select(sa.func.count()).select_from(processed)))

    async def ours_round(self, r: int) -> dict[str, float]:
        events = [self._event() for _ in range(self.n)]
        gate = asyncio.Semaphore(32)

        async def publish(body: bytes) -> None:
            async with gate:
                await self.publisher.publish(bus.EVENTS, "referral.received", body, message_id=uuid.uuid4().hex)
        await asyncio.gather(*(publish(b) for b in events))
        mails, done = len(self.smtp.to(MASH)), await self._processed()
        procs = [self.env.service(name, env) for name, env in self.envs.items()]
        try:
            began, start = datetime.now(UTC), time.monotonic()  # began: this round's processed rows
            for proc in procs:
                await proc.start()

            async def esc_done() -> bool:
                return await self._processed() >= done + self.n
            esc = await wait_until(esc_done, timeout=60 + self.n, interval=0.1)
            end = await wait_until(lambda: len(self.smtp.to(MASH)) >= mails + self.n, timeout=60 + self.n)
        finally:
            await stop_all(procs)
        # The drain is timed by escalation's own processed_at stamps, first to last, like the
        # floor's (an already running consumer): its start-up (imports, migrations check,
        # connections) is not draining. The MASH email figure is the outage's whole recovery,
        # so it counts from the spawn.
        first, last = await self._processed_span(began)
        span = (last - first).total_seconds()
        esc_rate = (self.n - 1) / span if span > 0 else self.n / (esc - start)
        return {"drain_per_s": self.n / (end - start), "esc_drain_per_s": esc_rate}

    async def _processed_span(self, since: datetime) -> tuple[datetime, datetime]:
        async with self.esc_engine.connect() as conn:
            row = (await conn.execute(sa.select(sa.func.min(processed.c.processed_at), sa.func.max(
                processed.c.processed_at)).where(processed.c.processed_at >= since))).one()
        return row[0], row[1]

    async def base_round(self, r: int) -> dict[str, float]:
        body = self._event()
        ids = [uuid.uuid4().hex for _ in range(self.n)]
        gate = asyncio.Semaphore(32)

        async def publish(mid: str) -> None:
            async with gate:
                await self.relay.publish(HOPS[0], body, mid)
        await asyncio.gather(*(publish(i) for i in ids))
        start = time.monotonic()
        await self.relay.start()
        try:
            end = await wait_until(lambda: all(i in self.relay.arrived for i in ids), timeout=60 + self.n)
        finally:
            await self.relay.stop()
        rate = self.n / (end - start)
        return {"drain_per_s": rate, "esc_drain_per_s": rate}

    async def floor_round(self, r: int) -> dict[str, float]:
        await self.floor.fill(self._event(), self.n)
        return {"esc_drain_per_s": self.n / await self.floor.drain(self.n, timeout=60 + self.n)}
