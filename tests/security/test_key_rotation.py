"""Key rotation on the real PostgreSQL: `safeguard keys rotate` adds a new team key and
new referrals seal to it while old ones still open with the old key; `safeguard keys
rewrap` (run with the old private key) re-seals the data keys without touching the
ciphertext; with the old private key destroyed every referral still opens."""
from __future__ import annotations

import asyncio
import json
import tomllib
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from safeguard import cli
from services.intake.adapters import tables
from services.intake.bootstrap import create_app
from shared.config import load_settings
from shared.crypto import CryptoError, envelope_key_ids, load_private_sealing_key, open_sealed
from tests.factories import new_canary, referral
from tests.intake.conftest import Intake

LA, OLD, NEW = "E99999999", "E99999999-1", "E99999999-2"
ENVELOPES = tables.SEALED_COLUMNS


async def run(*argv: str) -> int:
    return await asyncio.to_thread(cli.main, list(argv))


async def walk(intake: Intake, doc: dict, canary: str) -> tuple[str, str]:
    """Submit, decide with a rationale, record checks and a strategy discussion with notes: five envelopes."""
    reply = await (await intake.submit(doc)).json()
    ref = reply["reference"]
    for path, who, body in (("acknowledgement", "dev-social-care", None),
                            ("decision", "dev-social-care", {"pathway": "early_help", "rationale": f"{canary} why"}),
                            ("checks", "dev-prevent", {"outcome": "not_suitable", "notes": f"{canary} notes"}),
                            ("strategy-discussion", "dev-social-care", {
                                "held_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
                                "agencies": ["local_authority", "police"], "legal_advice_sought": False,
                                "decision": "no_immediate_action", "parents_informed": False,
                                "notes": f"{canary} strategy"})):
        assert (await intake.call("POST", f"/v1/referrals/{ref}/{path}", who, body)).status == 200
    return ref, reply["referral_id"]


async def envelopes(intake: Intake, ref: str) -> dict:
    async with intake.engine.connect() as conn:
        row = (await conn.execute(sa.select(tables.referrals).where(tables.referrals.c.reference == ref))).one()
    return {c: getattr(row, c) for c in ENVELOPES}


def opens(env: dict, rid: str, key_id: str, key) -> str | None:
    try:
        return open_sealed(env, referral_id=rid, key_id=key_id, private_key=key).decode()
    except CryptoError:
        return None


async def test_rotate_then_rewrap_keeps_every_referral_readable(intake, aiohttp_client, monkeypatch, capsys,
                                                                reliability):
    env = {"SAFEGUARD_CONFIG": str(intake.settings.config_path), "SAFEGUARD_DATABASE_URL": intake.settings.database_url,
           "SAFEGUARD_AMQP_URL": intake.settings.amqp_url, "SAFEGUARD_DATA_DIR": str(intake.dir)}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    canary = new_canary()
    old_ref, old_id = await walk(intake, referral(canary), canary)
    old_key = intake.team_key(LA)
    before = await envelopes(intake, old_ref)
    assert all(envelope_key_ids(e)[:1] == [OLD] for e in before.values())

    assert await run("keys", "rotate", "--org", LA) == 0
    keys = tomllib.loads(intake.settings.config_path.read_text())["local_authorities"][0]["sealing_keys"]
    assert [(k["key_id"], k.get("status", "active")) for k in keys] == [(OLD, "retired"), (NEW, "active")]
    new_key = load_private_sealing_key(intake.dir / "keys" / f"{NEW}.x25519")
    await intake.client.close()  # "restart intake" with the rotated config
    settings = load_settings(env)
    intake = Intake(await aiohttp_client(create_app(settings)), settings, intake.dir)
    new_ref, new_id = await walk(intake, referral(canary), canary)
    after = await envelopes(intake, new_ref)
    assert all(NEW in envelope_key_ids(e) and OLD not in envelope_key_ids(e) for e in after.values())
    new_content, old_content = after["content_sealed"], before["content_sealed"]
    assert opens(new_content, new_id, NEW, new_key) and not opens(new_content, new_id, OLD, old_key)
    assert opens(old_content, old_id, OLD, old_key) and not opens(old_content, old_id, NEW, new_key)
    assert await run("keys", "rewrap", "--org", LA, "--key-file", str(intake.dir / "keys" / "dev-force.x25519")) == 1
    capsys.readouterr()

    assert await run("keys", "rewrap", "--org", LA) == 0
    out = capsys.readouterr().out
    assert f"{LA}: 1 referrals rewrapped (5 envelopes) to {NEW}; 0 envelopes still name a retired key" in out
    (intake.dir / "keys" / f"{LA}.x25519").unlink()  # retire: the old private key is destroyed
    rewrapped = await envelopes(intake, old_ref)
    for col, envelope in rewrapped.items():
        assert OLD not in envelope_key_ids(envelope) and NEW in envelope_key_ids(envelope), col
        assert (envelope["nonce"], envelope["ciphertext"]) == (before[col]["nonce"], before[col]["ciphertext"]), col
    readable = 0
    for ref, rid in ((old_ref, old_id), (new_ref, new_id)):
        resp = await intake.call("GET", f"/v1/referrals/{ref}/sealed", "dev-social-care")
        reply = await resp.json()
        content = json.loads(opens(reply["content_sealed"], rid, NEW, new_key))
        assert content["concerns"].startswith(canary)
        found = await envelopes(intake, ref)
        assert all(opens(e, rid, NEW, new_key) for e in found.values())
        assert all(opens(e, rid, "dev-force-1", intake.team_key("dev-force")) for e in found.values())
        readable += 1
    assert await run("keys", "rewrap", "--org", LA) == 0  # nothing left to do
    assert "0 referrals rewrapped" in capsys.readouterr().out
    audit = [r for r in await intake.audit_rows() if r.action == "referral.rewrapped"]
    assert [(r.reference, r.detail) for r in audit] == [
        (old_ref, {"from": [OLD], "to": [NEW], "envelopes": 5, "upgraded": 0})]
    assert canary not in out + json.dumps([list(r) for r in await intake.audit_rows()], default=str)
    assert await run("audit", "verify") == 0
    for check, result in (
            ("`keys rotate`: config lists the old key as retired, the new one active", "yes"),
            ("new referral sealed to the new key only (and the force's key)", "yes"),
            ("old referral opens with the old key, not the new key, before rewrap", "yes"),
            ("`keys rewrap` with a key file that is not a retired team key", "refused, nothing changed"),
            ("`keys rewrap`: referrals / envelopes re-sealed", "1 / 5"),
            ("nonce and ciphertext unchanged by rewrap (content never decrypted)", "5 of 5 envelopes"),
            ("referrals readable with the new key after the old private key was deleted", f"{readable} of 2"),
            ("audit entries `referral.rewrapped` (key ids only); `audit verify`", "1; ok")):
        reliability.row("keys", check=check, result=result)


async def test_rewrap_upgrades_version_1_envelopes_and_refuses_moved_ones(intake, monkeypatch, capsys, reliability):
    """Envelopes sealed before issue 18 #10 (version 1: associated data "{referral_id}|{key_version}")
    keep opening and `keys rewrap` upgrades them to version 2, bound to the row's reference and
    the column's section; a version 2 envelope moved to another column is left and reported."""
    from tests.unit.test_envelope_binding import seal_v1

    for k, v in {"SAFEGUARD_CONFIG": str(intake.settings.config_path), "SAFEGUARD_DATA_DIR": str(intake.dir),
                 "SAFEGUARD_DATABASE_URL": intake.settings.database_url,
                 "SAFEGUARD_AMQP_URL": intake.settings.amqp_url}.items():
        monkeypatch.setenv(k, v)
    canary = new_canary()
    (ref, rid), (moved_ref, _) = [await walk(intake, referral(canary), canary) for _ in range(2)]
    la, force = intake.team_key(LA), intake.team_key("dev-force")
    notifier = load_private_sealing_key(intake.dir / "keys" / "notifier.x25519")
    pubs = {OLD: la.public_key, "dev-force-1": force.public_key, "notifier-1": notifier.public_key}
    v2 = await envelopes(intake, ref)
    v1 = {c: seal_v1(open_sealed(e, referral_id=rid, key_id=OLD, private_key=la), rid,
                     {k: pubs[k] for k in envelope_key_ids(e)}) for c, e in v2.items()}
    moved = await envelopes(intake, moved_ref)
    r = tables.referrals
    async with intake.engine.begin() as conn:
        await conn.execute(sa.update(r).where(r.c.reference == ref).values(v1))  # as stored before the fix
        await conn.execute(sa.update(r).where(r.c.reference == moved_ref).values(
            rationale_sealed=moved["checks_notes_sealed"], checks_notes_sealed=moved["rationale_sealed"]))
    assert all(opens(e, rid, OLD, la) for e in v1.values())  # version 1 still opens

    assert await run("keys", "rotate", "--org", LA) == 0
    assert await run("keys", "rewrap", "--org", LA) == 1  # two envelopes refused: they still name OLD
    out, err = capsys.readouterr()
    assert f"{LA}: 2 referrals rewrapped (8 envelopes) to {NEW}; 2 envelopes still name a retired key" in out
    assert f"refused (failed authentication, or sealed for another referral or section): {moved_ref} rationale" in err
    assert f"{moved_ref} checks_notes" in err
    new_key = load_private_sealing_key(intake.dir / "keys" / f"{NEW}.x25519")
    upgraded = await envelopes(intake, ref)
    for col, env in upgraded.items():
        section = tables.section_of(col)
        assert (env["v"], env["reference"], env["section"]) == (2, ref, section), col
        assert env["ciphertext"] != v1[col]["ciphertext"], col
        for key_id, key in ((NEW, new_key), ("dev-force-1", force)):  # the force's entry: untouched, still opens
            assert open_sealed(env, referral_id=rid, key_id=key_id, private_key=key, reference=ref, section=section)
        with pytest.raises(CryptoError, match="not 'x'"):
            open_sealed(env, referral_id=rid, key_id=NEW, private_key=new_key, reference=ref, section="x")
    assert open_sealed(upgraded["contacts_sealed"], referral_id=rid, key_id="notifier-1", private_key=notifier,
                       reference=ref, section="contacts")
    audit = {r.reference: r.detail for r in await intake.audit_rows() if r.action == "referral.rewrapped"}
    assert audit[ref]["upgraded"] == 5 and audit[moved_ref] == {"from": [OLD], "to": [NEW], "envelopes": 3,
                                                               "upgraded": 0}
    assert canary not in out + err
    for check, result in (("version 1 envelopes (sealed before issue 18 #10) upgraded to version 2 by rewrap",
                           "5 of 5; every team and the notifier still open them"),
                          ("version 2 envelopes moved to another column, at rewrap", "2 refused, reported, left")):
        reliability.row("keys", check=check, result=result)
