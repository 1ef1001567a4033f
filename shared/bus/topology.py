"""Every exchange and queue name on the bus, and how they are declared (DESIGN §2, §3.4-3.5, §6).

Work queues are durable quorum queues with an explicit `x-delivery-limit` (RabbitMQ
3.10 has no default) that dead-letter, at-least-once, into `<queue>.parked` through
the `safeguard.dead-letter` exchange. Declaring is idempotent: same name, same args.
Parking queues have a message TTL (`[system] parking_ttl_days`, default 14): what is
parked is dropped after it (DESIGN §5). A parking queue declared earlier without that
TTL (or with another) cannot be changed in place: it is kept as it is, with a warning;
`safeguard retention run` still deletes what it holds past the period (docs/operations.md).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncio

import aiormq.exceptions
from aio_pika import ExchangeType
from aio_pika.abc import AbstractChannel, AbstractRobustChannel

from shared.logging import get_logger

log = get_logger(__name__)

from shared.messages import CALLBACK_EVENTS

EVENTS = "safeguard.events"
ALERTS = "safeguard.alerts"
SUBMISSIONS = "safeguard.submissions"
DEAD_LETTER = "safeguard.dead-letter"

EXCHANGES: dict[str, ExchangeType] = {
    EVENTS: ExchangeType.TOPIC,
    ALERTS: ExchangeType.TOPIC,
    SUBMISSIONS: ExchangeType.DIRECT,
    DEAD_LETTER: ExchangeType.DIRECT,
}

INTAKE_SUBMISSIONS = "intake.submissions"
ESCALATION_EVENTS = "escalation.events"
NOTIFIER_REQUESTS = "notifier.requests"
OPS_ALERTS = "ops.alerts"
# Events no service consumes but operators read: the notifier's delivery outcomes and
# escalation's deadline.* / alert.*. Every key published with `mandatory` must be bound.
OPS_EVENTS = "ops.events"

# Notification back-off: a message waits in `notifier.retry.<s>s` for its TTL, then is
# dead-lettered through the default exchange back to `notifier.requests`. Quorum queues
# support per-queue message TTL since RabbitMQ 3.10 (checked on 3.10.8), and with
# `dead-letter-strategy=at-least-once` (which needs `overflow=reject-publish`) an
# expiring retry is never dropped on its way back, so these are quorum queues too.
RETRY_DELAYS_S: tuple[int, ...] = (5, 30, 120, 600, 1800)
DEFAULT_PARKING_TTL_S = 14 * 86400


@dataclass(frozen=True)
class QueueSpec:
    """A work queue: its exchange, binding keys and poison-message delivery limit."""

    name: str
    exchange: str
    routing_keys: tuple[str, ...]
    delivery_limit: int = 5

    @property
    def parking_queue(self) -> str:
        return f"{self.name}.parked"


def control_room_routing_key(force: str) -> str:
    return f"control-room.{force}"


def control_room_queue(force: str) -> QueueSpec:
    """The §3.5 contract queue `control-room.<force>` on `safeguard.alerts`."""
    return QueueSpec(f"control-room.{force}", ALERTS, (control_room_routing_key(force),))


SERVICE_QUEUES: tuple[QueueSpec, ...] = (
    QueueSpec(INTAKE_SUBMISSIONS, SUBMISSIONS, ("referral",)),
    QueueSpec(ESCALATION_EVENTS, EVENTS, ("referral.*",)),
    # The notifier also keeps its own record of holding instructions (DESIGN §4) and
    # delivers status callbacks (§3.6): every event a subscription may ask for.
    QueueSpec(NOTIFIER_REQUESTS, EVENTS, tuple(dict.fromkeys((
        "notification.requested", "referral.received", "referral.checks_completed",
        "referral.strategy_discussion_recorded", "referral.feedback_released", *CALLBACK_EVENTS)))),
    QueueSpec(OPS_ALERTS, ALERTS, ("ops.#",)),
    QueueSpec(OPS_EVENTS, EVENTS, ("notification.sent", "notification.failed", "deadline.*", "alert.*")),
)


def all_queues(forces: Iterable[str]) -> list[QueueSpec]:
    return [*SERVICE_QUEUES, *(control_room_queue(f) for f in forces)]


def queue_spec(name: str) -> QueueSpec:
    """The spec of a service work queue by name (KeyError if it is not one)."""
    for spec in SERVICE_QUEUES:
        if spec.name == name:
            return spec
    raise KeyError(name)


def retry_queue_name(delay_s: int) -> str:
    return f"notifier.retry.{delay_s}s"


def retry_queue_for(attempt: int) -> str:
    """Delay queue for retry number `attempt` (1-based); the last delay repeats."""
    index = min(max(attempt, 1), len(RETRY_DELAYS_S)) - 1
    return retry_queue_name(RETRY_DELAYS_S[index])


def queue_arguments(spec: QueueSpec) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": spec.delivery_limit,
        "x-dead-letter-exchange": DEAD_LETTER,
        "x-dead-letter-routing-key": spec.name,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def retry_queue_arguments(delay_s: int) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": delay_s * 1000,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": NOTIFIER_REQUESTS,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


async def declare_exchanges(channel: AbstractChannel) -> None:
    for name, kind in EXCHANGES.items():
        await channel.declare_exchange(name, kind, durable=True)


def parking_queue_arguments(ttl_s: int = DEFAULT_PARKING_TTL_S) -> dict[str, Any]:
    return {"x-queue-type": "quorum", "x-message-ttl": ttl_s * 1000}


async def declare_queue(channel: AbstractChannel, spec: QueueSpec, *,
                        parking_ttl_s: int = DEFAULT_PARKING_TTL_S) -> None:
    """Declare `spec`, its bindings and its parking queue (exchanges must exist)."""
    queue = await channel.declare_queue(spec.name, durable=True, arguments=queue_arguments(spec))
    for key in spec.routing_keys:
        await queue.bind(spec.exchange, key)
    robust = {"robust": False} if isinstance(channel, AbstractRobustChannel) else {}  # not re-declared on reconnect
    try:
        parked = await channel.declare_queue(spec.parking_queue, durable=True,
                                             arguments=parking_queue_arguments(parking_ttl_s), **robust)
    except aiormq.exceptions.ChannelPreconditionFailed:  # declared before with other arguments
        log.warning("parking_queue_without_ttl", queue=spec.parking_queue, ttl_s=parking_ttl_s,
                    hint="kept as declared; drain it, delete it and restart to get the TTL "
                         "(safeguard retention run deletes expired messages meanwhile)")
        await _reopened(channel)
        parked = await channel.declare_queue(spec.parking_queue, passive=True, **robust)
    await parked.bind(DEAD_LETTER, spec.name)


async def _reopened(channel: AbstractChannel, timeout: float = 10) -> None:
    """The channel the broker closed, open again (a robust channel reopens itself)."""
    if not isinstance(channel, AbstractRobustChannel):
        await channel.reopen()
        return
    async with asyncio.timeout(timeout):
        while channel.is_closed:
            await asyncio.sleep(0.05)


async def declare_topology(channel: AbstractChannel, forces: Iterable[str], *,
                           parking_ttl_s: int = DEFAULT_PARKING_TTL_S) -> None:
    """Declare every exchange, work, parking and retry queue; safe to run again."""
    await declare_exchanges(channel)
    for spec in all_queues(forces):
        await declare_queue(channel, spec, parking_ttl_s=parking_ttl_s)
    for delay in RETRY_DELAYS_S:
        await channel.declare_queue(
            retry_queue_name(delay), durable=True, arguments=retry_queue_arguments(delay)
        )
    await declare_audit_stream(channel)


# --- The audit checkpoint stream (DESIGN §5; issue 18 #2) ----------------------------------
# Every service copies each signed audit checkpoint here, outside its own tables
# (shared/audit_store.py), and `safeguard audit verify` reads it from the first offset. A
# stream queue keeps what it is sent whoever reads it (nothing acks a message away) until
# it is older than `x-max-age`; the services need only write to it.
AUDIT_CHECKPOINTS = "safeguard.audit.checkpoints"
AUDIT_STREAM_MAX_AGE = "10Y"


def audit_stream_arguments() -> dict[str, Any]:
    return {"x-queue-type": "stream", "x-max-age": AUDIT_STREAM_MAX_AGE}


async def declare_audit_stream(channel: AbstractChannel) -> None:
    await channel.declare_queue(AUDIT_CHECKPOINTS, durable=True, arguments=audit_stream_arguments())
