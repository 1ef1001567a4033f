"""What a parked message may hold (DESIGN §5: a parked message never holds content in clear).

`parked_copy` turns a message on its way to `<queue>.parked` (parked by a consumer, or
re-parked by `safeguard retention run`) into what the parking queue keeps:

- **client-signed queues** (`intake.submissions`: a MASH system's referral, content in
  clear by design) — a JSON metadata document (form, queue, reason, time, message id,
  client and whether its signature verified, body size and SHA-256) and the original
  message (body, the four submission signature headers, ids) **sealed** to the submission's
  recipient teams (`shared.crypto.seal`, associated data `parked:<sha256>`): form `sealed`.
  Who they are is the consuming service's business: `seal_to(body, client, verified)` gives
  their public keys (intake: services/intake/recipients.py — the LA's and the force's team
  keys, those that resolve). When none resolves, or there is no `seal_to`, the body is
  dropped (form `metadata`). No client header or property is kept in clear; an id is kept
  only when it looks like an id.
- **service queues** — the bus carries ids and codes in clear and content only sealed: the
  body is kept without any `*_sealed` field at any depth (form `stripped`, the dropped paths
  in `x-parked-stripped`), or unchanged when it has none (form `original`). A stripped copy
  no longer matches its signature, so it is never replayed.

`open_parked` gives the sealed original back to a holder of one recipient team's private key.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nacl.public import PrivateKey, PublicKey

from shared.bus.topology import INTAKE_SUBMISSIONS
from shared.crypto import CryptoError, b64d, b64e, envelope_key_ids, open_sealed, seal
from shared.logging import get_logger

log = get_logger(__name__)

FORM_HEADER = "x-parked-form"
STRIPPED_HEADER = "x-parked-stripped"
CLIENT_SIGNED_QUEUES = frozenset({INTAKE_SUBMISSIONS})
SIGNATURE_FIELDS = ("keyid", "created", "nonce", "signature")
_ID = re.compile(r"[A-Za-z0-9._:@+=/-]{1,128}")


# The recipient teams' public keys (key id -> key) for a submission's body, its client and
# whether that client's signature verified; empty: the body is dropped.
SealTo = Callable[[bytes, str | None, bool], Mapping[str, PublicKey]]


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
                seal_to: SealTo | None = None, client: str | None = None, client_verified: bool = False
                ) -> AmqpMessage:
    """What `<queue>.parked` keeps of `original`; `park_headers` are the x-parked-* (or x-death) headers."""
    if queue in CLIENT_SIGNED_QUEUES:
        recipients = _recipients(seal_to, original.body, client, client_verified)
        return _sealed(queue, original, park_headers, reason, parked_at, recipients, client, client_verified)
    return _stripped(original, park_headers)


def _recipients(seal_to: SealTo | None, body: bytes, client: str | None, verified: bool
                ) -> Mapping[str, PublicKey]:
    """`seal_to`'s keys for this body; none (the body is dropped) if there is no `seal_to` or it fails."""
    if seal_to is None:
        return {}
    try:
        return dict(seal_to(body, client, verified))
    except Exception as exc:  # never keep the body in clear because its recipients could not be found
        log.warning("parked_recipients_failed", error=type(exc).__name__)
        return {}


def _sealed(queue: str, m: AmqpMessage, park_headers: dict[str, Any], reason: str, parked_at: str,
            recipients: Mapping[str, PublicKey], client: str | None, verified: bool) -> AmqpMessage:
    digest = hashlib.sha256(m.body).hexdigest()
    envelope = None
    if recipients:
        inner = {"body": b64e(m.body), "message_id": m.message_id, "correlation_id": m.correlation_id,
                 "content_type": m.content_type,
                 "headers": {k: _text(m.headers[k]) for k in SIGNATURE_FIELDS if k in m.headers}}
        envelope = seal(json.dumps(inner).encode(), referral_id=f"parked:{digest}",
                        recipients=recipients)
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
    key_ids = envelope_key_ids(doc["sealed"])
    for key_id in key_ids:
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
    raise CryptoError(f"cannot open: not sealed to this key; it is sealed to {', '.join(key_ids) or 'no key'}")
