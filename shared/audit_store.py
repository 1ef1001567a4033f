"""Audit checkpoints copied outside the service's tables (DESIGN §5, issue 18 #2).

Whoever can rewrite a service's audit chain can also empty its `<svc>_audit_checkpoint`
table, so every checkpoint is also published to the stream `safeguard.audit.checkpoints`
(shared/bus/topology.py), which keeps what it is sent for ten years whoever reads it.
It goes through the service's outbox, in the transaction that signs it: a broker outage
delays a copy, never loses it. `safeguard audit verify` reads the stream from its first
offset (safeguard/audit_verify.py).

A record names the service, the replica (a random id per process) and why it was
written — `start` (a replica started: its head then, seq 0 on an empty chain),
`checkpoint` (a new periodic one) or `final` (the replica stopped cleanly: its head once
its work had stopped) — and the checkpoint's seq, hash and Ed25519 signature (as in the
table). The bus envelope's signature, by the same service key, covers the whole record.
"""
from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from nacl.signing import SigningKey, VerifyKey
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from shared import bus
from shared.audit import GENESIS, checkpoint_text
from shared.bus.topology import AUDIT_CHECKPOINTS
from shared.crypto import CryptoError, b64d, b64e, sign, verify
from shared.storage import outbox

EVENTS = ("start", "checkpoint", "final")


@dataclass(frozen=True)
class Record:
    service: str
    replica: str
    event: str
    seq: int
    hash: str
    at: str
    signature: str


class BadRecord(Exception):
    """A record in the stream that is not a checkpoint validly signed by its service."""

    def __init__(self, reason: str, service: str | None, seq: int | None) -> None:
        super().__init__(reason)
        self.reason, self.service, self.seq = reason, service, seq


async def enqueue_record(conn: AsyncConnection, audit: Table, checkpoints: Table, outbox_table: Table, *,
                         service: str, replica: str, event: str, signing_key: SigningKey, at: datetime) -> Record:
    """Queue (in the caller's transaction) a copy of the newest checkpoint for the stream."""
    row = (await conn.execute(sa.select(checkpoints).order_by(checkpoints.c.seq.desc()).limit(1))).first()
    if row is None:
        seq, h, sig = 0, GENESIS, b64e(sign(signing_key, checkpoint_text(audit.name, 0, GENESIS)))
    else:
        seq, h, sig = row.seq, row.hash, row.signature
    rec = Record(service, replica, event, seq, h, at.isoformat(), sig)
    body = json.dumps(asdict(rec), sort_keys=True).encode()
    message = outbox.OutgoingMessage("", AUDIT_CHECKPOINTS, body, message_id=f"audit-checkpoint-{uuid.uuid4().hex}")
    await outbox.enqueue(conn, outbox_table, message, at)
    return rec


def parse(message: AbstractIncomingMessage, verify_keys: dict[str, VerifyKey]) -> Record:
    """The record in `message`, or `BadRecord` unless both signatures verify."""
    try:
        doc: Any = json.loads(message.body)
        rec = Record(**doc) if isinstance(doc, dict) else None
    except (ValueError, TypeError):
        rec = None
    if rec is None or rec.event not in EVENTS or not isinstance(rec.seq, int):
        raise BadRecord("malformed", None, None)
    bus_message = bus.BusMessage(message.message_id or "", AUDIT_CHECKPOINTS, str(message.headers.get(
        bus.PRODUCER_HEADER, "")), message.body, None, dict(message.headers))
    try:
        bus.verify(bus_message, verify_keys, allowed_producers=[rec.service])
        verify(verify_keys[rec.service], checkpoint_text(f"{rec.service}_audit", rec.seq, rec.hash),
               b64d(rec.signature))
    except bus.ForgedMessage as exc:
        raise BadRecord(exc.reason, rec.service, rec.seq) from None
    except (CryptoError, ValueError, TypeError):
        raise BadRecord("bad_checkpoint_signature", rec.service, rec.seq) from None
    return rec


async def _consume(queue: AbstractQueue, offset: str, until: int | None, first_wait: float,
                   idle: float) -> list[AbstractIncomingMessage]:
    got: list[AbstractIncomingMessage] = []
    async with queue.iterator(arguments={"x-stream-offset": offset}) as messages:
        wait = first_wait
        while True:
            try:
                message = await asyncio.wait_for(messages.__anext__(), wait)
            except TimeoutError:
                return got
            await message.ack()
            got.append(message)
            wait = idle
            if until is not None and message.headers.get("x-stream-offset", -1) >= until:
                return got


async def read_stream(queue: AbstractQueue, *, first_wait: float = 2.0,
                      idle: float = 10.0) -> list[AbstractIncomingMessage]:
    """Every message in the stream `queue`, oldest first (its channel needs a prefetch).

    A stream's declare-ok gives no message count, so the last offset comes from a read
    at `last` first; then the stream is read from `first` up to it. An empty stream costs
    `first_wait`; `idle` only bounds a stalled read."""
    tail = await _consume(queue, "last", None, first_wait, 0.5)
    if not tail:
        return []
    return await _consume(queue, "first", max(m.headers["x-stream-offset"] for m in tail), idle, idle)
