"""Each RFC 9421 rejection reason in words, for the `detail` of a 401 problem: what an integrator
must check. Never a value from the request (the key id, a header, the body)."""
from __future__ import annotations

WORDS = {
    "missing_signature": "No Signature-Input and Signature fields with the label sig1.",
    "malformed_signature": "The Signature-Input or Signature field is malformed (RFC 9421 with RFC 9651 structured "
                           "fields: an inner list of lower-case component names, integer created, string keyid "
                           "and nonce, a 64-byte Ed25519 signature as a byte sequence).",
    "unknown_keyid": "Unknown key: the keyid names no client configured here.",
    "bad_algorithm": "The alg parameter must be ed25519.",
    "missing_component": "A required component is not covered (or not sent): \"@method\", \"@authority\" and "
                         "\"@path\" always, \"@query\" when there is a query, \"content-digest\" when there is a "
                         "body, \"on-behalf-of\" when that field is sent.",
    "stale_created": "Stale created: it is more than 300 seconds from this server's clock (or expires has passed).",
    "digest_mismatch": "Content-Digest mismatch: its sha-256 is not that of the body bytes received.",
    "bad_signature": "Bad signature: it does not verify over the signature base this server computed (check "
                     "@authority is the host[:port] you send as Host, @path and @query byte for byte as sent, "
                     "and the exact signature parameters).",
    "missing_nonce": "No nonce parameter, or a malformed one (8-200 visible ASCII characters).",
    "replayed_nonce": "Replayed nonce: this client already used it within the last 10 minutes.",
}


def in_words(reason: str) -> str:
    return WORDS.get(reason, "Signature rejected.")
