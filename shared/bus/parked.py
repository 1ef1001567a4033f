"""What a parked copy may hold (DESIGN §5: a parked message never holds content in clear).

`parked_copy` turns a message on its way to `<queue>.parked` (parked by a consumer, or
re-parked by `safeguard retention run`) into what the parking queue keeps:

- **client-signed queues** (`intake.submissions`: a MASH system's referral, content in
  clear by design) — a JSON metadata document (form, queue, reason, time, message id,
  client and whether its signature verified, body size and SHA-256) and the original
  message (body, the four submission signature headers, ids) **sealed** to the
  `[system] parking_key` (`shared.crypto.seal`, associated data `parked:<sha256>`): form
  `sealed`; without a parking key nothing more (form `metadata`). No client header or
  property is kept in clear; an id is kept only when it looks like an id.
- **service queues** — the bus carries ids and codes in clear and content only sealed: the
  body is kept without any `*_sealed` field at any depth (form `stripped`, the dropped paths
  in `x-parked-stripped`), or unchanged when it has none (form `original`). A stripped copy
  no longer matches its signature, so it is never replayed.

`open_parked` gives the sealed original back to whoever holds the parking key's private half.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from nacl.public import PrivateKey, PublicKey

from shared.bus.topology import INTAKE_SUBMISSIONS
from shared.crypto import CryptoError, b64d, b64e, envelope_key_ids, open_sealed, public_key_from_b64, seal

FORM_HEADER = "x-parked-form"
STRIPPED_HEADER = "x-parked-stripped"
CLIENT_SIGNED_QUEUES = frozenset({INTAKE_SUBMISSIONS})
SIGNATURE_FIELDS = ("keyid", "created", "nonce", "signature")
_ID = re.compile(r"[A-Za-z0-9._:@+=/-]{1,128}")


@dataclass(frozen=True)
class ParkingKey:
    key_id: str
    public_key: PublicKey

    @classmethod
    def of(cls, config: Any) -> ParkingKey | None:
        """From `[system] parking_key` (`key_id`, base64 `public_key`); None when not configured."""
        return None if config is None else cls(config.key_id, public_key_from_b64(config.public_key))


@dataclass(frozen=True)
class AmqpMessage:
    """The parts of a message a parking copy is made of (and what `open_parked` restores)."""

    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    message_id: str = ""
    correlation_id: str | None = None
    content_type: str | None = None
    app_id: str | None = None

    @classmethod
    def of(cls, incoming: Any) -> AmqpMessage:
        return cls(incoming.body, dict(incoming.headers or {}), incoming.message_id or "",
                   incoming.correlation_id, incoming.content_type, incoming.app_id)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def safe_id(value: Any) -> str | None:
    """An id as it came if it looks like one, else a digest of it (client text is not copied)."""
    if value is None or value == "":
        return None
    text = _text(value)
    return text if _ID.fullmatch(text) else "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:32]


def parked_copy(queue: str, original: AmqpMessage, park_headers: dict[str, Any], *, reason: str, parked_at: str,
                parking_key: ParkingKey | None, client: str | None = None, client_verified: bool = False
                ) -> AmqpMessage:
    """What `<queue>.parked` keeps of `original`; `park_headers` are the x-parked-* (or x-death) headers."""
    if queue in CLIENT_SIGNED_QUEUES:
        return _sealed(queue, original, park_headers, reason, parked_at, parking_key, client, client_verified)
    return _stripped(original, park_headers)


def _sealed(queue: str, m: AmqpMessage, park_headers: dict[str, Any], reason: str, parked_at: str,
            key: ParkingKey | None, client: str | None, verified: bool) -> AmqpMessage:
    digest = hashlib.sha256(m.body).hexdigest()
    envelope = None
    if key is not None:
        inner = {"body": b64e(m.body), "message_id": m.message_id, "correlation_id": m.correlation_id,
                 "content_type": m.content_type,
                 "headers": {k: _text(m.headers[k]) for k in SIGNATURE_FIELDS if k in m.headers}}
        envelope = seal(json.dumps(inner).encode(), referral_id=f"parked:{digest}",
                        recipients={key.key_id: key.public_key})
    form = "sealed" if envelope else "metadata"
    client = safe_id(client) if client and safe_id(client) == client else None
    doc = {"form": form, "queue": queue, "reason": reason, "parked_at": parked_at,
           "message_id": safe_id(m.message_id), "client_id": client, "client_verified": bool(client and verified),
           "body_bytes": len(m.body), "body_sha256": digest, "sealed": envelope}
    return AmqpMessage(json.dumps(doc).encode(), {**park_headers, FORM_HEADER: form}, safe_id(m.message_id) or "",
                       safe_id(m.correlation_id), "application/json")


def _strip(value: Any, path: str, removed: list[str]) -> Any:
    if isinstance(value, dict):
        kept = {}
        for k, v in value.items():
            if k.endswith("_sealed"):
                removed.append(path + k)
            else:
                kept[k] = _strip(v, f"{path}{k}.", removed)
        return kept
    if isinstance(value, list):
        return [_strip(v, path, removed) for v in value]
    return value


def _stripped(m: AmqpMessage, park_headers: dict[str, Any]) -> AmqpMessage:
    removed: list[str] = []
    headers = {**m.headers, **park_headers}
    try:
        kept = _strip(json.loads(m.body), "", removed)
    except ValueError:  # not JSON: it has no sealed field
        return AmqpMessage(m.body, {**headers, FORM_HEADER: "original"}, m.message_id, m.correlation_id,
                           m.content_type, m.app_id)
    except RecursionError:  # too deep to look through: keep nothing of it
        return AmqpMessage(b"", {**headers, FORM_HEADER: "metadata"}, m.message_id, m.correlation_id, None, m.app_id)
    if not removed:
        return AmqpMessage(m.body, {**headers, FORM_HEADER: "original"}, m.message_id, m.correlation_id,
                           m.content_type, m.app_id)
    body = json.dumps(kept, separators=(",", ":")).encode()
    return AmqpMessage(body, {**headers, FORM_HEADER: "stripped", STRIPPED_HEADER: ",".join(removed)[:512]},
                       m.message_id, m.correlation_id, m.content_type, m.app_id)


def parked_document(body: bytes) -> dict[str, Any] | None:
    """The metadata document of a `sealed`/`metadata` copy (None if `body` is not one)."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) and doc.get("form") in ("sealed", "metadata") else None


def open_parked(body: bytes, private_key: PrivateKey) -> AmqpMessage:
    """The original message of a `sealed` copy; CryptoError if this key cannot open it."""
    doc = parked_document(body)
    if doc is None or not doc.get("sealed"):
        raise CryptoError("nothing sealed here: the body was dropped when it was parked")
    for key_id in envelope_key_ids(doc["sealed"]):
        try:
            raw = open_sealed(doc["sealed"], referral_id=f"parked:{doc['body_sha256']}", key_id=key_id,
                              private_key=private_key)
        except CryptoError:
            continue
        inner = json.loads(raw)
        original = b64d(inner["body"])
        if hashlib.sha256(original).hexdigest() != doc["body_sha256"]:
            raise CryptoError("the sealed body does not match its SHA-256")
        return AmqpMessage(original, dict(inner["headers"]), inner["message_id"] or "", inner["correlation_id"],
                           inner["content_type"])
    raise CryptoError("cannot open: not sealed to this key")
