"""What escalation's handlers cause, written in the caller's transaction: outbox rows
(notifications, control-room alerts, events) and audit entries."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.escalation.adapters.tables import audit as audit_table
from services.escalation.adapters.tables import outbox
from services.escalation.domain import alerts as alert_rules
from shared import bus
from shared.audit import record
from shared.messages import Actor, AlertEvent, Holding, Message, NotificationRequested
from shared.storage import OutgoingMessage, enqueue
from shared.storage.group import writes_batched
from shared.web.identity import Person

ACTOR = "escalation"


# A transaction's outbox messages and audit entries, each kind written in one statement at
# the end of the block (the audit head's row lock taken last, held only until the commit).
batched_writes = writes_batched(audit_table, outbox)


def new_id() -> str:
    return uuid.uuid4().hex


async def audit(conn: AsyncConnection, action: str, reference: str | None, now: datetime, *,
                actor: str = ACTOR, outcome: str = "ok", detail: dict | None = None) -> int:
    return await record(conn, audit_table, actor=actor, action=action, reference=reference,
                        outcome=outcome, detail=detail, at=now)


async def emit(conn: AsyncConnection, message: Message, now: datetime, *, exchange: str = bus.EVENTS,
               routing_key: str | None = None, message_id: str | None = None) -> str:
    mid = message_id or new_id()
    await enqueue(conn, outbox, OutgoingMessage(
        exchange, routing_key or message.routing_key, message.to_bytes(), mid), now)
    return mid


def _holding(referral: Row[Any]) -> Holding:
    h = referral.holding or {}  # unknown (before the receipt): every hold assumed
    return Holding(no_further_sharing=bool(h.get("no_further_sharing", True)),
                   no_family_contact=bool(h.get("no_family_contact", True)))


def referral_times(referral: Row[Any]) -> dict[str, datetime]:
    names = ("received_at", "acknowledge_by", "checks_due_by")
    times = {n: getattr(referral, n) for n in names if getattr(referral, n) is not None}
    if "acknowledge_by" in times:
        times["decide_by"] = times["acknowledge_by"]  # one working day to acknowledge and decide
    if getattr(referral, "strategy_by", None) is not None and referral.strategy_recorded_at is None:
        times["strategy_discussion_by"] = referral.strategy_by
    return times


async def notify(conn: AsyncConnection, referral: Row[Any], template: str, audience: str, now: datetime, *,
                 priority: str = "normal", contacts_sealed: dict | None = None,
                 times: dict[str, datetime] | None = None) -> str:
    """A NotificationRequested for the notifier, and its audit entry."""
    nid = new_id()
    await emit(conn, NotificationRequested(
        notification_id=nid, referral_id=referral.referral_id, reference=referral.reference,
        template=template, audience=audience, la_code=referral.la_code, force=referral.force,
        priority=priority, holding=_holding(referral), times=times or referral_times(referral),
        contacts_sealed=contacts_sealed, requested_at=now,
    ), now, message_id=nid)
    await audit(conn, "notification.requested", referral.reference, now,
                detail={"notification_id": nid, "template": template, "audience": audience, "priority": priority})
    return nid


async def publish_alert(conn: AsyncConnection, console_base_url: str, alert: Row[Any], now: datetime,
                        acknowledge_by: datetime | None) -> None:
    """The §3.5 message on `control-room.<force>` for the alert at its current level."""
    body = alert_rules.alert_body(
        alert_id=alert.alert_id, kind=alert.kind, level=alert.level, reference=alert.reference,
        force=alert.force, la_code=alert.la_code, raised_at=now,
        console_base_url=console_base_url, acknowledge_by=acknowledge_by)
    await emit(conn, body, now, exchange=bus.ALERTS, routing_key=bus.control_room_routing_key(alert.force))


def named(person: Person | None) -> tuple[Actor | None, dict[str, Any]]:
    """A signed-in person's action: the events' `by` and the audit detail naming them."""
    if person is None:
        return None, {}
    return (Actor(id=person.id, role=person.role, organisation=person.organisation, issuer=person.issuer,
                  subject=person.subject, name=person.name), {"person": person.as_dict()})


def alert_event(cls: type[AlertEvent], alert: Row[Any], now: datetime, **extra: Any) -> AlertEvent:
    return cls(alert_id=alert.alert_id, referral_id=alert.referral_id, reference=alert.reference,
               force=alert.force, la_code=alert.la_code, kind=alert.kind, level=alert.level, at=now, **extra)
