"""The AsyncAPI 3.0 description of the bus, generated from the code that defines it.

`build_document()` reads the exchanges, queues, arguments and bindings from
`shared.bus.topology`, the message models (and their JSON Schemas) from
`shared.messages` and the envelope headers from `shared.bus.message`, so the document
follows the code. `docs/asyncapi.yaml` is its output, regenerated with

    python -m safeguard.asyncapi > docs/asyncapi.yaml

and tests/ops/test_asyncapi.py fails when the two drift apart.

What the code cannot say is kept in the small tables below: which service publishes a
routing key and which consumes a queue, and the events a service still defines itself
(until they move into `shared/messages.py`, where a model with the same routing key
takes over automatically).
"""
from __future__ import annotations

import inspect
import json
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import yaml
from pydantic.json_schema import models_json_schema

from shared import messages as message_models
from shared.bus.dispatch import model_for
from shared.bus.message import FORGED_REASONS, PRODUCER_HEADER, SIGNATURE_HEADER
from shared.bus.topology import (
    ALERTS, DEAD_LETTER, EVENTS, EXCHANGES, NOTIFIER_REQUESTS, RETRY_DELAYS_S, SUBMISSIONS, QueueSpec, all_queues,
    control_room_routing_key, queue_arguments, retry_queue_arguments, retry_queue_name,
)
from shared.config import SERVICES
from shared.messages import CATALOGUE, ControlRoomAlert, RetryCopy

BINDING_VERSION = "0.3.0"
SCHEMA_REF = "#/components/schemas/{model}"
PLACEHOLDER_FORCE = "{force}"
PARKING_ARGUMENTS = {"x-queue-type": "quorum"}  # as declared by topology.declare_queue

# Who consumes which work queue (control-room queues: the force control rooms' systems).
CONSUMERS: dict[str, str] = {
    "intake.submissions": "intake",
    "escalation.events": "escalation",
    "notifier.requests": "notifier",
    "ops.alerts": "operators",
    "ops.events": "operators",
}
CONTROL_ROOM_CONSUMER = "control_room"
# Catalogue keys that are prefixes: the address each stands for (published outside safeguard.events).
PREFIX_ADDRESSES: dict[str, str] = {
    ControlRoomAlert.routing_key: "control-room.<force>",
    RetryCopy.routing_key: "notifier.retry.<s>s",
}
ACTORS: dict[str, str] = {
    "intake": "the intake service (public ingress, transactional outbox)",
    "escalation": "the escalation service (clocks, routing, control-room alerts)",
    "notifier": "the notifier service (email, Teams, SMS delivery)",
    "mash": "police MASH systems publishing signed submissions (DESIGN §3.4)",
    "control_room": "force control-room systems reading control-room.<force> (DESIGN §3.5)",
    "operators": "operators and their tooling",
    "consumers": "every consuming service, parking what it must not retry",
    "safeguard_dlq": "`safeguard dlq list|replay|purge` (docs/operations.md#dead-letters)",
}
TRACEPARENT = {
    "type": "string", "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
    "description": "W3C Trace Context, carried across the three services",
}


# -- helpers ------------------------------------------------------------------------------

def topic_matches(binding_key: str, routing_key: str) -> bool:
    """RabbitMQ topic matching: `*` is one word, `#` zero or more (words split on `.`)."""
    def match(b: list[str], r: list[str]) -> bool:
        if not b:
            return not r
        if b[0] == "#":
            return any(match(b[1:], r[i:]) for i in range(len(r) + 1))
        return bool(r) and (b[0] == "*" or b[0] == r[0]) and match(b[1:], r[1:])

    return match(binding_key.split("."), routing_key.split("."))


def producer_of(routing_key: str) -> str | None:
    """Who publishes a routing key: the producer of its model in shared.messages.CATALOGUE."""
    model = model_for(routing_key)
    return model.producer if model else None


def channel_id(*parts: str) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9-]+", "_", p).strip("_") for p in parts if p)


def _parameters(address: str) -> dict[str, Any]:
    names = re.findall(r"\{([A-Za-z0-9_]+)\}", address)
    return {n: {"description": f"the {n} slug from safeguard.toml" if n == "force" else n} for n in names}


def event_models() -> list[type[message_models.Message]]:
    """Every bus message: the models of shared.messages.CATALOGUE (the dispatch tables' source)."""
    return list(CATALOGUE.values())


def _exchange_binding(exchange: str) -> dict[str, Any]:
    return {"amqp": {
        "is": "routingKey",
        "exchange": {"name": exchange, "type": EXCHANGES[exchange].value, "durable": True, "autoDelete": False,
                     "vhost": "/"},
        "bindingVersion": BINDING_VERSION,
    }}


def _queue_binding(name: str, arguments: dict[str, Any], bound: Sequence[tuple[str, str]],
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    amqp: dict[str, Any] = {
        "is": "queue",
        "queue": {"name": name, "durable": True, "exclusive": False, "autoDelete": False, "vhost": "/"},
        "bindingVersion": BINDING_VERSION,
        "x-arguments": dict(arguments),
        "x-bindings": [{"exchange": e, "routingKey": k} for e, k in bound],
    }
    amqp.update(extra or {})
    return {"amqp": amqp}


def _send_bindings() -> dict[str, Any]:
    return {"amqp": {"deliveryMode": 2, "mandatory": True, "timestamp": True, "bindingVersion": BINDING_VERSION}}


def _receive_bindings() -> dict[str, Any]:
    return {"amqp": {"ack": True, "bindingVersion": BINDING_VERSION}}


def _header_schemas() -> dict[str, Any]:
    signed = {
        "type": "object",
        "description": "The signed bus envelope (shared/bus/message.py): Ed25519 by the producing service "
                       "over producer, routing key, message id and the exact body bytes. Consumers park "
                       "unsigned or forged messages. Headers never carry content.",
        "required": [PRODUCER_HEADER, SIGNATURE_HEADER],
        "properties": {
            PRODUCER_HEADER: {"type": "string", "enum": list(SERVICES)},
            SIGNATURE_HEADER: {"type": "string", "contentEncoding": "base64",
                               "description": "Ed25519 signature (64 bytes), base64"},
            "traceparent": TRACEPARENT,
            "tracestate": {"type": "string"},
        },
    }
    submission = {
        "type": "object",
        "description": "A MASH client's signature (DESIGN §3.4): Ed25519 over the exact body bytes "
                       "followed by `\\n{created}\\n{nonce}`, verified with the client's key from safeguard.toml.",
        "required": ["keyid", "created", "nonce", "signature"],
        "properties": {
            "keyid": {"type": "string", "description": "the API client id"},
            "created": {"type": "integer", "description": "unix seconds; at most 300 s from the server's time"},
            "nonce": {"type": "string", "description": "never reused within the window"},
            "signature": {"type": "string", "contentEncoding": "base64"},
            "traceparent": TRACEPARENT,
        },
    }
    parked = {
        "type": "object",
        "description": "A parked copy keeps the original headers (so a replay still verifies) and adds "
                       "where and why it was parked (shared/bus/consumer.py). Broker dead-lettering "
                       "(the x-delivery-limit backstop) adds `x-death` instead.",
        "properties": {
            **signed["properties"],
            "x-parked-reason": {"type": "string", "description": "a fixed code: "
                                + ", ".join(FORGED_REASONS) + ", a handler's Reject code "
                                "(e.g. schema_invalid) or `delivery_limit: <ExceptionClass>`"},
            "x-parked-at": {"type": "string", "format": "date-time"},
            "x-parked-from": {"type": "string", "description": "the work queue"},
            "x-original-exchange": {"type": "string"},
            "x-original-routing-key": {"type": "string"},
            "x-death": {"type": "array", "items": {"type": "object"}},
        },
    }
    return {"SignedHeaders": signed, "SubmissionHeaders": submission, "ParkedHeaders": parked}


# -- the document -------------------------------------------------------------------------

class _Doc:
    def __init__(self) -> None:
        self.channels: dict[str, Any] = {}
        self.operations: dict[str, Any] = {}
        self.messages: dict[str, Any] = {}
        self.schemas: dict[str, Any] = {}

    def channel(self, cid: str, address: str, description: str, bindings: dict[str, Any],
                message_names: Iterable[str]) -> None:
        names = list(dict.fromkeys(message_names))
        body: dict[str, Any] = {"address": address, "description": description}
        if params := _parameters(address):
            body["parameters"] = params
        if names:
            body["messages"] = {n: {"$ref": f"#/components/messages/{n}"} for n in names}
        body["bindings"] = bindings
        self.channels[cid] = body

    def operation(self, actor: str, action: str, cid: str, summary: str) -> None:
        channel = self.channels[cid]
        op: dict[str, Any] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{cid}"},
            "summary": summary,
            "x-actor": actor,
        }
        if "messages" in channel:
            op["messages"] = [{"$ref": f"#/channels/{cid}/messages/{n}"} for n in channel["messages"]]
        op["bindings"] = _send_bindings() if action == "send" else _receive_bindings()
        self.operations[channel_id(actor, action, cid)] = op


def _model_schemas(models: Sequence[type[message_models.Message]]) -> dict[str, Any]:
    _, defs = models_json_schema([(m, "validation") for m in models], ref_template=SCHEMA_REF)
    return dict(sorted(defs.get("$defs", {}).items()))


def build_document(forces: Sequence[str] = (PLACEHOLDER_FORCE,)) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document for a deployment with these force slugs (JSON-native)."""
    forces = list(forces)
    doc = _Doc()
    models = event_models()
    doc.schemas.update(_model_schemas(models))
    doc.schemas.update(_header_schemas())

    def add_message(name: str, routing_key: str, summary: str, payload: dict[str, Any], headers: str,
                    extra: dict[str, Any] | None = None) -> None:
        doc.messages[name] = {
            "name": name,
            "title": name,
            "summary": summary,
            "contentType": "application/json",
            "headers": {"$ref": SCHEMA_REF.format(model=headers)},
            "payload": payload,
            "bindings": {"amqp": {"messageType": routing_key, "bindingVersion": BINDING_VERSION}},
            **(extra or {}),
        }

    # Messages: the catalogue's models, submissions, parked copies.
    by_key: dict[tuple[str, str], list[str]] = {}  # (exchange, routing key) -> message names
    for model in models:
        own_doc = (inspect.cleandoc(model.__doc__).splitlines() or [""])[0] if model.__doc__ else ""
        summary = own_doc or f"`{model.routing_key}`, published by {model.producer}"
        payload = {"$ref": SCHEMA_REF.format(model=model.__name__)}
        if model.routing_key in PREFIX_ADDRESSES:  # not on safeguard.events: its own channels below
            add_message(model.__name__, PREFIX_ADDRESSES[model.routing_key], summary, payload, "SignedHeaders")
            continue
        add_message(model.__name__, model.routing_key, summary, payload, "SignedHeaders")
        by_key.setdefault((EVENTS, model.routing_key), []).append(model.__name__)
    add_message("Submission", "referral", "A referral published by a MASH system (DESIGN §3.4, §4)",
                {"type": "object", "description": "the same referral JSON as `POST /v1/referrals` "
                 "(services/intake/domain/referral.py); content is sealed by intake on receipt"},
                "SubmissionHeaders")
    add_message("ParkedMessage", "<work queue name>", "A message parked for an operator (never lost)",
                {"description": "the original body, unchanged"}, "ParkedHeaders")

    # Routing-key channels on the exchanges, with who publishes each.
    for (exchange, key), names in by_key.items():
        cid = channel_id("events", key)
        doc.channel(cid, key, f"`{key}` on the topic exchange `{exchange}`", _exchange_binding(exchange), names)
        if producer := producer_of(key):
            doc.operation(producer, "send", cid, f"{producer} publishes `{key}` (outbox, publisher confirms)")
    cid = channel_id("submissions", "referral")
    doc.channel(cid, "referral", f"Referral submissions on the direct exchange `{SUBMISSIONS}`",
                _exchange_binding(SUBMISSIONS), ["Submission"])
    doc.operation("mash", "send", cid, "a MASH system submits a signed referral")
    for force in forces:
        key = control_room_routing_key(force)
        cid = channel_id("alerts", key)
        doc.channel(cid, key, f"Control-room alerts for {force} on the topic exchange `{ALERTS}` (DESIGN §3.5)",
                    _exchange_binding(ALERTS), ["ControlRoomAlert"])
        doc.operation("escalation", "send", cid, "escalation raises (and re-raises) a control-room alert")
    cid = channel_id("alerts", "ops")
    doc.channel(cid, "ops.{alert}", f"Operational alerts on `{ALERTS}` (reserved; no service publishes yet)",
                _exchange_binding(ALERTS), [])

    # Queue channels: work queues with their parking queues, then the retry queues.
    specs: list[QueueSpec] = all_queues(forces)
    for spec in specs:
        names = [n for (e, k), ns in by_key.items() if e == spec.exchange
                 and any(topic_matches(b, k) for b in spec.routing_keys) for n in ns]
        if spec.exchange == SUBMISSIONS:
            names = ["Submission"]
        elif spec.name.startswith("control-room."):
            names = ["ControlRoomAlert"]
        cid = channel_id("queue", spec.name)
        doc.channel(cid, spec.name,
                    f"Work queue (quorum, x-delivery-limit {spec.delivery_limit}); bound to `{spec.exchange}` "
                    f"with {', '.join(f'`{k}`' for k in spec.routing_keys)}; poison messages go to "
                    f"`{spec.parking_queue}`",
                    _queue_binding(spec.name, queue_arguments(spec), [(spec.exchange, k) for k in spec.routing_keys],
                                   {"x-parking-queue": spec.parking_queue}),
                    names)
        consumer = CONSUMERS.get(spec.name) or (CONTROL_ROOM_CONSUMER if spec.name.startswith("control-room.") else None)
        if consumer:
            doc.operation(consumer, "receive", cid,
                          f"{consumer} consumes `{spec.name}`: verify, handle, commit, then ack")

        dl = channel_id("dead-letter", spec.name)
        doc.channel(dl, spec.name, f"Parking route for `{spec.name}` on the direct exchange `{DEAD_LETTER}` "
                    "(routing key = the work queue's name)", _exchange_binding(DEAD_LETTER), ["ParkedMessage"])
        doc.operation("consumers", "send", dl, f"the consumer of `{spec.name}` (or the broker's delivery-limit "
                      "dead-lettering) parks a message it must not retry")
        pq = channel_id("queue", spec.parking_queue)
        doc.channel(pq, spec.parking_queue, f"Parking queue of `{spec.name}` (quorum; read with `safeguard dlq`)",
                    _queue_binding(spec.parking_queue, PARKING_ARGUMENTS, [(DEAD_LETTER, spec.name)]),
                    ["ParkedMessage"])
        doc.operation("safeguard_dlq", "receive", pq, "operators list, replay or purge parked messages")
    for delay in RETRY_DELAYS_S:
        name = retry_queue_name(delay)
        cid = channel_id("queue", name)
        doc.channel(cid, name, f"Notification back-off: waits {delay} s, then is dead-lettered through the "
                    f"default exchange back to `{NOTIFIER_REQUESTS}`",
                    _queue_binding(name, retry_queue_arguments(delay), []), [RetryCopy.__name__])
        doc.operation("notifier", "send", cid, f"notifier schedules a retry in {delay} s")

    document: dict[str, Any] = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Safeguard Relay message bus",
            "version": "1.0.0",
            "description": (
                "Every exchange, queue and message between intake, escalation and notifier "
                "(DESIGN §2, §3.4, §3.5, §6). Generated by `python -m safeguard.asyncapi > docs/asyncapi.yaml` "
                "from shared/bus/topology.py and shared/messages.py: do not edit by hand. Every message "
                "is persistent JSON, published with confirms and `mandatory`; bodies carry ids, codes and "
                "times only, never content."
            ),
            "x-actors": ACTORS,
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:5672",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "RabbitMQ 3.10 (SAFEGUARD_AMQP_URL, default amqp://guest:guest@127.0.0.1:5672/)",
            },
        },
        "channels": doc.channels,
        "operations": doc.operations,
        "components": {"schemas": doc.schemas, "messages": doc.messages},
    }
    return json.loads(json.dumps(document))  # plain JSON types only (tuples → lists, enums → values)


def render(document: dict[str, Any]) -> str:
    header = "# Generated by `python -m safeguard.asyncapi > docs/asyncapi.yaml` — do not edit by hand.\n"
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def main(argv: Sequence[str] | None = None) -> int:
    forces = list(sys.argv[1:] if argv is None else argv) or [PLACEHOLDER_FORCE]
    sys.stdout.write(render(build_document(forces)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
