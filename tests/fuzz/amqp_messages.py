"""Strategies of bad messages for each consumer, each with the parking reasons it may get.

Service consumers (escalation.events, notifier.requests): a broken body is properly
signed by its real producer, so it passes the envelope check and reaches the schema
check (`schema_invalid`); a broken envelope carries a valid body. Intake's submissions:
signed by the dev MASH client as DESIGN §3.4 says, or with broken signature headers.
"""
from __future__ import annotations

import base64
import time
import uuid
from typing import Any

from hypothesis import strategies as st
from nacl.signing import SigningKey

from services.intake.domain.referral import Referral
from shared import bus
from shared.bus.message import FORGED_REASONS
from shared.messages import Message
from tests.fuzz.amqp_harness import Bad
from tests.fuzz.amqp_strategies import BODY_KINDS, HEADER_VALUE, invalid_body

TOKEN = st.from_regex(r"[a-z_]{1,20}", fullmatch=True)


def signed(key: SigningKey, producer: str, kind: str, body: bytes, routing_key: str, *,
           message_id: str | None = None, exchange: str = bus.EVENTS) -> Bad:
    mid = uuid.uuid4().hex if message_id is None else message_id
    return Bad(kind, body, routing_key, bus.sign_headers(key, producer, routing_key, mid, body),
               exchange=exchange, message_id=mid)


def service_kinds(keys: dict[str, SigningKey], allowed: frozenset[str], extra: dict[str, Any]) -> tuple[str, ...]:
    """Every way `service_message` breaks a message for this consumer."""
    outsiders = ["wrong_producer"] if set(keys) - allowed else []
    return (*(f"body:{k}" for k in BODY_KINDS), "unsigned", "junk_headers", "bad_signature", "unknown_producer",
            *outsiders, *extra)


@st.composite
def service_message(draw, valid: list[tuple[str, Message]], keys: dict[str, SigningKey], *,
                    allowed: frozenset[str], extra: dict[str, Any], kind: str) -> tuple[Bad, frozenset[str]]:
    """A bad message of `kind` for a consumer of `valid` (producer, event) pairs; `extra`
    adds consumer-specific envelope breaks: {kind: (strategy of Bad, reasons)}."""
    producer, event = draw(st.sampled_from(valid))
    key, rk, body = keys[producer], event.routing_key, event.to_bytes()
    if kind.startswith("body:"):
        how, broken = draw(invalid_body(type(event), event, (kind[5:],)))
        return signed(key, producer, f"body:{how}", broken, rk), frozenset({"schema_invalid"})
    if kind == "unsigned":
        return Bad(kind, body, rk, draw(st.sampled_from([{}, {"traceparent": "00-x"}]))), frozenset({"unsigned"})
    if kind == "junk_headers":
        headers = {bus.PRODUCER_HEADER: draw(HEADER_VALUE), bus.SIGNATURE_HEADER: draw(HEADER_VALUE)}
        return Bad(kind, body, rk, headers), frozenset(FORGED_REASONS)
    if kind == "bad_signature":
        bad = signed(key, producer, kind, body, rk)
        other = draw(st.sampled_from(["forged", "other_body", "not_base64"]))
        bad.headers[bus.SIGNATURE_HEADER] = {
            "forged": base64.b64encode(bytes(64)).decode(), "not_base64": "%%%not base64%%%",
            "other_body": bus.sign_headers(key, producer, rk, bad.message_id, body + b" ")[bus.SIGNATURE_HEADER],
        }[other]
        return bad, frozenset({"bad_signature"})
    if kind == "unknown_producer":
        return signed(SigningKey.generate(), draw(TOKEN.filter(lambda t: t not in keys)), kind, body, rk), \
            frozenset({"unknown_producer"})
    if kind == "wrong_producer":
        outsider = draw(st.sampled_from(sorted(set(keys) - allowed)))
        return signed(keys[outsider], outsider, kind, body, rk), frozenset({"producer_not_allowed"})
    strategy, reasons = extra[kind]
    return draw(strategy(producer, event)), reasons


def escalation_extra(keys: dict[str, SigningKey], known: set[str]) -> dict[str, Any]:
    def unknown_event(producer: str, event: Message):
        return TOKEN.filter(lambda t: f"referral.{t}" not in known).map(
            lambda t: signed(keys[producer], producer, "unknown_event", event.to_bytes(), f"referral.{t}"))

    def no_message_id(producer: str, event: Message):
        return st.just(signed(keys[producer], producer, "no_message_id", event.to_bytes(), event.routing_key,
                              message_id=""))
    return {"unknown_event": (unknown_event, frozenset({"unknown_event"})),
            # aiormq gives every published message an id, so the signed empty id no longer matches
            "no_message_id": (no_message_id, frozenset({"missing_message_id", "bad_signature"}))}


def notifier_extra(keys: dict[str, SigningKey], producers: dict[str, str]) -> dict[str, Any]:
    def wrong_key(producer: str, event: Message):  # an allowed producer, but not this key's
        others = sorted({"escalation", "intake"} - {producers[event.routing_key]})
        return st.sampled_from(others).map(
            lambda p: signed(keys[p], p, "producer_for_key", event.to_bytes(), event.routing_key))

    def direct(producer: str, event: Message):  # straight to the queue by the default exchange
        return st.just(signed(keys[producer], producer, "direct_to_queue", event.to_bytes(),
                              bus.NOTIFIER_REQUESTS, exchange=""))
    return {"producer_for_key": (wrong_key, frozenset({"producer_not_allowed_for_key"})),
            "direct_to_queue": (direct, frozenset({"unexpected_routing_key"}))}


def submission_headers(key: SigningKey, client_id: str, body: bytes, *, created: str | None = None,
                       nonce: str | None = None) -> dict[str, Any]:
    created = str(int(time.time())) if created is None else created
    nonce = uuid.uuid4().hex if nonce is None else nonce
    sig = key.sign(body + b"\n" + created.encode() + b"\n" + nonce.encode()).signature
    return {"keyid": client_id, "created": created, "nonce": nonce, "signature": base64.b64encode(sig).decode()}


SUBMISSION_KINDS = (*(f"body:{k}" for k in BODY_KINDS), "missing_header", "junk_header", "unknown_keyid",
                    "bad_signature", "stale", "short_nonce")


@st.composite
def submission(draw, key: SigningKey, base: dict[str, Any], reply_to: str,
               kind: str) -> tuple[Bad, frozenset[str] | None]:
    """A bad §3.4 submission of `kind`; reasons None: any documented problem."""
    valid = Referral.model_validate(base)
    if kind.startswith("body:"):
        how, body = draw(invalid_body(Referral, valid, (kind[5:],)))
        return Bad(f"body:{how}", body, "referral", submission_headers(key, "dev-mash", body),
                   exchange=bus.SUBMISSIONS, reply_to=reply_to), None
    body = valid.model_dump_json().encode()
    headers, reasons = submission_headers(key, "dev-mash", body), None
    if kind == "missing_header":
        del headers[draw(st.sampled_from(sorted(headers)))]
        reasons = {"missing_signature"}
    elif kind == "junk_header":
        headers[draw(st.sampled_from(sorted(headers)))] = draw(HEADER_VALUE)
    elif kind == "unknown_keyid":
        headers["keyid"], reasons = draw(TOKEN.filter(lambda t: not t.startswith("dev"))), {"unknown_keyid"}
    elif kind == "bad_signature":
        headers["signature"], reasons = base64.b64encode(bytes(64)).decode(), {"bad_signature"}
    elif kind == "stale":
        created = draw(st.sampled_from([str(int(time.time()) - 2 * 86_400), str(int(time.time()) + 3600), "soon"]))
        headers, reasons = submission_headers(key, "dev-mash", body, created=created), {"stale_created"}
    else:
        headers = submission_headers(key, "dev-mash", body, nonce=draw(st.text("abc", min_size=1, max_size=7)))
        reasons = {"missing_nonce"}
    return Bad(kind, body, "referral", headers, exchange=bus.SUBMISSIONS, reply_to=reply_to), \
        frozenset(reasons) if reasons else None
