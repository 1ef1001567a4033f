"""The signed envelope, without a broker."""
from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from shared import bus
from shared.bus.message import check_headers


def signed(key: SigningKey, producer="intake", routing_key="referral.received", body=b'{"a":1}', **kw):
    headers = bus.sign_headers(key, producer, routing_key, "m-1", body)
    return bus.BusMessage("m-1", routing_key, producer, body, None, {**headers, **kw})


def test_canonical_bytes_layout():
    assert bus.canonical_bytes("intake", "referral.received", "m-1", b"{}") == (
        b"safeguard-bus-v1\nintake\nreferral.received\nm-1\n{}")


def test_valid_signature_passes_and_json_decodes():
    key = SigningKey.generate()
    message = signed(key)
    bus.verify(message, {"intake": key.verify_key}, {"intake"})
    assert message.json() == {"a": 1}


@pytest.mark.parametrize("change,reason", [
    (lambda m, k: bus.BusMessage(m.message_id, m.routing_key, m.producer, m.body, None, {}), "unsigned"),
    (lambda m, k: m, "unknown_producer"),
    (lambda m, k: bus.BusMessage(m.message_id, "referral.closed", m.producer, m.body, None, m.headers),
     "bad_signature"),
    (lambda m, k: bus.BusMessage("m-2", m.routing_key, m.producer, m.body, None, m.headers), "bad_signature"),
    (lambda m, k: bus.BusMessage(m.message_id, m.routing_key, m.producer, m.body, None,
                                 {**m.headers, bus.SIGNATURE_HEADER: "not base64!"}), "bad_signature"),
])
def test_forgeries_are_named(change, reason):
    key = SigningKey.generate()
    keys = {"intake": key.verify_key} if reason != "unknown_producer" else {"notifier": key.verify_key}
    with pytest.raises(bus.ForgedMessage) as info:
        bus.verify(change(signed(key), key), keys, None)
    assert info.value.reason == reason


def test_producer_not_allowed():
    key = SigningKey.generate()
    with pytest.raises(bus.ForgedMessage) as info:
        bus.verify(signed(key, producer="notifier"), {"notifier": key.verify_key}, {"intake"})
    assert info.value.reason == "producer_not_allowed"


def test_dead_lettered_message_is_checked_against_the_key_it_was_published_with():
    headers = {"x-death": [{"queue": "notifier.retry.5s", "routing-keys": ["notifier.retry.5s"]}]}
    assert bus.signed_routing_key("notifier.requests", headers) == "notifier.retry.5s"
    assert bus.signed_routing_key("notifier.requests", {}) == "notifier.requests"


@pytest.mark.parametrize("headers", [{"subject_name": "x"}, {"traceparent": {"nested": 1}}, {"nonce": "x" * 600}])
def test_headers_carry_no_content(headers):
    with pytest.raises(ValueError):
        check_headers(headers)
    check_headers({"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01", "x-safeguard-attempt": 2})
