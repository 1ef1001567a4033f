"""A 401 says which check failed, in words (`detail`) beside the stable `reason`: unknown key,
digest mismatch, bad signature, stale `created`, replayed nonce, missing component. Only with
`[system] sandbox = true` does it also give the signature base intake computed (for an
integrator to compare with theirs) — never by default."""
from __future__ import annotations

import json
import time

import pytest

from services.intake.bootstrap import create_app
from shared.httpsig import authority_of, signature_base
from shared.httpsig.reasons import WORDS
from tests.factories import referral_body
from tests.intake.conftest import Intake, make_settings

BODY = referral_body()
PATH = "/v1/referrals"


def post(intake: Intake, body: bytes = BODY, **kw) -> tuple[dict[str, str], bytes]:
    return {**intake.signed("POST", PATH, kw.pop("client_id", "dev-mash"), BODY, **kw),
            "Content-Type": "application/json"}, body


CASES = {
    "unknown_keyid": lambda i: post(i, client_id="nobody", key_as="dev-mash"),
    "digest_mismatch": lambda i: post(i, body=BODY.replace(b"11-15", b"16-17")),
    "bad_signature": lambda i: post(i, authority="intake.example.org"),  # signed for another host
    "stale_created": lambda i: post(i, created=int(time.time()) - 3600),
    "missing_component": lambda i: ({**i.signed("POST", PATH, "dev-mash", None), "Content-Type": "application/json"},
                                    BODY),  # a body the signature does not cover
}


async def refused(intake: Intake, headers: dict[str, str], body: bytes) -> dict:
    resp = await intake.client.post(PATH, data=body, headers=headers)
    assert resp.status == 401 and resp.content_type == "application/problem+json"
    return json.loads(await resp.text())


@pytest.mark.parametrize("reason", sorted(CASES))
async def test_the_401_names_the_failed_check_in_words(intake, reason):
    problem = await refused(intake, *CASES[reason](intake))
    assert (problem["reason"], problem["detail"]) == (reason, WORDS[reason])
    assert "signature_base" not in problem  # not a sandbox


async def test_a_replayed_nonce_is_named(intake):
    headers, body = post(intake)
    assert (await intake.client.post(PATH, data=body, headers=headers)).status == 202
    problem = await refused(intake, headers, body)
    assert (problem["reason"], problem["detail"]) == ("replayed_nonce", WORDS["replayed_nonce"])
    assert problem["detail"].startswith("Replayed nonce")


@pytest.fixture
async def sandbox(tmp_path, amqp_url, pg_url, aiohttp_client) -> Intake:
    settings = make_settings(tmp_path, amqp_url, pg_url, sandbox=True)
    return Intake(await aiohttp_client(create_app(settings)), settings, tmp_path)


async def test_a_sandbox_gives_the_signature_base_it_computed(sandbox):
    headers, body = post(sandbox, authority="intake.example.org", created=int(time.time()), nonce="n-0123456789")
    problem = await refused(sandbox, headers, body)
    assert problem["reason"] == "bad_signature"
    params = headers["Signature-Input"].removeprefix("sig1=")
    server_side = signature_base(["@method", "@authority", "@path", "content-digest"], params, method="POST",
                                 authority=authority_of(sandbox.client.make_url(PATH)), path=PATH, query="",
                                 headers=headers)
    assert problem["signature_base"] == server_side  # the Host it received, not the one signed for
    assert '"@authority": intake.example.org' not in problem["signature_base"]
    problem = await refused(sandbox, *CASES["digest_mismatch"](sandbox))
    assert problem["reason"] == "digest_mismatch" and problem["signature_base"].startswith('"@method": POST\n')
    resp = await sandbox.client.post(PATH, data=BODY, headers={"Content-Type": "application/json"})
    assert "signature_base" not in await resp.json()  # nothing signed, nothing computed
