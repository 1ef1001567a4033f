"""RFC 9421 HTTP Message Signatures (Ed25519) with RFC 9530 Content-Digest.

DESIGN §3.3: label ``sig1``; covered ``"@method" "@authority" "@path"`` plus
``"@query"`` when there is a query and ``"content-digest"`` when there is a body;
parameters ``created``, ``keyid``, ``alg="ed25519"``, ``nonce``. ``@authority`` is the
host and port the client addressed (`authority_of(url)`: what its HTTP library sends
as ``Host``); the server takes it from the ``Host`` header as received, so a signature
made for one environment does not verify on another. Rejections carry a stable
``reason`` code and the client's key id, never any part of the request body.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import nacl.exceptions
from nacl.signing import SigningKey, VerifyKey
from yarl import URL

from shared.httpsig.sfv import Params, Token, parse_dictionary, serialize_item, serialize_signature_params

REASONS = frozenset({
    "missing_signature", "malformed_signature", "unknown_keyid", "bad_signature",
    "digest_mismatch", "missing_component", "bad_algorithm", "stale_created",
    "replayed_nonce", "missing_nonce"})
DERIVED = frozenset({"@method", "@path", "@query", "@authority", "@target-uri"})
REQUIRED = frozenset({"@method", "@authority", "@path"})  # and @query, content-digest when present


class SignatureRejected(Exception):
    """A request signature was refused; `reason` is a stable code. `signature_base`: the base the
    verifier computed, when it got that far (for a sandbox's 401 only: it holds header values)."""

    def __init__(self, reason: str, key_id: str | None = None, signature_base: str | None = None) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}")
        self.reason, self.key_id, self.signature_base = reason, key_id, signature_base
        super().__init__(reason if key_id is None else f"{reason} (keyid={key_id[:80]!r})")


class NonceStore(Protocol):
    def seen_or_add(self, key_id: str, nonce: str, now: float) -> bool:
        """Record (key_id, nonce); True if it was already seen inside the window."""


class NonceCache:
    """In-memory `NonceStore`, bounded, with expiry.

    The default window is 600 s = 2 x the default clock skew: a request stays
    acceptable while ``|now - created| <= 300``, a span of 600 s, so a nonce must
    be remembered at least that long or a future-dated request could be replayed.
    """

    def __init__(self, window: float = 600.0, max_entries: int = 100_000) -> None:
        self.window, self.max_entries = window, max_entries
        self._expiry: dict[tuple[str, str], float] = {}  # insertion order ~ time order

    def seen_or_add(self, key_id: str, nonce: str, now: float) -> bool:
        entry = (key_id, nonce)
        if self._expiry.get(entry, float("-inf")) > now:
            return True
        self._expiry.pop(entry, None)
        if len(self._expiry) >= self.max_entries:
            self._expiry = {k: t for k, t in self._expiry.items() if t > now}
            while len(self._expiry) >= self.max_entries:  # still full: drop oldest
                del self._expiry[next(iter(self._expiry))]
        self._expiry[entry] = now + self.window
        return False

    def __len__(self) -> int:
        return len(self._expiry)


class NonceCapture:
    """A NonceStore over a `NonceCache` that remembers the nonce it saw, for a claim that
    follows the signature check (a database claim, across restarts and replicas)."""

    def __init__(self, cache: NonceCache) -> None:
        self.cache, self.nonce = cache, None

    def seen_or_add(self, key_id: str, nonce: str, now: float) -> bool:
        self.nonce = nonce
        return self.cache.seen_or_add(key_id, nonce, now)



def authority_of(url: str | URL) -> str:
    """The `@authority` of a request to `url`: host (lower case) and port unless it is the
    scheme's default — what aiohttp, requests and curl send as `Host`."""
    authority = URL(str(url)).host_port_subcomponent
    if not authority:
        raise ValueError("an absolute http(s) URL is needed for @authority")
    return authority


# --- digests and the signature base ---------------------------------------------

def content_digest(body: bytes) -> str:
    """RFC 9530 Content-Digest value with sha-256."""
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"


def check_content_digest(header_value: str, body: bytes) -> bool:
    """True if the field holds a sha-256 member equal to the body's digest."""
    try:
        value, _ = parse_dictionary(header_value)["sha-256"]
    except (ValueError, KeyError):
        return False
    return isinstance(value, bytes) and hmac.compare_digest(value, hashlib.sha256(body).digest())


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    merged: dict[str, list[str]] = {}
    for name, value in headers.items():
        merged.setdefault(name.lower(), []).append(str(value).strip(" \t"))
    return {name: ", ".join(values) for name, values in merged.items()}


def signature_base(components: Sequence[str], params: str, *, method: str,
                   authority: str | None, path: str, query: str,
                   headers: Mapping[str, str], scheme: str = "https") -> str:
    """RFC 9421 §2.5 signature base; SignatureRejected for missing/bad components."""
    fields = _lower_headers(headers)
    query = query[1:] if query.startswith("?") else query
    derived = {"@method": method, "@path": path or "/", "@query": "?" + query,
               "@authority": authority.lower() if authority else None}
    if authority:
        derived["@target-uri"] = f"{scheme}://{derived['@authority']}{path or '/'}" + (
            f"?{query}" if query else "")
    if len(set(components)) != len(components):
        raise SignatureRejected("malformed_signature")
    lines = []
    for name in components:
        if name != name.lower() or (name.startswith("@") and name not in DERIVED):
            raise SignatureRejected("malformed_signature")
        value = derived.get(name) if name.startswith("@") else fields.get(name)
        if value is None:
            raise SignatureRejected("missing_component")
        if "\n" in value or "\r" in value:
            raise SignatureRejected("malformed_signature")
        lines.append(f'"{name}": {value}')
    lines.append(f'"@signature-params": {params}')
    return "\n".join(lines)


# --- signing and verification ----------------------------------------------------

def sign_request(*, method: str, path: str, query: str = "", body: bytes | None,
                 key_id: str, key: SigningKey, authority: str,
                 created: int | None = None, nonce: str | None = None,
                 label: str = "sig1", covered: Mapping[str, str] | None = None) -> dict[str, str]:
    """Headers to add: Content-Digest (if body), Signature-Input, Signature, and `covered`
    (further header fields, e.g. On-Behalf-Of, sent and covered by the signature). `authority`:
    the host[:port] the request goes to (`authority_of(url)`)."""
    if not authority:
        raise ValueError("sign_request needs the authority (host[:port]) the request is sent to")
    components = ["@method", "@authority", "@path"]
    components += ["@query"] if query.lstrip("?") else []
    headers: dict[str, str] = dict(covered or {})
    components += [name.lower() for name in covered or {}]
    if body is not None:
        headers["Content-Digest"] = content_digest(body)
        components.append("content-digest")
    params = serialize_signature_params(components, {
        "created": int(time.time()) if created is None else created, "keyid": key_id,
        "alg": "ed25519", "nonce": secrets.token_urlsafe(16) if nonce is None else nonce})
    base = signature_base(components, params, method=method, authority=authority,
                          path=path, query=query, headers=headers)
    signature = key.sign(base.encode()).signature
    headers["Signature-Input"] = f"{label}={params}"
    headers["Signature"] = f"{label}={serialize_item(signature)}"
    return headers


def _parse(sig_input: str, sig: str, label: str) -> tuple[list[str], Params, bytes]:
    try:
        inputs, sigs = parse_dictionary(sig_input), parse_dictionary(sig)
    except ValueError:
        raise SignatureRejected("malformed_signature") from None
    if label not in inputs or label not in sigs:
        raise SignatureRejected("missing_signature")
    (items, params), (signature, _) = inputs[label], sigs[label]
    keyid = params.get("keyid")
    if not isinstance(items, list) or not isinstance(keyid, str) or isinstance(keyid, Token):
        raise SignatureRejected("malformed_signature")
    if (not isinstance(signature, bytes) or len(signature) != 64
            or any(not isinstance(c, str) or isinstance(c, Token) or p for c, p in items)
            or any(k in params and type(params[k]) is not int for k in ("created", "expires"))):
        raise SignatureRejected("malformed_signature", keyid)
    return [c for c, _ in items], params, signature


def verify_request(*, method: str, path: str, query: str, headers: Mapping[str, str],
                   body: bytes | None, resolve_key: Callable[[str], VerifyKey | None],
                   nonces: NonceStore, now: float | None = None, max_skew: int = 300,
                   label: str = "sig1", authority: str | None = None,
                   covered_when_present: Sequence[str] = ("on-behalf-of",)) -> str:
    """Verify a signed request; return its key id or raise SignatureRejected (with the signature
    base it computed, when the signature parsed). A header named in `covered_when_present` that
    the request carries must be covered by the signature."""
    fields = _lower_headers(headers)
    if "signature-input" not in fields or "signature" not in fields:
        raise SignatureRejected("missing_signature")
    components, params, signature = _parse(fields["signature-input"], fields["signature"], label)
    base: str | SignatureRejected
    try:
        base = signature_base(components, serialize_signature_params(components, params), method=method,
                              authority=authority or fields.get("host"), path=path, query=query, headers=fields)
    except SignatureRejected as exc:
        base = exc  # refused below, in its turn (after the checks that come first)
    try:
        return _verify(components, params, signature, base, fields=fields, query=query, body=body,
                       resolve_key=resolve_key, nonces=nonces, now=time.time() if now is None else now,
                       max_skew=max_skew, covered_when_present=covered_when_present)
    except SignatureRejected as exc:
        exc.signature_base = base if isinstance(base, str) else None
        raise


def _verify(components: list[str], params: Params, signature: bytes, base: str | SignatureRejected, *,
            fields: Mapping[str, str], query: str, body: bytes | None,
            resolve_key: Callable[[str], VerifyKey | None], nonces: NonceStore, now: float, max_skew: int,
            covered_when_present: Sequence[str]) -> str:
    key_id: str = params["keyid"]
    if params.get("alg", "ed25519") != "ed25519":
        raise SignatureRejected("bad_algorithm", key_id)
    verify_key = resolve_key(key_id)
    if verify_key is None:
        raise SignatureRejected("unknown_keyid", key_id)
    required = set(REQUIRED) | ({"content-digest"} if body else set())
    required |= {"@query"} if query.lstrip("?") else set()
    required |= {name for name in covered_when_present if name in fields}
    if not required <= set(components):
        raise SignatureRejected("missing_component", key_id)
    created = params.get("created")
    if (created is None or abs(now - created) > max_skew
            or ("expires" in params and now > params["expires"])):
        raise SignatureRejected("stale_created", key_id)
    if "content-digest" in components or body:
        if "content-digest" not in fields:
            raise SignatureRejected("missing_component", key_id)
        if not check_content_digest(fields["content-digest"], body or b""):
            raise SignatureRejected("digest_mismatch", key_id)
    if isinstance(base, SignatureRejected):
        raise SignatureRejected(base.reason, key_id)
    try:
        verify_key.verify(base.encode(), signature)
    except nacl.exceptions.BadSignatureError:
        raise SignatureRejected("bad_signature", key_id) from None
    nonce = params.get("nonce")
    if not isinstance(nonce, str) or isinstance(nonce, Token) or not nonce:
        raise SignatureRejected("missing_nonce", key_id)
    if nonces.seen_or_add(key_id, nonce, now):
        raise SignatureRejected("replayed_nonce", key_id)
    return key_id
