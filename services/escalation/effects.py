"""What escalation's handlers cause, written in the caller's transaction: outbox rows
(notifications, control-room alerts, events) and audit entries.

`Context` is what every handler needs: settings, the injected clock, the LA calendars.
"""
from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.escalation import metrics
from services.escalation.adapters import repository as repo
from services.escalation.adapters.tables import audit as audit_table
from services.escalation.adapters.tables import outbox
from services.escalation.clock import Clock
from services.escalation.domain import alerts as alert_rules
from services.escalation.domain.events import AlertEvent, AlertRaised
from services.escalation.domain.ladder import ALERT_REESCALATE, TimerSpec
from shared import bus
from shared.audit import batched as audit_batched, record
from shared.config import EscalationTimings, Settings
from shared.messages import Holding, Message, NotificationRequested
from shared.storage import OutgoingMessage, enqueue
from shared.storage.outbox import batched as outbox_batched
from shared.worktime import WorkingCalendar, WorkingHours

ACTOR = "escalation"


@dataclass
class Context:
    settings: Settings
    clock: Clock
    _calendars: dict[str, WorkingCalendar] = field(default_factory=dict)

    @property
    def timings(self) -> EscalationTimings:
        return self.settings.file.escalation

    def calendar(self, la_code: str) -> WorkingCalendar:
        if la_code not in self._calendars:
            la = self.settings.local_authority(la_code)
            hours = WorkingHours() if la is None else WorkingHours(
                start=la.working_hours.start, end=la.working_hours.end,
                weekdays=frozenset(la.working_hours.weekdays), closures=frozenset(la.working_hours.closures))
            self._calendars[la_code] = WorkingCalendar(hours)
        return self._calendars[la_code]


@contextlib.asynccontextmanager
async def batched_writes(conn: AsyncConnection) -> AsyncIterator[None]:
    """A transaction's outbox messages and audit entries, each kind written in one statement
    at the end of the block: the messages first, then the audit entries, so that the audit
    head's row lock is taken last and held only until the commit."""
    async with audit_batched(conn, audit_table), outbox_batched(conn, outbox):
        yield


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


def _holding(referral: Any) -> Holding:
    h = referral.holding or {"no_further_sharing": True, "no_family_contact": True}
    return Holding(no_further_sharing=bool(h["no_further_sharing"]), no_family_contact=bool(h["no_family_contact"]))


def referral_times(referral: Any) -> dict[str, datetime]:
    names = ("received_at", "acknowledge_by", "checks_due_by")
    return {n: getattr(referral, n) for n in names if getattr(referral, n) is not None}


async def notify(conn: AsyncConnection, referral: Any, template: str, audience: str, now: datetime, *,
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


async def publish_alert(conn: AsyncConnection, ctx: Context, alert: Any, now: datetime,
                        acknowledge_by: datetime | None) -> None:
    """The §3.5 message on `control-room.<force>` for the alert at its current level."""
    body = alert_rules.alert_body(
        alert_id=alert.alert_id, kind=alert.kind, level=alert.level, reference=alert.reference,
        force=alert.force, la_code=alert.la_code, raised_at=now,
        console_base_url=ctx.settings.file.system.console_base_url, acknowledge_by=acknowledge_by)
    await emit(conn, body, now, exchange=bus.ALERTS, routing_key=bus.control_room_routing_key(alert.force))


def alert_event(cls: type[AlertEvent], alert: Any, now: datetime, **extra: Any) -> AlertEvent:
    return cls(alert_id=alert.alert_id, referral_id=alert.referral_id, reference=alert.reference,
               force=alert.force, la_code=alert.la_code, kind=alert.kind, level=alert.level, at=now, **extra)


async def schedule_reescalation(conn: AsyncConnection, ctx: Context, alert: Any, now: datetime) -> None:
    up = alert_rules.next_level(ctx.timings.alert_levels, alert.level_index)
    if up is not None:
        due = alert_rules.reescalate_at(now, ctx.timings.alert_reescalate_minutes)
        await repo.add_timers(conn, alert.referral_id, alert.reference, [TimerSpec(ALERT_REESCALATE, up, due)],
                              now, alert_id=alert.alert_id)


async def raise_alert(conn: AsyncConnection, ctx: Context, referral: Any, kind: str, now: datetime) -> str | None:
    """Open a control-room alert at the first level; None if the force has no queue."""
    if ctx.settings.force(referral.force) is None:
        await audit(conn, "alert.raised", referral.reference, now, outcome="unknown_force", detail={"kind": kind})
        return None
    alert_id = new_id()
    values = dict(alert_id=alert_id, referral_id=referral.referral_id, reference=referral.reference, kind=kind,
                  force=referral.force, la_code=referral.la_code, level_index=0, level=ctx.timings.alert_levels[0],
                  status="open", raised_at=now, last_raised_at=now)
    alert = await repo.insert_alert(conn, **values)
    await publish_alert(conn, ctx, alert, now, referral.acknowledge_by)
    await emit(conn, alert_event(AlertRaised, alert, now), now)
    await schedule_reescalation(conn, ctx, alert, now)
    await audit(conn, "alert.raised", referral.reference, now,
                detail={"alert_id": alert_id, "kind": kind, "level": alert.level})
    metrics.ALERTS_RAISED.labels(kind=kind).inc()
    return alert_id
