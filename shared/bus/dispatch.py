"""One dispatch table per consuming queue: routing key → (message model, allowed producer, handler).

A service says which messages it consumes and which handler takes each; the model and
the one producer allowed to send it come from `shared.messages.CATALOGUE`, so "who
produces what" is written once for the whole system (and the AsyncAPI document is
generated from the same catalogue). For each delivery the dispatcher

1. finds the route (an exact routing key, else the longest catalogue prefix such as
   `notifier.retry.`) — none: parked with the table's `unknown` reason;
2. checks that the signed producer is the one the catalogue names for that key —
   otherwise parked `producer_not_allowed_for_key`;
3. requires a message id when the table processes each message once (`require_id`);
4. validates the body against the model — parked `schema_invalid` when it does not fit;
5. hands back the handler and the parsed message (`parse`), or calls the handler with the
   parsed message and the delivery (`__call__`, for tables of `(message, delivery)` handlers).
A table whose effects must run once per message id wraps its handlers in its own
processed-id transaction (escalation: `shared.storage.group`'s `run_once`); the notifier's
per-delivery state rows make that unnecessary there.

Adding a message type = a model in shared/messages.py (with its `routing_key` and
`producer`) and one line in the consuming service's table.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from shared.bus.message import BusMessage, Reject
from shared.messages import CATALOGUE, Message

Handle = Callable[[Any, BusMessage], Awaitable[None]]
H = TypeVar("H")


def model_for(routing_key: str, catalogue: Mapping[str, type[Message]] = CATALOGUE) -> type[Message] | None:
    """The catalogue's model for a routing key: exact, else the longest prefix ending in '.'."""
    if routing_key in catalogue:
        return catalogue[routing_key]
    prefixes = [k for k in catalogue if k.endswith(".") and routing_key.startswith(k)]
    return catalogue[max(prefixes, key=len)] if prefixes else None


def has_naive_times(message: Message) -> bool:
    """A top-level datetime without an offset: the bus carries aware UTC times only."""
    return any(isinstance(v, datetime) and v.utcoffset() is None for v in message.__dict__.values())


@dataclass(frozen=True)
class Route(Generic[H]):
    model: type[Message]
    handle: H


class Dispatcher(Generic[H]):
    """The table of one consuming queue: model → handler, checked against the catalogue."""

    def __init__(self, handlers: Mapping[type[Message], H], *, unknown: str,
                 require_id: bool = False, aware_times: bool = False) -> None:
        missing = [m.__name__ for m in handlers if CATALOGUE.get(m.routing_key) is not m]
        if missing:
            raise ValueError(f"not in shared.messages.CATALOGUE: {', '.join(missing)}")
        self.routes = {m.routing_key: Route(m, h) for m, h in handlers.items()}
        self._models = {k: r.model for k, r in self.routes.items()}
        self.unknown, self.require_id, self.aware_times = unknown, require_id, aware_times

    @property
    def producers(self) -> frozenset[str]:
        """Every producer this queue accepts (the consumer's signature check)."""
        return frozenset(r.model.producer for r in self.routes.values())

    def route(self, routing_key: str) -> Route[H] | None:
        model = model_for(routing_key, self._models)
        return self.routes[model.routing_key] if model is not None else None

    def parse(self, message: BusMessage) -> tuple[H, Any]:
        """The handler for this delivery and its validated body; `bus.Reject` when it does not fit."""
        route = self.route(message.routing_key)
        if route is None:
            raise Reject(self.unknown)
        if message.producer != route.model.producer:
            raise Reject("producer_not_allowed_for_key")
        if self.require_id and not message.message_id:
            raise Reject("missing_message_id")
        try:
            parsed = route.model.model_validate_json(message.body)
        except ValidationError:
            raise Reject("schema_invalid") from None
        if self.aware_times and has_naive_times(parsed):
            raise Reject("schema_invalid")
        return route.handle, parsed

    async def __call__(self: Dispatcher[Handle], message: BusMessage) -> None:
        handle, parsed = self.parse(message)
        await handle(parsed, message)
