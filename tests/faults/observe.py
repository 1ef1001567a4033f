"""What the checker looks at, gathered from outside the services: the mail sink (each
mail with its arrival time and Message-ID), the control-room queue (a consumer on a
robust connection, acking after recording) and, at the end, the services' own tables."""
from __future__ import annotations

import email
import email.policy
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from services.escalation.adapters import tables as esc
from services.intake.adapters import tables as intake
from shared.storage import create_engine
from tests.notifier.servers import SmtpSink, _Handler

REFERENCE = re.compile(r"PRV-\d{4}-\d{6,}")


@dataclass(frozen=True)
class Seen:
    at: float  # epoch seconds
    key: tuple  # what was expected: (kind, reference, detail)
    copy_id: str  # Message-ID / AMQP message id: equal ids are copies of one send
    redelivered: bool = False  # the broker gave the tap this message again (its ack was cut)


class _TimedHandler(_Handler):
    async def handle_DATA(self, server, session, envelope):
        reply = await super().handle_DATA(server, session, envelope)
        self.sink.arrived.append(time.time())
        return reply


class TimedSink(SmtpSink):
    """The aiosmtpd sink, stamping each mail's arrival; `refuse()` answers 451 to every
    recipient, `stop()` / `start()` take it off the port and back."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: list[float] = []

    def start(self) -> None:
        self._controller = Controller(_TimedHandler(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def refuse(self, on: bool) -> None:
        if on:
            self.rcpt_replies[""] = "451 4.3.0 Try again later (fault injection)"
        else:
            self.rcpt_replies.clear()

    def seen(self) -> list[Seen]:
        with self.lock:
            pairs = list(zip(self.mails, self.arrived))
        out = []
        for mail, at in pairs:
            msg_id = str(email.message_from_string(mail.raw, policy=email.policy.default)["Message-ID"])
            m = REFERENCE.search(mail.subject) or REFERENCE.search(mail.text)
            out.append(Seen(at, ("email", m.group(0) if m else "?", ",".join(sorted(mail.to))), msg_id))
        return out


@dataclass
class ControlRoomTap:
    """Consumes `control-room.<force>` the way a control room would, over a robust connection."""

    url: str
    queue: str
    seen: list[Seen] = field(default_factory=list)
    _connection: Any = None

    async def start(self) -> None:
        self._connection = await aio_pika.connect_robust(self.url, client_properties={"connection_name": "faults-tap"})
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=200)
        queue = await channel.declare_queue(self.queue, passive=True)
        await queue.consume(self._on_message)

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        body = json.loads(message.body)
        self.seen.append(Seen(time.time(), ("alert", body["reference"], body["level"]), message.message_id or "?",
                              bool(message.redelivered)))
        await message.ack()

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()


async def intake_rows(db_url: str) -> dict[str, list[str]]:
    """client_reference -> the references of the intake rows stored for it."""
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(intake.referrals.c.client_reference,
                                                 intake.referrals.c.reference))).all()
    finally:
        await engine.dispose()
    out: dict[str, list[str]] = {}
    for client_ref, ref in rows:
        out.setdefault(client_ref, []).append(ref)
    return out


async def escalation_state(db_url: str) -> tuple[list[Any], list[Any]]:
    """(every re-escalation timer, every `alert.escalated` audit entry) of escalation."""
    engine = create_engine(db_url)
    t = esc.timers.c
    try:
        async with engine.connect() as conn:
            timers = (await conn.execute(sa.select(t.reference, t.seq, t.status, t.due_at, t.fired_at)
                                         .where(t.kind == "alert_reescalate"))).all()
            audits = (await conn.execute(sa.select(esc.audit.c.reference, esc.audit.c.detail, esc.audit.c.at)
                                         .where(esc.audit.c.action == "alert.escalated"))).all()
    finally:
        await engine.dispose()
    return timers, audits
