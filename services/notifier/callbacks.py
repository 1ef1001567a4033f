"""Status callbacks (DESIGN §3.6): an event in, one Standard Webhooks delivery per matching
subscription out, through the same lifecycle as every notification (`Delivery`: state row
per event and subscription, retries through the delay queues, final failure with its
event, ops alert and audit entry).

`on_event` takes any event of the §3.6 list (after the hold record, for the four events
that also update it); `on_retry` a retry copy of one callback returning from a delay
queue. The event's message id fixes the callback's `notification_id` — and through it the
`webhook-id` — so a redelivered or re-published event finds its rows and sends nothing twice.
"""
from __future__ import annotations

import asyncio
import hashlib

from services.notifier.adapters.effects import message_id
from services.notifier.context import Context
from services.notifier.delivery import Delivery
from services.notifier.domain.callbacks import CHANNEL, callbacks_for, delivery_key
from services.notifier.domain.recipients import Target
from shared.bus import BusMessage
from shared.logging import get_logger
from shared.messages import Message, StatusCallback

log = get_logger(__name__)


def target(callback: StatusCallback) -> Target:
    """The delivery target: key `webhook:<id>`, the webhook channel, addressed by subscription id."""
    return Target(delivery_key(callback.subscription), CHANNEL, callback.subscription, "subscription")


def notification_id(msg: BusMessage) -> str:
    """One id per event (its bus message id; the body's hash if it came without one)."""
    return message_id("callback", msg.message_id or hashlib.sha256(msg.body).hexdigest())


async def on_event(event: Message, msg: BusMessage, ctx: Context, delivery: Delivery) -> None:
    subscriptions = ctx.settings.file.subscriptions
    if not subscriptions:
        return
    callbacks = callbacks_for(subscriptions, event, notification_id(msg))
    if callbacks:
        log.info("callbacks_planned", event_type=event.routing_key, reference=callbacks[0].reference,
                 subscriptions=[c.subscription for c in callbacks])
    await asyncio.gather(*(delivery.deliver(c, target(c), 0, c, {CHANNEL}) for c in callbacks))


async def on_retry(callback: StatusCallback, ctx: Context, delivery: Delivery, *, attempt: int) -> None:
    await delivery.deliver(callback, target(callback), attempt, callback, {CHANNEL})
