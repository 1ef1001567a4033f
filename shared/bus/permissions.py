"""Least-privilege broker users (DESIGN §5): what each service and client may do on the bus.

One RabbitMQ user per service and per client on the AMQP path, each with configure /
write / read regular expressions derived here from the topology, so the code, the dev
set-up (safeguard/devbroker.py), the compose definitions and the Kubernetes `Permission`
resources all come from (and are tested against) this one source. What RabbitMQ checks:
declaring a queue needs configure on it (and, with a dead-letter exchange, write on that
exchange and read on the queue); binding needs write on the queue and read on the
exchange; publishing needs write on the exchange (`amq.default` for the default one);
consuming needs read on the queue. Passive declares and direct reply-to need nothing.

With its own user a service declares only the queues it consumes (and their bindings);
everything else (exchanges, parking queues and their bindings, the sink queues ops.* and
control-room.*, the audit stream) is declared once by an administrator: `safeguard bus
declare`, which `safeguard up` runs in development. So no service can delete another's
queue, read what it is not meant to, or rewrite the audit stream (it may only append).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from aio_pika.abc import AbstractChannel

from shared.bus import topology as t

DEFAULT_EXCHANGE = "amq.default"  # how RabbitMQ names the default exchange in permission checks
NOTHING = "^$"


@dataclass(frozen=True)
class Permission:
    configure: str
    write: str
    read: str

    def as_dict(self) -> dict[str, str]:
        return {"configure": self.configure, "write": self.write, "read": self.read}


ADMIN = Permission(".*", ".*", ".*")

# What each service consumes (declares, binds, reads) and publishes to. Every service
# publishes to the default exchange (audit checkpoints into the stream; intake's replies;
# the notifier's retry copies into its delay queues) and parks through the dead-letter one.
CONSUMES: dict[str, tuple[str, ...]] = {
    "intake": (t.INTAKE_SUBMISSIONS,),
    "escalation": (t.ESCALATION_EVENTS,),
    "notifier": (t.NOTIFIER_REQUESTS,),
}
PUBLISHES: dict[str, tuple[str, ...]] = {
    "intake": (t.EVENTS,),
    "escalation": (t.EVENTS, t.ALERTS),
    "notifier": (t.EVENTS, t.ALERTS),
}
RETRY_QUEUES = r"notifier\.retry\.[0-9]+s"  # the notifier's delay queues, whatever their delays


def _names(names: Iterable[str], *patterns: str) -> str:
    alternatives = [re.escape(n).replace("\\-", "-") for n in dict.fromkeys(names)] + list(patterns)
    return f"^({'|'.join(alternatives)})$" if alternatives else NOTHING


def _own_queues(service: str) -> list[t.QueueSpec]:
    return [t.queue_spec(name) for name in CONSUMES[service]]


def permissions_for(service: str) -> Permission:
    """The configure / write / read expressions of `service`'s own broker user."""
    own = [q.name for q in _own_queues(service)]
    sources = [q.exchange for q in _own_queues(service)]
    retry = (RETRY_QUEUES,) if service == "notifier" else ()
    return Permission(
        configure=_names(own, *retry),
        write=_names([*PUBLISHES[service], DEFAULT_EXCHANGE, t.DEAD_LETTER, *own]),
        read=_names([*own, *sources], *retry),
    )


def client_permissions(role: str, organisation: str | None) -> Permission | None:
    """A client's user on the AMQP path: a referrer (a MASH system) may only publish to the
    submissions exchange (replies come by direct reply-to, which needs no permission); a
    control room may only read its own force's alert queue. Other roles use HTTP only."""
    if role == "referrer":
        return Permission(NOTHING, _names([t.SUBMISSIONS]), NOTHING)
    if role == "control_room" and organisation:
        return Permission(NOTHING, NOTHING, _names([t.control_room_queue(organisation).name]))
    return None


async def declare_own(channel: AbstractChannel, service: str, *, retry_delays_s: Iterable[int] = ()) -> None:
    """What a service with its own user declares at start: the queues it consumes with their
    bindings (same arguments as the administrator's declaration), and the notifier's delay
    queues. The exchanges and parking queues must exist (`safeguard bus declare`)."""
    for spec in _own_queues(service):
        queue = await channel.declare_queue(spec.name, durable=True, arguments=t.queue_arguments(spec))
        for key in spec.routing_keys:
            await queue.bind(spec.exchange, key)
    if service == "notifier":
        for delay in dict.fromkeys([*t.RETRY_DELAYS_S, *retry_delays_s]):
            await channel.declare_queue(t.retry_queue_name(delay), durable=True,
                                        arguments=t.retry_queue_arguments(delay))
