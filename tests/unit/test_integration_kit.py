"""The integration kit (docs/integration.md, docs/integration/): the committed vectors and schema are
what the code produces now; every vector value is recomputed here from its inputs by the RFC's
rules (not by the code under test) and verifies through intake's own checks; the docs show the
same values; each example referral validates or fails as its name says."""
from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from jsonschema import Draft202012Validator
from nacl.signing import SigningKey
from pydantic import ValidationError

from services.intake import auth
from services.intake.domain.referral import Referral
from shared.config import Client
from shared.httpsig import NonceCache, verify_request

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "docs" / "integration"
HTTP = json.loads((KIT / "vectors" / "http-signature.json").read_text())
AMQP = json.loads((KIT / "vectors" / "amqp-signature.json").read_text())
DOCS = (ROOT / "docs" / "integration.md").read_text()
EXAMPLES = sorted((KIT / "examples" / "referrals").glob("*.json"))


def _generator():
    spec = importlib.util.spec_from_file_location("integration_kit", ROOT / "scripts" / "integration_kit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["vectors/http-signature.json", "vectors/amqp-signature.json",
                                  "schema/referral.schema.json"])
def test_the_committed_files_are_what_the_code_produces(name):
    kit = _generator()
    assert (KIT / name).read_text() == kit.dump(kit.FILES[name]()), (
        f"docs/integration/{name} is stale: run `PYTHONPATH=. .venv/bin/python scripts/integration_kit.py`")


def test_the_key():
    key = SigningKey(bytes.fromhex(HTTP["key"]["seed_hex"]))
    assert base64.b64decode(HTTP["key"]["seed_base64"]) == bytes(key)
    assert base64.b64decode(HTTP["key"]["public_key_base64"]) == bytes(key.verify_key)
    assert AMQP["key"] == HTTP["key"]


@pytest.mark.parametrize("vector", HTTP["vectors"], ids=lambda v: v["name"])
def test_each_http_vector_recomputed_by_the_rfc_rules_and_accepted(vector):
    key, expected = SigningKey(bytes.fromhex(HTTP["key"]["seed_hex"])), vector["expected"]
    body = vector["body"].encode() if vector["body"] is not None else None
    digest = f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:" if body is not None else None
    assert expected["content_digest"] == digest
    lines = [("@method", vector["method"]), ("@authority", vector["authority"]), ("@path", vector["path"])]
    lines += [("@query", "?" + vector["query"])] if vector["query"] else []
    lines += [(name.lower(), value) for name, value in vector["covered"].items()]
    lines += [("content-digest", digest)] if digest else []
    params = (f'({" ".join(chr(34) + n + chr(34) for n, _ in lines)});created={vector["created"]};'
              f'keyid="{vector["keyid"]}";alg="ed25519";nonce="{vector["nonce"]}"')
    base = "\n".join(f'"{n}": {v}' for n, v in lines) + f'\n"@signature-params": {params}'
    assert expected["signature_base"] == base
    assert expected["signature_input"] == f"sig1={params}"
    signature = base64.b64encode(key.sign(base.encode()).signature).decode()
    assert expected["signature"] == f"sig1=:{signature}:"
    headers = {**vector["covered"], "Signature-Input": expected["signature_input"], "Signature": expected["signature"],
               **({"Content-Digest": digest} if digest else {}), "Host": vector["authority"]}
    assert verify_request(method=vector["method"], path=vector["path"], query=vector["query"], headers=headers,
                          body=body, resolve_key={vector["keyid"]: key.verify_key}.get, nonces=NonceCache(),
                          now=vector["created"]) == vector["keyid"]


def test_the_amqp_vector_recomputed_and_accepted_by_intake(monkeypatch):
    key, headers = SigningKey(bytes.fromhex(AMQP["key"]["seed_hex"])), AMQP["headers"]
    message = AMQP["body"] + "\n" + headers["created"] + "\n" + headers["nonce"]
    assert AMQP["expected"]["signed_message"] == message
    assert AMQP["expected"]["signature"] == base64.b64encode(key.sign(message.encode()).signature).decode()
    client = Client(id=headers["keyid"], role="referrer", organisation="dev-force",
                    verify_key=AMQP["key"]["public_key_base64"])
    checker = auth.Authenticator(SimpleNamespace(file=SimpleNamespace(clients=(client,))), engine=None)
    monkeypatch.setattr(auth.time, "time", lambda: int(headers["created"]) + 60)
    assert checker.verify_submission({**headers, "signature": AMQP["expected"]["signature"]},
                                     AMQP["body"].encode()) == (headers["keyid"], headers["nonce"])


def test_the_docs_show_the_same_values():
    shown = [HTTP["key"]["seed_hex"], HTTP["key"]["seed_base64"], HTTP["key"]["public_key_base64"],
             AMQP["expected"]["signature"], AMQP["headers"]["nonce"]]
    for vector in HTTP["vectors"][:2]:
        shown += [v for v in vector["expected"].values() if v]
    missing = [value for value in shown if value not in DOCS]
    assert not missing, f"docs/integration.md does not show: {missing}"


def test_examples_validate_or_fail_as_labelled():
    schema = json.loads((KIT / "schema" / "referral.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    assert {p.name.split("-")[0] for p in EXAMPLES} == {"valid", "invalid"} and len(EXAMPLES) >= 8
    for path in EXAMPLES:
        doc = json.loads(path.read_text())
        errors = list(validator.iter_errors(doc))
        if path.name.startswith("valid-"):
            assert not errors, (path.name, [e.message for e in errors])
            Referral.model_validate(doc)
        else:
            assert errors, path.name
            with pytest.raises(ValidationError):
                Referral.model_validate(doc)
