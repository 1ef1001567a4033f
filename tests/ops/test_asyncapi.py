"""docs/asyncapi.yaml is exactly what safeguard.asyncapi builds, and it describes the whole bus."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from safeguard import asyncapi
from shared import messages
from shared.bus import topology
from tests.support import documents

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "asyncapi.yaml"
REGENERATE = "regenerate it: python -m safeguard.asyncapi > docs/asyncapi.yaml"


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"unresolvable $ref {ref}"
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    return [r for r in documents.refs(node) if isinstance(r, str)]


def test_committed_document_is_the_generated_one():
    text = COMMITTED.read_text(encoding="utf-8")
    doc = asyncapi.build_document()
    assert yaml.safe_load(text) == doc, f"docs/asyncapi.yaml is out of date: {REGENERATE}"
    assert text == asyncapi.render(doc), f"docs/asyncapi.yaml is not formatted as generated: {REGENERATE}"


def test_document_is_structurally_valid_asyncapi_3():
    doc = asyncapi.build_document()
    assert doc["asyncapi"] == "3.0.0"
    assert {"asyncapi", "info", "servers", "channels", "operations", "components"} <= set(doc)
    assert doc["info"]["title"] and doc["info"]["version"]
    for server in doc["servers"].values():
        assert server["protocol"] == "amqp" and server["host"]
    ident = re.compile(r"^[A-Za-z0-9_\-]+$")
    for cid, channel in doc["channels"].items():
        assert ident.match(cid), cid
        assert isinstance(channel["address"], str)
        assert set(re.findall(r"\{(\w+)\}", channel["address"])) == set(channel.get("parameters", {})), cid
        amqp = channel["bindings"]["amqp"]
        assert amqp["bindingVersion"] == "0.3.0" and amqp["is"] in ("queue", "routingKey")
        if amqp["is"] == "routingKey":
            assert amqp["exchange"]["type"] in ("topic", "direct", "fanout", "default", "headers")
        else:
            assert amqp["queue"]["name"] == channel["address"] and amqp["queue"]["durable"] is True
    for oid, op in doc["operations"].items():
        assert ident.match(oid), oid
        assert op["action"] in ("send", "receive")
        channel = resolve(doc, op["channel"]["$ref"])
        assert channel in doc["channels"].values()
        for m in op.get("messages", []):  # must point into the operation's own channel
            assert m["$ref"].startswith(op["channel"]["$ref"] + "/messages/"), (oid, m)
            resolve(doc, m["$ref"])
    for ref in refs(doc):
        resolve(doc, ref)
    for name, message in doc["components"]["messages"].items():
        assert message["contentType"] == "application/json"
        assert "payload" in message and "headers" in message, name


def test_every_exchange_and_queue_appears_with_its_arguments():
    doc = asyncapi.build_document()
    exchanges = {c["bindings"]["amqp"]["exchange"]["name"]: c["bindings"]["amqp"]["exchange"]["type"]
                 for c in doc["channels"].values() if c["bindings"]["amqp"]["is"] == "routingKey"}
    assert exchanges == {name: kind.value for name, kind in topology.EXCHANGES.items()}
    queues = {c["address"]: c["bindings"]["amqp"] for c in doc["channels"].values()
              if c["bindings"]["amqp"]["is"] == "queue"}
    for spec in topology.all_queues([asyncapi.PLACEHOLDER_FORCE]):
        binding = queues[spec.name]
        assert binding["x-arguments"] == topology.queue_arguments(spec)
        assert binding["x-arguments"]["x-delivery-limit"] == spec.delivery_limit
        assert binding["x-arguments"]["x-dead-letter-exchange"] == topology.DEAD_LETTER
        assert {(b["exchange"], b["routingKey"]) for b in binding["x-bindings"]} == {
            (spec.exchange, k) for k in spec.routing_keys}
        assert binding["x-parking-queue"] == spec.parking_queue
        assert queues[spec.parking_queue]["x-bindings"] == [{"exchange": topology.DEAD_LETTER, "routingKey": spec.name}]
    for delay in topology.RETRY_DELAYS_S:
        name = topology.retry_queue_name(delay)
        assert queues[name]["x-arguments"] == topology.retry_queue_arguments(delay)


def test_every_message_model_appears_with_its_schema():
    doc = asyncapi.build_document()
    models = asyncapi.event_models()
    assert {m.__name__ for m in models} == {m.__name__ for m in messages.CATALOGUE.values()}
    schemas, components = doc["components"]["schemas"], doc["components"]["messages"]
    for model in models:
        message = components[model.__name__]
        assert message["payload"] == {"$ref": f"#/components/schemas/{model.__name__}"}
        expected = model.model_json_schema(ref_template=asyncapi.SCHEMA_REF)
        expected.pop("$defs", None)
        assert schemas[model.__name__] == expected
        assert schemas[model.__name__].get("additionalProperties") is False
        assert message["headers"] == {"$ref": "#/components/schemas/SignedHeaders"}
    for key, model in messages.CATALOGUE.items():
        if key.endswith("."):  # a prefix: control-room.<force>, notifier.retry.<s>s (own channels)
            continue
        channel = doc["channels"][asyncapi.channel_id("events", key)]
        assert channel["address"] == key and model.__name__ in channel["messages"]


def test_producers_consumers_and_headers():
    doc = asyncapi.build_document()
    sends = {(op["x-actor"], resolve(doc, op["channel"]["$ref"])["address"])
             for op in doc["operations"].values() if op["action"] == "send"}
    receives = {(op["x-actor"], resolve(doc, op["channel"]["$ref"])["address"])
                for op in doc["operations"].values() if op["action"] == "receive"}
    assert ("intake", "referral.received") in sends
    assert ("escalation", "notification.requested") in sends and ("escalation", "deadline.breached") in sends
    assert ("escalation", "control-room.{force}") in sends
    assert ("notifier", "notification.sent") in sends and ("notifier", "notification.failed") in sends
    assert ("mash", "referral") in sends
    for queue, consumer in asyncapi.CONSUMERS.items():
        if queue in {s.name for s in topology.SERVICE_QUEUES}:
            assert (consumer, queue) in receives
    signed = doc["components"]["schemas"]["SignedHeaders"]
    assert signed["required"] == ["x-safeguard-producer", "x-safeguard-signature"]
    assert "traceparent" in signed["properties"]
    assert doc["components"]["schemas"]["SubmissionHeaders"]["required"] == ["keyid", "created", "nonce", "signature"]
    assert "x-parked-reason" in doc["components"]["schemas"]["ParkedHeaders"]["properties"]


def test_real_force_names_replace_the_placeholder():
    doc = asyncapi.build_document(["dev-force", "north-force"])
    addresses = {c["address"] for c in doc["channels"].values()}
    assert {"control-room.dev-force", "control-room.north-force", "control-room.north-force.parked"} <= addresses
    assert not any("{force}" in a for a in addresses)


def test_topic_matching():
    assert asyncapi.topic_matches("referral.*", "referral.received")
    assert not asyncapi.topic_matches("referral.*", "referral.a.b")
    assert asyncapi.topic_matches("ops.#", "ops.outbox.lag") and asyncapi.topic_matches("ops.#", "ops")
    assert not asyncapi.topic_matches("deadline.*", "alert.raised")
