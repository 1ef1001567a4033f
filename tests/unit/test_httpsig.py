"""RFC 9421 request signing and verification (shared.httpsig)."""
from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from shared import httpsig
from shared.httpsig import NonceCache, SignatureRejected

# RFC 9421 Appendix B.1.4 "test-key-ed25519" (PKCS#8 PEM body; the seed is the
# last 32 bytes of the DER) and Appendix B.2.6 "Signing a Request Using ed25519".
RFC_PKCS8_B64 = "MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF"
RFC_PUBLIC_SPKI_B64 = "MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs="
RFC_B26_BASE = (
    '"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
    '"@method": POST\n'
    '"@path": /foo\n'
    '"@authority": example.com\n'
    '"content-type": application/json\n'
    '"content-length": 18\n'
    '"@signature-params": ("date" "@method" "@path" "@authority" "content-type" '
    '"content-length");created=1618884473;keyid="test-key-ed25519"'
)
RFC_B26_SIGNATURE = (
    "wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw=="
)
# The test-request message of RFC 9421 Appendix B.2.
RFC_REQUEST_HEADERS = {
    "Host": "example.com",
    "Date": "Tue, 20 Apr 2021 02:07:55 GMT",
    "Content-Type": "application/json",
    "Content-Digest": "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
    "Content-Length": "18",
}
RFC_BODY = b'{"hello": "world"}'

NOW = 1_700_000_000
AUTHORITY = "intake.example.gov.uk"  # the host the tests' requests are addressed to
BODY = b'{"child": {"name": "CANARY-Alex-Example"}, "concern": "secret narrative"}'


def _rfc_key() -> SigningKey:
    return SigningKey(base64.b64decode(RFC_PKCS8_B64)[-32:])


def test_rfc9421_b26_signature_base_and_signature() -> None:
    key = _rfc_key()
    assert bytes(key.verify_key) == base64.b64decode(RFC_PUBLIC_SPKI_B64)[-32:]
    components = ["date", "@method", "@path", "@authority", "content-type", "content-length"]
    params = httpsig.serialize_signature_params(
        components, {"created": 1618884473, "keyid": "test-key-ed25519"})
    base = httpsig.signature_base(components, params, method="POST", authority="example.com",
                                  path="/foo", query="param=Value&Pet=dog", headers=RFC_REQUEST_HEADERS)
    assert base == RFC_B26_BASE
    signature = key.sign(base.encode()).signature
    assert base64.b64encode(signature).decode() == RFC_B26_SIGNATURE
    key.verify_key.verify(base.encode(), signature)  # raises if invalid


def test_rfc9421_b26_headers_verify_through_parser() -> None:
    """The RFC's own Signature-Input/Signature fields parse and verify."""
    headers = dict(RFC_REQUEST_HEADERS)
    headers["Signature-Input"] = ('sig-b26=("date" "@method" "@path" "@authority" "content-type" '
                                  '"content-length");created=1618884473;keyid="test-key-ed25519"')
    headers["Signature"] = f"sig-b26=:{RFC_B26_SIGNATURE}:"
    verify = _rfc_key().verify_key
    common = dict(method="POST", path="/foo", query="", headers=headers, body=None,
                  resolve_key={"test-key-ed25519": verify}.get, now=1618884473, label="sig-b26")
    # The RFC example carries no nonce; everything up to the signature passes.
    with pytest.raises(SignatureRejected) as exc:
        httpsig.verify_request(nonces=NonceCache(), **common)
    assert exc.value.reason == "missing_nonce"
    headers["Signature"] = f"sig-b26=:{base64.b64encode(bytes(64)).decode()}:"
    with pytest.raises(SignatureRejected) as exc:
        httpsig.verify_request(nonces=NonceCache(), **common)
    assert exc.value.reason == "bad_signature"


def test_content_digest_rfc9530_example() -> None:
    # RFC 9530 Appendix B.1 / RFC 9421 test request: sha-256 of {"hello": "world"}.
    value = httpsig.content_digest(RFC_BODY)
    assert value == "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
    assert httpsig.check_content_digest(value, RFC_BODY)
    assert httpsig.check_content_digest("sha-512=:AAAA:, " + value, RFC_BODY)
    assert not httpsig.check_content_digest(value, RFC_BODY + b" ")
    assert not httpsig.check_content_digest(RFC_REQUEST_HEADERS["Content-Digest"], RFC_BODY)  # no sha-256
    for garbage in ("", "sha-256", "sha-256=abc", "sha-256=:!!:", 'sha-256="x"', "SHA-256=:AAAA:"):
        assert not httpsig.check_content_digest(garbage, RFC_BODY)


def test_signature_base_derived_components_and_fields() -> None:
    base = httpsig.signature_base(
        ["@method", "@authority", "@path", "@query", "@target-uri", "x-list"], "()",
        method="GET", authority="Intake.Example.GOV.uk", path="/v1/stats", query="?a=1&b=2",
        headers=_Multi([("X-List", "  one "), ("x-list", "two\t")]))
    assert base.split("\n") == [
        '"@method": GET', '"@authority": intake.example.gov.uk', '"@path": /v1/stats',
        '"@query": ?a=1&b=2', '"@target-uri": https://intake.example.gov.uk/v1/stats?a=1&b=2',
        '"x-list": one, two', '"@signature-params": ()']
    empty = httpsig.signature_base(["@query"], "()", method="GET", authority=None, path="/",
                                   query="", headers={})
    assert empty.startswith('"@query": ?\n')


class _Multi(dict):
    """A mapping whose items() repeats a header name, as a multidict does."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__(pairs)
        self._pairs = pairs

    def items(self):  # type: ignore[override]
        return list(self._pairs)


@pytest.mark.parametrize("components", [["x-a"], ["@method", "@method"], ["@status"], ["X-A"]])
def test_signature_base_refuses_bad_components(components: list[str]) -> None:
    with pytest.raises(SignatureRejected) as exc:
        httpsig.signature_base(components, "()", method="GET", authority=None, path="/", query="",
                               headers={"x-a": 'v\n"@method": POST'})
    assert exc.value.reason == "malformed_signature"
    with pytest.raises(SignatureRejected) as exc:
        httpsig.signature_base(["x-missing"], "()", method="GET", authority=None, path="/", query="",
                               headers={})
    assert exc.value.reason == "missing_component"


def test_accepts_aiohttp_style_case_insensitive_headers(key) -> None:
    from multidict import CIMultiDict, CIMultiDictProxy

    headers = CIMultiDictProxy(CIMultiDict({k.upper(): v for k, v in _sign(key).items()}))
    assert _verify(key, headers) == "dev-mash"


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


def _sign(key: SigningKey, **overrides) -> dict[str, str]:
    args = dict(method="POST", path="/v1/referrals", body=BODY, key_id="dev-mash", key=key,
                created=NOW, nonce="n-1", authority=AUTHORITY)
    args.update(overrides)
    return httpsig.sign_request(**args)


def _verify(key: SigningKey, headers, *, nonces=None, **overrides) -> str:
    args = dict(method="POST", path="/v1/referrals", query="", headers=headers, body=BODY,
                resolve_key={"dev-mash": key.verify_key}.get, nonces=NonceCache() if nonces is None else nonces, now=NOW,
                authority=AUTHORITY)
    args.update(overrides)
    return httpsig.verify_request(**args)


def _reason(key: SigningKey, headers, **overrides) -> SignatureRejected:
    with pytest.raises(SignatureRejected) as exc:
        _verify(key, headers, **overrides)
    return exc.value


def test_post_round_trip(key) -> None:
    headers = _sign(key)
    assert headers["Content-Digest"] == httpsig.content_digest(BODY)
    assert headers["Signature-Input"] == (
        'sig1=("@method" "@authority" "@path" "content-digest");created=1700000000;'
        'keyid="dev-mash";alg="ed25519";nonce="n-1"')
    assert headers["Signature"].startswith("sig1=:") and headers["Signature"].endswith(":")
    lowered = {k.lower(): v for k, v in headers.items()}  # header names are case-insensitive
    assert _verify(key, lowered) == "dev-mash"


def test_get_with_query_round_trip(key) -> None:
    headers = _sign(key, method="GET", path="/v1/stats", query="from=2024-01-01&to=2024-02-01", body=None)
    assert "Content-Digest" not in headers
    assert '("@method" "@authority" "@path" "@query")' in headers["Signature-Input"]
    assert _verify(key, headers, method="GET", path="/v1/stats",
                   query="?from=2024-01-01&to=2024-02-01", body=None) == "dev-mash"
    assert _reason(key, headers, method="GET", path="/v1/stats",
                   query="from=2024-01-01&to=2099-01-01", body=None).reason == "bad_signature"


def test_default_created_and_nonce_are_fresh(key) -> None:
    a = httpsig.sign_request(method="GET", path="/", body=None, key_id="dev-mash", key=key, authority=AUTHORITY)
    b = httpsig.sign_request(method="GET", path="/", body=None, key_id="dev-mash", key=key, authority=AUTHORITY)
    assert a["Signature-Input"] != b["Signature-Input"]
    nonces = NonceCache()
    for headers in (a, b):
        assert _verify(key, headers, method="GET", path="/", body=None, now=None, nonces=nonces) == "dev-mash"


def test_rejects_missing_headers(key) -> None:
    assert _reason(key, {}).reason == "missing_signature"
    headers = _sign(key)
    del headers["Signature"]
    assert _reason(key, headers).reason == "missing_signature"
    assert _reason(key, _sign(key), label="sig2").reason == "missing_signature"


def test_rejects_unknown_keyid(key) -> None:
    exc = _reason(key, _sign(key, key_id="stranger"))
    assert (exc.reason, exc.key_id) == ("unknown_keyid", "stranger")


def test_rejects_tampered_body(key) -> None:
    exc = _reason(key, _sign(key), body=BODY.replace(b"secret", b"public"))
    assert (exc.reason, exc.key_id) == ("digest_mismatch", "dev-mash")
    assert "CANARY" not in str(exc) and "narrative" not in str(exc) and "narrative" not in repr(exc)


def test_rejects_altered_signature_bytes(key) -> None:
    headers = _sign(key)
    raw = bytearray(base64.b64decode(headers["Signature"][len("sig1=:"):-1]))
    raw[5] ^= 0x80
    headers["Signature"] = f"sig1=:{base64.b64encode(bytes(raw)).decode()}:"
    assert _reason(key, headers).reason == "bad_signature"


def test_rejects_recomputed_digest_for_tampered_body(key) -> None:
    headers = _sign(key)
    tampered = BODY.replace(b"secret", b"public")
    headers["Content-Digest"] = httpsig.content_digest(tampered)
    assert _reason(key, headers, body=tampered).reason == "bad_signature"


def test_rejects_other_method_or_path(key) -> None:
    assert _reason(key, _sign(key), method="PUT").reason == "bad_signature"
    assert _reason(key, _sign(key), path="/v1/referrals/x/close").reason == "bad_signature"


@pytest.mark.parametrize("offset", [-301, 301])
def test_rejects_stale_or_future_created(key, offset: int) -> None:
    assert _reason(key, _sign(key, created=NOW + offset)).reason == "stale_created"
    assert _verify(key, _sign(key, created=NOW + (300 if offset > 0 else -300))) == "dev-mash"


def test_rejects_replayed_nonce(key) -> None:
    nonces = NonceCache()
    headers = _sign(key)
    assert _verify(key, headers, nonces=nonces) == "dev-mash"
    assert _reason(key, headers, nonces=nonces).reason == "replayed_nonce"


def test_bad_signature_does_not_burn_the_nonce(key) -> None:
    nonces = NonceCache()
    assert _reason(key, _sign(SigningKey.generate()), nonces=nonces).reason == "bad_signature"
    assert _verify(key, _sign(key), nonces=nonces) == "dev-mash"


def test_rejects_missing_nonce(key) -> None:
    components = ["@method", "@authority", "@path", "content-digest"]
    params = httpsig.serialize_signature_params(
        components, {"created": NOW, "keyid": "dev-mash", "alg": "ed25519"})
    digest = httpsig.content_digest(BODY)
    base = httpsig.signature_base(components, params, method="POST", authority=AUTHORITY,
                                  path="/v1/referrals", query="", headers={"Content-Digest": digest})
    sig = base64.b64encode(key.sign(base.encode()).signature).decode()
    headers = {"Content-Digest": digest, "Signature-Input": f"sig1={params}", "Signature": f"sig1=:{sig}:"}
    assert _reason(key, headers).reason == "missing_nonce"


def _sign_custom(key: SigningKey, components: list[str], params: dict, body: bytes | None) -> dict[str, str]:
    headers = {"Content-Digest": httpsig.content_digest(body)} if body is not None else {}
    text = httpsig.serialize_signature_params(components, params)
    base = httpsig.signature_base(components, text, method="POST", authority=AUTHORITY,
                                  path="/v1/referrals", query="", headers=headers)
    sig = base64.b64encode(key.sign(base.encode()).signature).decode()
    return headers | {"Signature-Input": f"sig1={text}", "Signature": f"sig1=:{sig}:"}


def test_rejects_uncovered_content_digest(key) -> None:
    params = {"created": NOW, "keyid": "dev-mash", "alg": "ed25519", "nonce": "n"}
    headers = _sign_custom(key, ["@method", "@authority", "@path"], params, BODY)
    assert _reason(key, headers).reason == "missing_component"


def test_rejects_uncovered_authority(key) -> None:
    """DESIGN §3.3: @authority is required, so a signature cannot be replayed on another host."""
    params = {"created": NOW, "keyid": "dev-mash", "alg": "ed25519", "nonce": "n"}
    headers = _sign_custom(key, ["@method", "@path", "content-digest"], params, BODY)
    exc = _reason(key, headers)
    assert (exc.reason, exc.key_id) == ("missing_component", "dev-mash")


def test_authority_is_the_host_header_as_received(key) -> None:
    headers = _sign(key, authority="Intake.Example.GOV.uk:8443")
    assert _verify(key, {**headers, "Host": "intake.example.gov.uk:8443"}, authority=None) == "dev-mash"
    for host in ("intake.example.gov.uk", "staging.example.gov.uk:8443", "127.0.0.1:8443"):
        assert _reason(key, {**headers, "Host": host}, authority=None).reason == "bad_signature", host
    assert _reason(key, headers, authority=None).reason == "missing_component"  # no Host at all


def test_signing_needs_the_authority(key) -> None:
    with pytest.raises(TypeError):
        httpsig.sign_request(method="GET", path="/", body=None, key_id="dev-mash", key=key)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        httpsig.sign_request(method="GET", path="/", body=None, key_id="dev-mash", key=key, authority="")


@pytest.mark.parametrize(("url", "authority"), [
    ("http://127.0.0.1:8080/v1/referrals", "127.0.0.1:8080"), ("https://Relay.Example.gov.uk/v1/x", "relay.example.gov.uk"),
    ("https://relay.example.gov.uk:443/", "relay.example.gov.uk"), ("http://relay.example:80", "relay.example"),
    ("https://relay.example:8443/?a=1", "relay.example:8443"), ("http://[::1]:8080/", "[::1]:8080")])
def test_authority_of_a_url_is_what_clients_send_as_host(url: str, authority: str) -> None:
    assert httpsig.authority_of(url) == authority


def test_rejects_uncovered_query(key) -> None:
    headers = _sign(key, method="GET", body=None)
    assert _reason(key, headers, method="GET", body=None, query="limit=5").reason == "missing_component"


def test_rejects_other_algorithms(key) -> None:
    params = {"created": NOW, "keyid": "dev-mash", "alg": "hmac-sha256", "nonce": "n"}
    headers = _sign_custom(key, ["@method", "@path", "content-digest"], params, BODY)
    exc = _reason(key, headers)
    assert (exc.reason, exc.key_id) == ("bad_algorithm", "dev-mash")


def test_rejects_malformed_fields(key) -> None:
    good = _sign(key)
    cases = [
        {"Signature-Input": "sig1=(", "Signature": good["Signature"]},
        {"Signature-Input": good["Signature-Input"], "Signature": "sig1=:not base64!:"},
        {"Signature-Input": good["Signature-Input"], "Signature": "sig1=:AAAA:"},  # wrong length
        {"Signature-Input": good["Signature-Input"].replace('keyid="dev-mash"', "keyid=dev"),
         "Signature": good["Signature"]},
        {"Signature-Input": good["Signature-Input"].replace("created=1700000000", 'created="1"'),
         "Signature": good["Signature"]},
        {"Signature-Input": 'sig1="@method";keyid="dev-mash"', "Signature": good["Signature"]},
    ]
    for headers in cases:
        assert _reason(key, {**good, **headers}).reason == "malformed_signature", headers


def test_nonce_cache_window_expiry_and_bound() -> None:
    cache = NonceCache(window=600, max_entries=3)
    assert cache.seen_or_add("a", "1", 0) is False
    assert cache.seen_or_add("a", "1", 599) is True
    assert cache.seen_or_add("b", "1", 10) is False  # nonces are per key id
    assert cache.seen_or_add("a", "1", 601) is False  # expired, recorded afresh
    for n in range(10):
        cache.seen_or_add("c", str(n), 700)
    assert len(cache) == 3
    assert cache.seen_or_add("c", "9", 701) is True


def test_future_dated_request_cannot_be_replayed_within_skew(key) -> None:
    """A request created 300 s ahead stays acceptable for 600 s; so must its nonce."""
    nonces = NonceCache()
    headers = _sign(key, created=NOW + 300)
    assert _verify(key, headers, nonces=nonces, now=NOW) == "dev-mash"
    assert _reason(key, headers, nonces=nonces, now=NOW + 599).reason == "replayed_nonce"


def test_rejection_str_never_contains_body(key) -> None:
    headers = _sign(key)
    for body in (b"CANARY-other-body", BODY + b"x"):
        exc = _reason(key, headers, body=body)
        assert "CANARY" not in str(exc) and "CANARY" not in repr(exc)


_FRAGMENTS = st.sampled_from([
    "sig1", "=", "(", ")", '"@method"', '"@path"', " ", ";", ",", "created=", "1700000000",
    'keyid="dev-mash"', 'alg="ed25519"', 'nonce="x"', ":", "AAAA", "==", "?1", "-", "1.5",
    "\\", '"', "\t", "é", "*", "sig1=:", ":", "sig2=", "9" * 20, "\x00",
])
_VALID = httpsig.sign_request(method="POST", path="/v1/referrals", body=BODY, key_id="dev-mash",
                              key=SigningKey(bytes(32)), created=NOW, nonce="n-1", authority=AUTHORITY)


@st.composite
def _mutated(draw, text: str) -> str:
    """A valid field with a few characters replaced, inserted or deleted."""
    chars = list(text)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(chars)))
        op, c = draw(st.sampled_from(["set", "insert", "delete"])), draw(st.characters(max_codepoint=0x7F))
        if op == "insert" or i == len(chars):
            chars.insert(i, c)
        elif op == "set":
            chars[i] = c
        else:
            del chars[i]
    return "".join(chars)


_GARBAGE_INPUT = st.one_of(st.text(max_size=200), st.lists(_FRAGMENTS, max_size=30).map("".join),
                           _mutated(_VALID["Signature-Input"]))
_GARBAGE_SIG = st.one_of(st.text(max_size=200), st.lists(_FRAGMENTS, max_size=30).map("".join),
                         _mutated(_VALID["Signature"]), st.just(_VALID["Signature"]))


@settings(max_examples=400, deadline=None)
@given(sig_input=_GARBAGE_INPUT, signature=_GARBAGE_SIG)
def test_garbage_headers_only_raise_signature_rejected(sig_input: str, signature: str) -> None:
    key = SigningKey(bytes(32))
    headers = {"Signature-Input": sig_input, "Signature": signature,
               "Content-Digest": httpsig.content_digest(BODY)}
    try:
        key_id = httpsig.verify_request(
            method="POST", path="/v1/referrals", query="", headers=headers, body=BODY,
            resolve_key={"dev-mash": key.verify_key}.get, nonces=NonceCache(), now=NOW, authority=AUTHORITY)
    except SignatureRejected as exc:
        assert exc.reason in httpsig.REASONS
    else:  # only a mutation that leaves the signed meaning intact may pass
        assert key_id == "dev-mash"


def test_a_rejection_carries_the_signature_base_the_verifier_computed(key) -> None:
    headers = _sign(key)
    exc = _reason(key, headers, path="/v1/other")
    assert exc.reason == "bad_signature"
    assert exc.signature_base is not None and exc.signature_base.startswith('"@method": POST\n"@authority": ')
    assert '"@path": /v1/other\n' in exc.signature_base
    assert exc.signature_base not in str(exc) and exc.signature_base not in repr(exc)  # never in a log line
    assert _reason(key, {}).signature_base is None  # nothing parsed, nothing computed
    assert _reason(key, headers, body=BODY + b" ").signature_base is not None  # digest_mismatch
