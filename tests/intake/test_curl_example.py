"""docs/integration/examples/post-referral.sh — curl and openssl only — reproduces the HTTP test
vector byte for byte, and signs and posts a referral that a real intake accepts (202); signed
with another client's key it gets the 401 that says why."""
from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "integration" / "examples" / "post-referral.sh"
VECTOR = json.loads((ROOT / "docs" / "integration" / "vectors" / "http-signature.json").read_text())


async def sh(*args: str, **env: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "bash", str(SCRIPT), *args, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode, out.decode()


async def test_the_script_reproduces_the_vector(tmp_path):
    (vector,) = [v for v in VECTOR["vectors"] if v["name"] == "post-referral"]
    (tmp_path / "key").write_text(VECTOR["key"]["seed_base64"] + "\n")
    (tmp_path / "body.json").write_bytes(vector["body"].encode())
    code, out = await sh(f"https://{vector['authority']}", vector["keyid"], str(tmp_path / "key"),
                         str(tmp_path / "body.json"), DRY_RUN="1", SIG_CREATED=str(vector["created"]),
                         SIG_NONCE=vector["nonce"])
    expected = vector["expected"]
    assert code == 0, out
    assert out == (f"Content-Digest: {expected['content_digest']}\nSignature-Input: {expected['signature_input']}\n"
                   f"Signature: {expected['signature']}\n\n{expected['signature_base']}\n")


async def test_the_script_posts_a_referral_that_intake_accepts(intake, tmp_path):
    url = str(intake.client.make_url("/")).rstrip("/")
    code, out = await sh(url, "dev-mash", str(tmp_path / "keys" / "dev-mash.ed25519"), str(ROOT / "examples" /
                                                                                            "referral.json"))
    assert code == 0 and out.rstrip().endswith("HTTP 202"), out
    reply = json.loads(out.splitlines()[0])
    assert reply["status"] == "received"
    status = await intake.call("GET", f"/v1/referrals/{reply['reference']}", "dev-social-care")
    assert status.status == 200

    code, out = await sh(url, "dev-mash", str(tmp_path / "keys" / "dev-prevent.ed25519"),
                         str(ROOT / "examples" / "referral.json"))
    problem = json.loads(out.splitlines()[0])
    assert code != 0 and out.rstrip().endswith("HTTP 401")
    assert problem["reason"] == "bad_signature" and problem["detail"].startswith("Bad signature")
