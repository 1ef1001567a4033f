"""Write the integration kit's generated files (docs/integration.md):

  docs/integration/vectors/http-signature.json   RFC 9421 requests signed with a fixed key
  docs/integration/vectors/amqp-signature.json   the AMQP submission signature (DESIGN §3.4)
  docs/integration/schema/referral.schema.json   the referral's JSON Schema (from the pydantic model)

Run after changing the signing code or the referral model, then commit the files:
    PYTHONPATH=. .venv/bin/python scripts/integration_kit.py
tests/integration/test_integration_kit.py recomputes every value independently and fails
while a committed file differs from what the code produces."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from nacl.signing import SigningKey

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.intake.domain.referral import Referral  # noqa: E402
from shared.crypto import b64e  # noqa: E402
from shared.httpsig import sign_request, signature_base  # noqa: E402

KIT = ROOT / "docs" / "integration"
SEED_HEX = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"  # RFC 8032 §7.1 TEST 1
CREATED, AUTHORITY = 1767225600, "intake.example.gov.uk"  # 2026-01-01T00:00:00Z
BODY = '{"client_reference":"MASH-2026-0001","force":"dev-force","la_code":"E99999999"}'
REQUESTS = [
    {"name": "post-referral", "method": "POST", "path": "/v1/referrals", "query": "", "body": BODY,
     "keyid": "example-mash", "nonce": "kit-nonce-0001", "covered": {}},
    {"name": "get-list", "method": "GET", "path": "/v1/referrals", "query": "status=received&limit=2",
     "body": None, "keyid": "example-social-care", "nonce": "kit-nonce-0002", "covered": {}},
    {"name": "post-acknowledgement-on-behalf-of", "method": "POST",
     "path": "/v1/referrals/PRV-2026-000001/acknowledgement", "query": "", "body": None,
     "keyid": "example-social-care", "nonce": "kit-nonce-0003",
     "covered": {"On-Behalf-Of": 'iss="https://login.example.gov.uk/", sub="AAAAsam", name="Sam Patel"'}},
]


def key() -> dict[str, str]:
    signing = SigningKey(bytes.fromhex(SEED_HEX))
    return {"alg": "ed25519", "seed_hex": SEED_HEX, "seed_base64": b64e(bytes(signing)),
            "public_key_base64": b64e(bytes(signing.verify_key))}


def http_vectors() -> dict:
    signing = SigningKey(bytes.fromhex(SEED_HEX))
    out = []
    for r in REQUESTS:
        body = r["body"].encode() if r["body"] is not None else None
        headers = sign_request(method=r["method"], path=r["path"], query=r["query"], body=body, key_id=r["keyid"],
                               key=signing, authority=AUTHORITY, created=CREATED, nonce=r["nonce"],
                               covered=r["covered"] or None)
        params = headers["Signature-Input"].removeprefix("sig1=")
        components = params[1:params.index(")")].replace('"', "").split()
        base = signature_base(components, params, method=r["method"], authority=AUTHORITY, path=r["path"],
                              query=r["query"], headers=headers)
        out.append({**r, "authority": AUTHORITY, "created": CREATED, "label": "sig1",
                    "expected": {"content_digest": headers.get("Content-Digest"), "signature_base": base,
                                 "signature_input": headers["Signature-Input"], "signature": headers["Signature"]}})
    return {"description": "RFC 9421 request signatures as intake checks them (docs/integration.md)",
            "key": key(), "vectors": out}


def amqp_vector() -> dict:
    signing = SigningKey(bytes.fromhex(SEED_HEX))
    created, nonce = str(CREATED), "kit-nonce-0004"
    message = BODY + "\n" + created + "\n" + nonce
    return {"description": "The AMQP submission signature (DESIGN §3.4): Ed25519 over body + \"\\n\" + created + "
                           "\"\\n\" + nonce; headers keyid, created, nonce, signature (standard base64)",
            "key": key(), "body": BODY, "headers": {"keyid": "example-mash", "created": created, "nonce": nonce},
            "expected": {"signed_message": message,
                         "signature": b64e(signing.sign(message.encode()).signature)}}


def schema() -> dict:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            **Referral.model_json_schema()}


def dump(value: dict) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


FILES = {"vectors/http-signature.json": http_vectors, "vectors/amqp-signature.json": amqp_vector,
         "schema/referral.schema.json": schema}

if __name__ == "__main__":
    for name, build in FILES.items():
        path = KIT / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump(build()))
        print(f"wrote {path.relative_to(ROOT)}")
