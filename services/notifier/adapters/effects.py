"""Everything the notifier writes besides its state rows, in the caller's transaction: a
delivery outcome's event and ops alert through the outbox, a retry copy through the
outbox to a delay queue (its body a `shared.messages.RetryCopy`, of a request or of a
status callback), and the audit entries of deliveries and of the hold record. Bodies hold
ids, codes and times only (no address, no content)."""
from __future__ import annotations

import json
import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from services.notifier.adapters import tables
from services.notifier.domain.guard import HoldRecord
from shared import bus
from shared.audit import record as audit_record
from shared.messages import NotificationFailed, NotificationRequested, NotificationSent, RetryCopy, StatusCallback
from shared.storage import OutgoingMessage, enqueue

ACTOR = "notifier"
ALERT_ROUTING_KEY = "ops.notification_failed"
Job = NotificationRequested | StatusCallback  # a request, or a status callback (DESIGN §3.6)
_NS = uuid.UUID("6d1c3f3e-4d0b-4a53-9a53-6b9d3c1f0a11")


def message_id(*parts: object) -> str:
    """A stable id (≤ 64 chars) for something this delivery causes."""
    return str(uuid.uuid5(_NS, "|".join(str(p) for p in parts)))


async def outcome_event(conn: AsyncConnection, req: Job, channel: str, status: str,
                        reason: str | None, now: datetime) -> None:
    cls = NotificationSent if status == "delivered" else NotificationFailed
    event = cls(notification_id=req.notification_id, reference=req.reference, channel=channel,
                status=status, reason=reason, at=now)  # type: ignore[arg-type]
    await enqueue(conn, tables.outbox, OutgoingMessage(
        bus.EVENTS, cls.routing_key, event.to_bytes(), message_id("event", req.notification_id, channel, status),
        correlation_id=req.notification_id[:64]), now)


async def ops_alert(conn: AsyncConnection, req: Job, channel: str, status: str,
                    reason: str | None, now: datetime, *, fallback: str | None) -> None:
    body = {"kind": "notification_failed", "notification_id": req.notification_id, "reference": req.reference,
            "template": req.template, "audience": req.audience, "priority": req.priority, "channel": channel,
            "status": status, "reason": reason, "fallback": fallback, "at": now.isoformat()}
    await enqueue(conn, tables.outbox, OutgoingMessage(
        bus.ALERTS, ALERT_ROUTING_KEY, json.dumps(body).encode(), message_id("alert", req.notification_id, channel),
        correlation_id=req.notification_id[:64]), now)


async def retry_copy(conn: AsyncConnection, req: Job, channel: str, attempt: int,
                     queue: str, now: datetime, *, deferred: bool = False) -> None:
    """The request again, for one delivery key and attempt, into delay queue `queue`
    (default exchange; it dead-letters back to notifier.requests when its TTL expires).
    A retry copy's id is fixed by (notification, key, attempt); a deferred copy (the
    channel's pacing queue was long, nothing was tried) gets a new one each time, since
    one delivery may be deferred several times at the same attempt."""
    body = RetryCopy(channel=channel, attempt=attempt, request=req).to_bytes()
    parts: tuple[object, ...] = ("defer", uuid.uuid4()) if deferred else ("retry",)
    await enqueue(conn, tables.outbox, OutgoingMessage(
        "", queue, body, message_id(*parts, req.notification_id, channel, attempt),
        correlation_id=req.notification_id[:64]), now)


async def audit(conn: AsyncConnection, req: Job, action: str, outcome: str, now: datetime,
                **detail: object) -> None:
    await audit_record(conn, tables.audit, actor=ACTOR, action=action, reference=req.reference, outcome=outcome,
                       detail={"notification_id": req.notification_id, "template": req.template,
                               "audience": req.audience, **detail}, at=now)


async def hold_recorded(conn: AsyncConnection, record: HoldRecord, reference: str, now: datetime) -> None:
    await audit_record(conn, tables.audit, actor=ACTOR, action="hold_recorded", reference=reference, at=now,
                       detail={"no_further_sharing": record.no_further_sharing,
                               "no_family_contact": record.no_family_contact})


async def hold_updated(conn: AsyncConnection, record: HoldRecord, reference: str, now: datetime) -> None:
    await audit_record(conn, tables.audit, actor=ACTOR, action="hold_updated", reference=reference, at=now,
                       detail={"no_further_sharing": record.no_further_sharing,
                               "no_family_contact": record.no_family_contact,
                               "guardians_released": record.guardians_released})
