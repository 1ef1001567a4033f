"""Intake's writes beside the referral row: the sealed envelopes, the audit entries and the
outbox events. `seal_json`, `record` and `publish` work in the caller's transaction;
`audit_rejection` writes a refusal in its own."""
from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from nacl.public import PublicKey
from sqlalchemy.ext.asyncio import AsyncConnection

from services.intake import metrics
from services.intake.adapters import tables
from services.intake.context import Context
from services.intake.domain.errors import IntakeError, SchemaInvalid
from shared import audit, bus
from shared.crypto import seal
from shared.messages import Message
from shared.storage import OutgoingMessage, enqueue


def seal_json(value: Any, referral_id: str, recipients: dict[str, PublicKey], *, reference: str,
              column: str) -> dict[str, Any]:
    """`value` as JSON, sealed to `recipients` and bound to the referral and to the section of
    `column` (`tables.section_of`): an envelope moved to another column or referral does not open."""
    data = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()
    return seal(data, referral_id=referral_id, recipients=recipients, reference=reference,
                section=tables.section_of(column))


async def record(conn: AsyncConnection, *, actor: str | None, action: str, at: datetime,
                 reference: str | None = None, outcome: str = "ok", detail: dict | None = None) -> int:
    """One audit entry in the caller's transaction. `detail`: codes and ids only."""
    return await audit.record(conn, tables.audit, actor=(actor or "unknown")[:100], action=action,
                              reference=reference, outcome=outcome, detail=detail, at=at)


async def audit_rejection(ctx: Context, *, actor: str | None, action: str, reference: str | None,
                          err: IntakeError, via: str) -> None:
    metrics.REJECTED.labels(action=action, reason=err.reason, via=via).inc()
    detail: dict[str, Any] = {"reason": err.reason, "status": err.status, "via": via}
    if actor:
        detail["client_id"] = actor[:100]
    if isinstance(err, SchemaInvalid):
        detail["fields"] = err.fields[:50]
    async with ctx.engine.begin() as conn:
        await record(conn, actor=actor, action=action, reference=reference, outcome="rejected",
                     detail=detail, at=ctx.clock())


async def publish(conn: AsyncConnection, event: Message, *, correlation_id: str | None, at: datetime) -> None:
    """Queue `event` in the outbox, in the caller's transaction."""
    await enqueue(conn, tables.outbox, OutgoingMessage(
        bus.EVENTS, event.routing_key, event.to_bytes(), message_id=str(uuid.uuid4()),
        correlation_id=correlation_id), at)
