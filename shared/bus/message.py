"""The signed bus envelope (DESIGN §5): every service-published message is Ed25519-signed.

The signature covers the producer, routing key, message id and the exact body bytes,
so a message cannot be re-routed, re-labelled or altered without detection. Headers
carry ids, routing data, producer, signature and trace context only — never content.
"""
from __future__ import annotations

import base64
import binascii
import json as jsonlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

PRODUCER_HEADER = "x-safeguard-producer"
SIGNATURE_HEADER = "x-safeguard-signature"
CONTEXT = b"safeguard-bus-v1"

# Header names a service may set on a publish: trace context, the §3.4 submission
# signature fields, and the `x-safeguard-*` envelope. Anything else is refused.
ALLOWED_HEADERS = frozenset({"traceparent", "tracestate", "keyid", "created", "nonce", "signature"})
ALLOWED_HEADER_PREFIX = "x-safeguard-"

FORGED_REASONS = ("unsigned", "unknown_producer", "producer_not_allowed", "bad_signature")


class ForgedMessage(Exception):
    """A message failed the service-signature check; `reason` is a fixed code."""

    def __init__(self, reason: str) -> None:
        assert reason in FORGED_REASONS, reason
        super().__init__(reason)
        self.reason = reason


class Reject(Exception):
    """Raised by a handler for a permanently bad message: parked at once, never retried.

    `reason` must be a fixed code (e.g. "schema_invalid"), never content. `client` is the
    id of the client that sent it, when known (`client_verified`: its signature checked),
    for the parked copy's metadata (shared/bus/parked.py).
    """

    def __init__(self, reason: str, *, client: str | None = None, client_verified: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.client, self.client_verified = reason, client, client_verified


@dataclass(frozen=True)
class BusMessage:
    """One delivery as a handler sees it."""

    message_id: str
    routing_key: str
    producer: str
    body: bytes
    correlation_id: str | None
    headers: dict = field(default_factory=dict)
    redelivered: bool = False
    delivery_count: int = 0
    reply_to: str | None = None

    def json(self) -> Any:
        return jsonlib.loads(self.body)


def canonical_bytes(producer: str, routing_key: str, message_id: str, body: bytes) -> bytes:
    head = b"\n".join([CONTEXT, producer.encode(), routing_key.encode(), message_id.encode()])
    return head + b"\n" + body


def sign_headers(
    signing_key: SigningKey, producer: str, routing_key: str, message_id: str, body: bytes
) -> dict[str, str]:
    """The two envelope headers for a message published by `producer`."""
    signed = signing_key.sign(canonical_bytes(producer, routing_key, message_id, body))
    return {
        PRODUCER_HEADER: producer,
        SIGNATURE_HEADER: base64.b64encode(signed.signature).decode("ascii"),
    }


def signed_routing_key(delivery_routing_key: str, headers: Mapping[str, Any]) -> str:
    """The routing key the producer signed: for a dead-lettered message (e.g. a retry
    returning from `notifier.retry.<s>s`) the key it was published with, from `x-death`."""
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], Mapping):
        keys = deaths[0].get("routing-keys")
        if isinstance(keys, list) and keys and _text(keys[0]) is not None:
            return _text(keys[0]) or ""
    return delivery_routing_key


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


def verify(
    message: BusMessage,
    verify_keys: Mapping[str, VerifyKey],
    allowed_producers: Collection[str] | None = None,
) -> None:
    """Raise `ForgedMessage` unless `message` is validly signed by an allowed service."""
    producer = _text(message.headers.get(PRODUCER_HEADER))
    signature = _text(message.headers.get(SIGNATURE_HEADER))
    if not producer or not signature:
        raise ForgedMessage("unsigned")
    key = verify_keys.get(producer)
    if key is None:
        raise ForgedMessage("unknown_producer")
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(canonical_bytes(producer, message.routing_key, message.message_id, message.body), raw)
    except (BadSignatureError, binascii.Error, ValueError):
        raise ForgedMessage("bad_signature") from None
    if allowed_producers is not None and producer not in allowed_producers:
        raise ForgedMessage("producer_not_allowed")


def check_headers(headers: Mapping[str, Any]) -> None:
    """Refuse header names outside the allow-list and non-scalar values (no content)."""
    for name, value in headers.items():
        if name not in ALLOWED_HEADERS and not name.startswith(ALLOWED_HEADER_PREFIX):
            raise ValueError(f"header not allowed on the bus: {name!r}")
        if not isinstance(value, (str, int, float, bool)) or isinstance(value, str) and len(value) > 512:
            raise ValueError(f"header {name!r} must be a short scalar")
