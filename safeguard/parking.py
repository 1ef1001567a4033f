"""Dead letters: list, replay and purge the `<queue>.parked` parking queues (bus level).

A message lands in `<queue>.parked` in one of two ways (see shared/bus/consumer.py and
topology.py):

- **parked by a consumer** — a confirmed copy through `safeguard.dead-letter` carrying
  the original body and headers plus `x-parked-reason`, `x-parked-at`, `x-parked-from`,
  `x-original-exchange` and `x-original-routing-key`;
- **dead-lettered by the broker** — the quorum queue's own `x-delivery-limit` backstop
  (or a nack without requeue): no `x-parked-*` headers, but an `x-death` entry naming
  the queue, the reason, the exchange and the routing keys.

Reading without losing anything
-------------------------------
Parking queues are quorum queues, which cannot be browsed. `held()` therefore takes the
messages that are in the queue when it starts with `basic.get` and **manual
acknowledgement** (`no_ack=False`), holds them unacknowledged on one channel while it
works, and at the end rejects every message it has not deliberately settled with
`requeue=True`, then closes the channel. Only `replay` ever acks, and only after the
broker has confirmed the republished copy. Whatever goes wrong in between — the command
crashes, is killed, or loses its connection — the broker itself returns every unacked
message to the queue when the channel goes away, so no path drops a message. A quorum
queue puts returned messages at the head of the queue in the order they were returned,
so the parking order survives; the only traces of a read are the `redelivered` flag and
the queue's `x-delivery-count`, and parking queues have no delivery limit (replay strips
that header, see `replay_message`). At most the messages counted at the start are taken,
so a message re-parked by a replay during the same run is never picked up again.

Nothing here reads, prints or logs a body: listings carry queue names, the reason code,
times, the message id and the routing key only.

Parked forms
------------
A parked copy holds no content in clear (shared/bus/parked.py, `x-parked-form`): a
submission is metadata with the original sealed to its recipient teams (`sealed`) or
dropped (`metadata`); a service message is kept without its `*_sealed` sections
(`stripped`) or unchanged (`original`). Only `original` copies and, given the private key
of a team it is sealed to, `sealed` ones can be replayed (the sealed original is restored: body, signature headers,
ids); `stripped` and `metadata` copies are refused even with `--force`.

Audit
-----
Every replay (and every refusal) and every purge writes one structlog line
(`dlq_replayed`, `dlq_replay_refused`, `dlq_replay_failed`, `dlq_purged`) with the
message id, queues, reason and the operator's OS user — never content. This module has
no service database: `safeguard dlq` (safeguard/dlq.py) also appends each action to the
owning service's hash-chained audit (safeguard/audit_db.py).
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import aiormq.exceptions
from aio_pika.abc import (
    AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection,
)
from nacl.public import PrivateKey
from nacl.signing import SigningKey, VerifyKey

from shared.bus.message import FORGED_REASONS, PRODUCER_HEADER, BusMessage, ForgedMessage, signed_routing_key, verify
from shared.bus.parked import CLIENT_SIGNED_QUEUES, FORM_HEADER, STRIPPED_HEADER, AmqpMessage, open_parked
from shared.bus.publisher import Publisher
from shared.bus.topology import QueueSpec, all_queues
from shared.crypto import CryptoError
from shared.logging import get_logger

log = get_logger(__name__)

PARKED_SUFFIX = ".parked"
# Headers the parking step adds; removed again on replay.
PARKING_HEADERS = frozenset({
    "x-parked-reason", "x-parked-at", "x-parked-from", "x-original-exchange", "x-original-routing-key",
    FORM_HEADER, STRIPPED_HEADER,
})
# Headers the broker maintains; a stale copy would mislead the consumer (e.g. a kept
# `x-delivery-count` would count the old attempts against the new delivery limit).
BROKER_HEADERS = frozenset({
    "x-delivery-count", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
    "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason",
})
REPLAYED_AT_HEADER = "x-safeguard-replayed-at"
REPLAY_COUNT_HEADER = "x-safeguard-replay-count"
# CLIENT_SIGNED_QUEUES: queues consumed without the service signature check: §3.4
# submissions carry a MASH client's signature with a freshness window instead.


class UnknownQueue(LookupError):
    """A `--queue` that is neither a work queue nor a parking queue of the topology."""


class QueueMissing(LookupError):
    """The parking queue is not declared on the broker (no service has run yet)."""


# -- reading ------------------------------------------------------------------------------

def parking_queues(forces: Iterable[str], queue: str | None = None) -> list[str]:
    """Every parking queue of the topology, or the one `queue` names (work or parking name)."""
    specs: list[QueueSpec] = all_queues(forces)
    names = [spec.parking_queue for spec in specs]
    if queue is None:
        return names
    wanted = queue if queue.endswith(PARKED_SUFFIX) else queue + PARKED_SUFFIX
    if wanted not in names:
        raise UnknownQueue(queue)
    return [wanted]


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _utc(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = _text(value)
    if text:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _deaths(headers: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    deaths = headers.get("x-death")
    return [d for d in deaths if isinstance(d, Mapping)] if isinstance(deaths, list) else []


@dataclass(frozen=True)
class ParkedMessage:
    """What an operator may see of a parked message: ids, codes, names, times. No body."""

    parking_queue: str
    original_queue: str
    reason: str
    parked_by: Literal["consumer", "broker"]
    parked_at: datetime | None
    message_id: str
    exchange: str  # where it was originally published (replay target)
    routing_key: str
    producer: str | None
    form: str = "clear"  # x-parked-form; "clear": parked by an earlier version or by the broker itself

    def age_seconds(self, now: datetime | None = None) -> float | None:
        if self.parked_at is None:
            return None
        return max(0.0, ((now or datetime.now(UTC)) - self.parked_at).total_seconds())

    def as_json(self, now: datetime | None = None) -> dict[str, Any]:
        age = self.age_seconds(now)
        return {
            "parking_queue": self.parking_queue,
            "original_queue": self.original_queue,
            "reason": self.reason,
            "parked_by": self.parked_by,
            "parked_at": self.parked_at.isoformat() if self.parked_at else None,
            "age_seconds": round(age, 3) if age is not None else None,
            "message_id": self.message_id,
            "exchange": self.exchange,
            "routing_key": self.routing_key,
            "producer": self.producer,
            "form": self.form,
        }


def describe(incoming: AbstractIncomingMessage, parking_queue: str) -> ParkedMessage:
    """Read the parking metadata of one delivery from `parking_queue` (never its body)."""
    headers = dict(incoming.headers or {})
    default_queue = parking_queue.removesuffix(PARKED_SUFFIX)
    producer = _text(headers.get(PRODUCER_HEADER))
    form = _text(headers.get(FORM_HEADER)) or "clear"
    reason = _text(headers.get("x-parked-reason"))
    if reason is not None:
        return ParkedMessage(
            parking_queue=parking_queue,
            original_queue=_text(headers.get("x-parked-from")) or default_queue,
            reason=reason,
            parked_by="consumer",
            parked_at=_utc(headers.get("x-parked-at")) or _utc(incoming.timestamp),
            message_id=incoming.message_id or "",
            exchange=_text(headers.get("x-original-exchange")) or "",
            routing_key=_text(headers.get("x-original-routing-key")) or "",
            producer=producer,
            form=form,
        )
    deaths = _deaths(headers)
    death = deaths[0] if deaths else {}
    keys = death.get("routing-keys")
    routing_key = _text(keys[0]) if isinstance(keys, list) and keys else None
    return ParkedMessage(
        parking_queue=parking_queue,
        original_queue=_text(death.get("queue")) or default_queue,
        reason=_text(death.get("reason")) or "unknown",
        parked_by="broker",
        parked_at=_utc(death.get("time")) or _utc(incoming.timestamp),
        message_id=incoming.message_id or "",
        exchange=_text(death.get("exchange")) or "",
        routing_key=routing_key or "",
        producer=producer,
        form=form,
    )


@dataclass
class Held:
    """Messages taken from one parking queue and held unacknowledged (see module doc)."""

    parking_queue: str
    messages: list[tuple[AbstractIncomingMessage, ParkedMessage]] = field(default_factory=list)
    settled: set[int] = field(default_factory=set)  # indexes acked on purpose

    async def ack(self, index: int) -> None:
        await self.messages[index][0].ack()
        self.settled.add(index)


async def _existing(channel: AbstractChannel, parking_queue: str) -> AbstractQueue:
    """The parking queue, declared passively (never created here); QueueMissing if absent."""
    try:
        return await channel.declare_queue(parking_queue, passive=True, robust=False)
    except aiormq.exceptions.ChannelNotFoundEntity:
        raise QueueMissing(parking_queue) from None


@contextlib.asynccontextmanager
async def held(connection: AbstractConnection, parking_queue: str, *, get_timeout: float = 5) -> AsyncIterator[Held]:
    """Take the messages now in `parking_queue`; on exit return every unsettled one."""
    channel = await connection.channel(publisher_confirms=False)
    try:
        queue = await _existing(channel, parking_queue)
        count = queue.declaration_result.message_count or 0
        batch = Held(parking_queue)
        try:
            while len(batch.messages) < count:
                incoming = await queue.get(no_ack=False, fail=False, timeout=get_timeout)
                if incoming is None:  # taken meanwhile by someone else (another replay)
                    break
                batch.messages.append((incoming, describe(incoming, parking_queue)))
            yield batch
        finally:
            for index, (incoming, _) in enumerate(batch.messages):
                if index not in batch.settled and not channel.is_closed:
                    with contextlib.suppress(Exception):  # if this fails, the close below requeues
                        await incoming.reject(requeue=True)
    finally:
        if not channel.is_closed:
            with contextlib.suppress(Exception):
                await channel.close()


async def list_parked(
    connection: AbstractConnection, queues: Sequence[str]
) -> tuple[list[ParkedMessage], list[str]]:
    """Every message parked in `queues` (in queue order) and the queues not declared."""
    found: list[ParkedMessage] = []
    missing: list[str] = []
    for name in queues:
        try:
            async with held(connection, name) as batch:
                found += [parked for _, parked in batch.messages]
        except QueueMissing:
            missing.append(name)
    return found, missing


# -- replay -------------------------------------------------------------------------------

def replay_message(
    incoming: AbstractIncomingMessage, parked: ParkedMessage, now: datetime | None = None
) -> tuple[str, str, dict[str, Any]]:
    """(exchange, routing key, headers) that re-send `incoming` as first published.

    The producer's `x-safeguard-producer`/`x-safeguard-signature`, `traceparent` and any
    `x-death` history the consumer saw are kept, so the consumer verifies the signature
    exactly as before; the parking headers and broker counters are removed, and
    `x-safeguard-replayed-at` / `x-safeguard-replay-count` (not covered by the signature)
    say that this is a replay.
    """
    headers = {k: v for k, v in dict(incoming.headers or {}).items()
               if k not in PARKING_HEADERS and k not in BROKER_HEADERS}
    if parked.parked_by == "broker":  # drop the death that brought it here
        deaths = _deaths(headers)
        rest = deaths[1:] if deaths and _text(deaths[0].get("queue")) == parked.original_queue else deaths
        if rest:
            headers["x-death"] = rest
        else:
            headers.pop("x-death", None)
    count = headers.get(REPLAY_COUNT_HEADER)
    headers[REPLAY_COUNT_HEADER] = (count if isinstance(count, int) else 0) + 1
    headers[REPLAYED_AT_HEADER] = (now or datetime.now(UTC)).isoformat()
    return parked.exchange, parked.routing_key, headers


def replay_refusal(
    parked: ParkedMessage, message: BusMessage, verify_keys: Mapping[str, VerifyKey]
) -> str | None:
    """Why replaying would fail the same way (a fixed sentence, no content), or None.

    - on a service-signed queue the signature is checked again with today's verify keys
      from the config: a message that still fails is refused whatever its reason (a key
      added or rotated in the config since makes `unsigned`-family reasons replayable);
    - `producer_not_allowed`: the allow-lists live in the consuming service — refused;
    - `schema_invalid` and other handler `Reject` codes are permanent by definition — refused;
    - `delivery_limit*` (a handler kept failing, or the broker's backstop) — allowed:
      the transient cause (a bug, an outage) may have been fixed.
    """
    reason = parked.reason
    if parked.original_queue in CLIENT_SIGNED_QUEUES:
        if reason in FORGED_REASONS:
            return f"{reason}: submission signatures expire; the MASH system must submit again"
    else:
        try:
            verify(message, verify_keys)
        except ForgedMessage as exc:
            return f"{exc.reason}: the signature does not verify with the configured service keys"
        if reason == "producer_not_allowed":
            return "producer_not_allowed: the consuming service's allow-list would refuse it again"
        if reason in FORGED_REASONS:
            return None  # it verifies now: the config's keys changed since it was parked
    if reason.startswith("delivery_limit"):
        return None
    if reason == "schema_invalid":
        return "schema_invalid: the body would fail validation again"
    return f"{reason}: parked as permanently bad"


@dataclass(frozen=True)
class ReplayResult:
    message_id: str
    parking_queue: str
    original_queue: str
    reason: str
    outcome: Literal["replayed", "refused", "failed"]
    detail: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "parking_queue": self.parking_queue,
                "original_queue": self.original_queue, "reason": self.reason,
                "outcome": self.outcome, "detail": self.detail}


def actor() -> str:
    """The operator: the OS user running the command."""
    try:
        return os.getlogin()
    except OSError:
        import getpass

        try:
            return getpass.getuser()
        except Exception:
            return f"uid:{os.getuid()}"


async def replay(
    connection: AbstractRobustConnection, queues: Sequence[str], *, verify_keys: Mapping[str, VerifyKey],
    message_id: str | None = None, force: bool = False, who: str | None = None, timeout: float = 10,
    team_key: PrivateKey | None = None,
) -> list[ReplayResult]:
    """Re-publish parked messages (one id, or every message of `queues`) to where they
    came from with publisher confirms (mandatory, persistent), and remove each from its
    parking queue only after its confirm. Refused or failed ones stay parked. A `sealed`
    copy is opened with `team_key` (a recipient team's private key) and its original re-published."""
    who = who or actor()
    results: list[ReplayResult] = []
    # publish_raw never signs: the producer's own signature travels unchanged.
    publisher = Publisher(connection, producer="safeguard-dlq", signing_key=SigningKey.generate())
    try:
        for name in queues:
            try:
                async with held(connection, name) as batch:
                    for index, (incoming, parked) in enumerate(batch.messages):
                        if message_id is not None and parked.message_id != message_id:
                            continue
                        results.append(await _replay_one(publisher, batch, index, incoming, parked,
                                                         verify_keys, force, who, timeout, team_key))
            except QueueMissing:
                continue
    finally:
        await publisher.close()
    return results


async def _replay_one(
    publisher: Publisher, batch: Held, index: int, incoming: AbstractIncomingMessage, parked: ParkedMessage,
    verify_keys: Mapping[str, VerifyKey], force: bool, who: str, timeout: float, team_key: PrivateKey | None,
) -> ReplayResult:
    exchange, routing_key, headers = replay_message(incoming, parked)
    original, why_not = _original(incoming, parked, team_key)
    audit = {"message_id": parked.message_id, "parking_queue": parked.parking_queue,
             "queue": parked.original_queue, "reason": parked.reason, "actor": who,
             "exchange": exchange, "routing_key": routing_key, "forced": force}

    def result(outcome: Literal["replayed", "refused", "failed"], detail: str | None = None) -> ReplayResult:
        return ReplayResult(parked.message_id, parked.parking_queue, parked.original_queue, parked.reason,
                            outcome, detail)

    if not parked.routing_key and not parked.exchange:
        log.warning("dlq_replay_refused", **audit, refusal="no original destination")
        return result("refused", "no original exchange or routing key recorded")
    if original is None:  # not even with --force: what is parked is not the message
        log.warning("dlq_replay_refused", **audit, refusal=f"form {parked.form}")
        return result("refused", why_not)
    headers = {**headers, **original.headers}
    message = BusMessage(
        message_id=original.message_id, routing_key=signed_routing_key(routing_key, headers),
        producer=parked.producer or "", body=original.body, correlation_id=original.correlation_id,
        headers=headers,
    )
    refusal = replay_refusal(parked, message, verify_keys)
    if refusal is not None and not force:
        log.warning("dlq_replay_refused", **audit, refusal=refusal)
        return result("refused", refusal + " (use --force to replay anyway)")
    try:
        await publisher.publish_raw(
            exchange, routing_key, original.body, message_id=original.message_id,
            correlation_id=original.correlation_id, headers=headers, timeout=timeout,
            app_id=original.app_id, content_type=original.content_type,
        )
    except Exception as exc:  # not confirmed: it stays parked
        log.error("dlq_replay_failed", **audit, error=type(exc).__name__)
        return result("failed", f"not confirmed by the broker: {type(exc).__name__}")
    try:
        await batch.ack(index)
    except Exception as exc:  # confirmed but still parked: a later replay duplicates it (idempotent consumers)
        log.error("dlq_replay_failed", **audit, error=type(exc).__name__, published=True)
        return result("failed", "re-published, but could not be removed from the parking queue")
    log.warning("dlq_replayed", **audit, override=refusal)
    return result("replayed", f"forced past: {refusal}" if refusal else None)


def _original(incoming: AbstractIncomingMessage, parked: ParkedMessage,
              team_key: PrivateKey | None) -> tuple[AmqpMessage | None, str]:
    """The message to re-publish (its headers are added to the replay's), or None and why not."""
    if parked.form == "stripped":
        return None, ("its sealed sections were removed when it was parked (DESIGN §5): it no longer matches "
                      "its signature and cannot be replayed; have the producer send it again")
    if parked.form == "metadata":
        return None, ("its body was dropped when it was parked (no recipient team could be resolved): "
                      "the sender must submit again")
    if parked.form != "sealed":
        return AmqpMessage(incoming.body, {}, incoming.message_id or "", incoming.correlation_id,
                           incoming.content_type, incoming.app_id), ""
    if team_key is None:
        return None, ("its body is sealed to its recipient teams: give --key FILE (one team's private key) "
                      "to replay it")
    try:
        return open_parked(incoming.body, team_key), ""
    except CryptoError as exc:
        return None, f"{exc} (--key)"


# -- purge --------------------------------------------------------------------------------

async def purge(connection: AbstractConnection, parking_queue: str, *, who: str | None = None) -> int:
    """Delete every ready message of `parking_queue`; return how many. Irreversible.

    Messages held at that moment by a concurrent `list`/`replay` are not ready, so they
    are not purged: they return to the queue when that command ends."""
    channel = await connection.channel(publisher_confirms=False)
    try:
        queue = await _existing(channel, parking_queue)
        ok = await queue.purge()
        count = int(getattr(ok, "message_count", 0) or 0)
    finally:
        if not channel.is_closed:
            await channel.close()
    log.warning("dlq_purged", parking_queue=parking_queue, count=count, actor=who or actor())
    return count
