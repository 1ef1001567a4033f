"""Status callbacks (DESIGN §3.6), the pure part: who gets an event and what its body says.

A subscription gets an event when it asked for the event's type and its organisation is
the referral's local authority (`la_code`) or force — never anyone else's referrals.

The body's `data` is built from the event alone, field by field (nothing is copied
wholesale, so a field added to an event later never leaks into a callback):

- `reference`, `la_code`, `force`: always;
- `status`: the referral's status when the event fixes it (`received`, `acknowledged`,
  `decided`; `closed` when a track close closed the referral), else null;
- `tracks`: only the track(s) the event moved (`la`: received | acknowledged | decided |
  closed, `ctp`: checks_pending | checks_completed | feedback_released | closed), else {};
- `clocks`: only the deadlines the event carries (receipt: `acknowledge_by`,
  `checks_due_by`; a reminder or breach: its clock's deadline), else {};
- `pathway` (a decision) and `outcome` (the CTP checks outcome) only on those events.
Who acted, concern types, holds, sealed sections and alert details never go out.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from shared.config import Subscription
from shared.messages import (
    ChecksCompleted, DeadlineEvent, FeedbackReleased, Message, ReferralAcknowledged, ReferralDecided,
    ReferralReceived, StatusCallback, TrackClosed,
)

CHANNEL = "webhook"
KEY_PREFIX = f"{CHANNEL}:"


def delivery_key(subscription_id: str) -> str:
    """The delivery key (one state row per event and subscription): `webhook:<id>`."""
    return KEY_PREFIX + subscription_id


def matching(subscriptions: Iterable[Subscription], event_type: str, la_code: str, force: str) -> list[Subscription]:
    return [s for s in subscriptions if event_type in s.events and s.organisation in (la_code, force)]


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def callback_data(event: Message) -> dict[str, Any]:
    ev: Any = event
    data: dict[str, Any] = {"reference": ev.reference, "la_code": ev.la_code, "force": ev.force,
                            "status": None, "tracks": {}, "clocks": {}}
    if isinstance(ev, ReferralReceived):
        data |= {"status": "received", "tracks": {"la": "received", "ctp": "checks_pending"},
                 "clocks": {"acknowledge_by": _iso(ev.acknowledge_by), "checks_due_by": _iso(ev.checks_due_by)}}
    elif isinstance(ev, ReferralAcknowledged):
        data |= {"status": "acknowledged", "tracks": {"la": "acknowledged"}}
    elif isinstance(ev, ReferralDecided):
        data |= {"status": "decided", "tracks": {"la": "decided"}, "pathway": ev.pathway}
    elif isinstance(ev, ChecksCompleted):
        data |= {"tracks": {"ctp": "checks_completed"}, "outcome": ev.outcome}
    elif isinstance(ev, FeedbackReleased):
        data |= {"tracks": {"ctp": "feedback_released"}}
    elif isinstance(ev, TrackClosed):
        data |= {"status": "closed" if ev.referral_closed else None, "tracks": {ev.track: "closed"}}
    elif isinstance(ev, DeadlineEvent) and ev.deadline is not None:
        data |= {"clocks": {ev.clock[:40]: _iso(ev.deadline)}}
    return data


def callbacks_for(subscriptions: Iterable[Subscription], event: Message, notification_id: str) -> list[StatusCallback]:
    """One callback per matching subscription, all with the same body."""
    ev: Any = event
    subs = matching(subscriptions, event.routing_key, ev.la_code, ev.force)
    if not subs:
        return []
    data = callback_data(event)
    return [StatusCallback(notification_id=notification_id, subscription=s.id, type=event.routing_key,
                           referral_id=ev.referral_id, reference=ev.reference, la_code=ev.la_code, force=ev.force,
                           timestamp=ev.at, data=data) for s in subs]


def encode_body(event_type: str, timestamp: datetime, data: dict[str, Any]) -> bytes:
    """The request body, `{"type", "timestamp", "data"}`: compact JSON, UTF-8."""
    doc = {"type": event_type, "timestamp": timestamp.isoformat(), "data": data}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def body(callback: StatusCallback) -> bytes:
    return encode_body(callback.type, callback.timestamp, callback.data)
