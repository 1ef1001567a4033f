"""Retention on the broker: the parking queues (DESIGN §5, run by `safeguard retention run`).

Parking queues drop messages after their `x-message-ttl` (`[system] parking_ttl_days`). Two
kinds of parked message escape the safe forms of shared/bus/parked.py, and a queue declared
before the TTL keeps what it holds; for every parking queue this sweep

- deletes each message parked longer ago than the period (by `x-parked-at`, else the
  broker's `x-death` time);
- re-parks in the safe form each message still in clear — dead-lettered by the broker itself
  (the `x-delivery-limit` backstop, a nack without requeue) or parked by an earlier version:
  a submission as metadata with its body sealed to its recipient teams (`seal_to`:
  services/intake/recipients.py; no client is known here) or dropped, a service message
  without its `*_sealed` sections. The new copy is confirmed before the old one is acked;
- reports what it did and how many messages remain.

It reads with `parking.held`, so whatever it does not settle goes back to the queue.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aio_pika.abc import AbstractConnection, AbstractRobustConnection
from nacl.signing import SigningKey

from safeguard import parking
from shared.bus.parked import FORM_HEADER, AmqpMessage, SealTo, parked_copy
from shared.bus.publisher import Publisher
from shared.bus.topology import DEAD_LETTER
from shared.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class SweepResult:
    parking_queue: str
    resealed: int  # re-parked in the safe form (sealed, metadata or stripped)
    expired: int  # deleted: parked longer ago than the period
    remaining: int

    def as_json(self) -> dict[str, Any]:
        return {"parking_queue": self.parking_queue, "resealed": self.resealed, "expired": self.expired,
                "remaining": self.remaining}


def _park_headers(headers: dict[str, Any]) -> dict[str, Any]:
    """The parking (or broker dead-letter) headers a re-parked submission keeps: codes, names, times."""
    return {k: v for k, v in headers.items() if k in parking.PARKING_HEADERS or k == "x-death"}


async def sweep_queue(connection: AbstractConnection, publisher: Publisher, name: str, *,
                      seal_to: SealTo | None, max_age: timedelta, now: datetime) -> SweepResult:
    resealed = expired = 0
    queue = name.removesuffix(parking.PARKED_SUFFIX)
    async with parking.held(connection, name) as batch:
        for index, (incoming, parked) in enumerate(batch.messages):
            if parked.parked_at is not None and now - parked.parked_at > max_age:
                await batch.ack(index)
                expired += 1
                continue
            headers = dict(incoming.headers or {})
            if FORM_HEADER in headers:
                continue
            at = (parked.parked_at or now).isoformat()
            copy = parked_copy(queue, AmqpMessage.of(incoming), _park_headers(headers),
                               reason=parked.reason, parked_at=at, seal_to=seal_to)
            await publisher.publish_raw(DEAD_LETTER, queue, copy.body, message_id=copy.message_id,
                                        correlation_id=copy.correlation_id, headers=copy.headers,
                                        app_id=copy.app_id, content_type=copy.content_type)
            await batch.ack(index)
            resealed += 1
        remaining = len(batch.messages) - len(batch.settled) + resealed
    if resealed or expired:
        log.warning("dlq_retention", parking_queue=name, resealed=resealed, expired=expired)
    return SweepResult(name, resealed, expired, remaining)


async def sweep(connection: AbstractRobustConnection, queues: list[str], *, seal_to: SealTo | None,
                max_age: timedelta, now: datetime | None = None) -> list[SweepResult]:
    """Sweep every declared queue of `queues` (undeclared ones are skipped)."""
    now = now or datetime.now(UTC)
    publisher = Publisher(connection, producer="safeguard-retention", signing_key=SigningKey.generate())
    results = []
    try:
        for name in queues:
            try:
                results.append(await sweep_queue(connection, publisher, name, seal_to=seal_to,
                                                 max_age=max_age, now=now))
            except parking.QueueMissing:
                continue
    finally:
        await publisher.close()
    return results
