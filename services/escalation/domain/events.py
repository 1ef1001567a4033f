"""Events escalation publishes on `safeguard.events` (ids, codes and times only).

These belong in `shared/messages.py` once the contract owner takes them; until then
they subclass its `Message` so they serialise the same way.
"""
from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from shared.messages import AlertKind, Message


class DeadlineEvent(Message):
    timer_id: int
    referral_id: str
    reference: str
    la_code: str
    force: str
    kind: str  # ack_reminder, ack_breach, ...
    clock: str  # acknowledge_by | checks_due_by
    due_at: datetime
    deadline: datetime | None
    at: datetime


class DeadlineReminder(DeadlineEvent):
    routing_key: ClassVar[str] = "deadline.reminder"


class DeadlineBreached(DeadlineEvent):
    routing_key: ClassVar[str] = "deadline.breached"


class AlertEvent(Message):
    alert_id: str
    referral_id: str
    reference: str
    force: str
    la_code: str
    kind: AlertKind
    level: str
    at: datetime


class AlertRaised(AlertEvent):
    routing_key: ClassVar[str] = "alert.raised"


class AlertEscalated(AlertEvent):
    routing_key: ClassVar[str] = "alert.escalated"


class AlertAcknowledged(AlertEvent):
    routing_key: ClassVar[str] = "alert.acknowledged"
    acknowledged_by: str


DEADLINE_EVENTS: dict[str, type[DeadlineEvent]] = {
    DeadlineReminder.routing_key: DeadlineReminder, DeadlineBreached.routing_key: DeadlineBreached,
}
