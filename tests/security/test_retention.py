"""`safeguard retention run` on the real PostgreSQL: a referral closed longer ago than
`retention_days` is crypto-shredded (no key opens any of its envelopes, /sealed
answers 410), its metadata and the reporting counts stay, the destruction is audited,
and its sent outbox rows (their payload purged when sent) go; younger and open ones are kept."""
from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from safeguard import cli
from services.intake.adapters import tables
from services.intake.bootstrap import create_app
from shared.config import load_settings
from shared.crypto import CryptoError, envelope_key_ids, load_private_sealing_key, open_sealed
from tests.factories import new_canary, referral
from tests.intake.conftest import Intake

DAYS = 30
ENVELOPES = tables.SEALED_COLUMNS


async def new_referral(intake: Intake, doc: dict, *, close_days_ago: int | None) -> tuple[str, str]:
    reply = await (await intake.submit(doc)).json()
    ref, rid = reply["reference"], reply["referral_id"]
    assert (await intake.call("POST", f"/v1/referrals/{ref}/acknowledgement", "dev-social-care")).status == 200
    resp = await intake.call("POST", f"/v1/referrals/{ref}/decision", "dev-social-care",
                             {"pathway": "no_further_action", "rationale": doc["content"]["concerns"]})
    assert resp.status == 200
    resp = await intake.call("POST", f"/v1/referrals/{ref}/strategy-discussion", "dev-social-care", {
        "held_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(), "agencies": ["local_authority", "police"],
        "legal_advice_sought": False, "decision": "no_immediate_action", "parents_informed": False,
        "notes": doc["content"]["concerns"]})
    assert resp.status == 200
    if close_days_ago is not None:
        for client in ("dev-social-care", "dev-prevent"):  # a referral is closed when both tracks are
            assert (await intake.call("POST", f"/v1/referrals/{ref}/close", client)).status == 200
        async with intake.engine.begin() as conn:  # closed that long ago
            await conn.execute(sa.update(tables.referrals).where(tables.referrals.c.id == rid).values(
                closed_at=datetime.now(UTC) - timedelta(days=close_days_ago, minutes=5)))
    return ref, rid


async def last_outbox_id(intake: Intake) -> int:
    async with intake.engine.connect() as conn:
        return int(await conn.scalar(sa.select(sa.func.coalesce(sa.func.max(tables.outbox.c.id), 0))))


async def outbox_rows(intake: Intake, after: int, upto: int, *, backdate: bool = False) -> int:
    """Outbox rows with ids in (after, upto]: one referral's messages (optionally, once the relay
    has published them all, mark them sent long ago). A sent row's body is purged already
    (issue 18 #3), so its id, not its payload, says whose it was."""
    async with asyncio.timeout(10):
        while True:
            async with intake.engine.begin() as conn:
                t = tables.outbox.c
                rows = (await conn.execute(sa.select(t.id, t.body, t.sent_at).where(t.id > after, t.id <= upto))).all()
                if not backdate:
                    return len(rows)
                if rows and all(r.sent_at for r in rows):  # the relay has published them all
                    assert all(r.body == b"" for r in rows)  # …and kept no payload
                    await conn.execute(sa.update(tables.outbox).where(t.id > after, t.id <= upto)
                                       .values(sent_at=datetime.now(UTC) - timedelta(days=DAYS + 1)))
                    return len(rows)
            await asyncio.sleep(0.1)


async def retention_run(capsys) -> tuple[int, str]:
    code = await asyncio.to_thread(cli.main, ["retention", "run"])
    return code, capsys.readouterr().out


async def test_retention_shreds_only_what_is_past_its_period(intake_settings, aiohttp_client, tmp_path, monkeypatch,
                                                             capsys, reliability):
    config = intake_settings.config_path
    config.write_text(config.read_text().replace("[system]\n", f"[system]\nretention_days = {DAYS}\n", 1))
    env = {"SAFEGUARD_CONFIG": str(config), "SAFEGUARD_DATABASE_URL": intake_settings.database_url,
           "SAFEGUARD_AMQP_URL": intake_settings.amqp_url, "SAFEGUARD_DATA_DIR": str(tmp_path)}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = load_settings(env)
    assert settings.file.system.retention_days == DAYS
    intake = Intake(await aiohttp_client(create_app(settings)), settings, tmp_path)
    canary = new_canary()
    first = await last_outbox_id(intake)
    old, old_id = await new_referral(intake, referral(canary), close_days_ago=DAYS + 1)
    last = await last_outbox_id(intake)
    young, _ = await new_referral(intake, referral(canary), close_days_ago=DAYS - 1)
    still_open, _ = await new_referral(intake, referral(canary), close_days_ago=None)
    copies = await outbox_rows(intake, first, last, backdate=True)
    assert copies >= 3  # received, acknowledged, decided, strategy discussion recorded, closed
    stats_before = await (await intake.call("GET", "/v1/stats", "dev-ops")).json()

    code, out = await retention_run(capsys)
    assert code == 0
    assert f"intake: 1 referrals closed over {DAYS} days ago shredded" in out
    assert f"intake: {copies} sent outbox messages purged" in out
    assert await outbox_rows(intake, first, last) == 0

    resp = await intake.call("GET", f"/v1/referrals/{old}/sealed", "dev-social-care")
    gone = await resp.text()
    assert (resp.status, resp.content_type) == (410, "application/problem+json")
    assert json.loads(gone)["status"] == 410 and canary not in gone
    summary = await (await intake.call("GET", f"/v1/referrals/{old}", "dev-social-care")).json()
    assert (summary["status"], summary["pathway"], summary["shredded"]) == ("closed", "no_further_action", True)
    assert await (await intake.call("GET", "/v1/stats", "dev-ops")).json() == stats_before
    async with intake.engine.connect() as conn:
        row = (await conn.execute(sa.select(tables.referrals).where(tables.referrals.c.id == old_id))).one()
    keys = [(kid, intake.team_key(org)) for kid, org in (("E99999999-1", "E99999999"), ("dev-force-1", "dev-force"))]
    keys.append(("notifier-1", load_private_sealing_key(tmp_path / "keys" / "notifier.x25519")))
    shredded = [getattr(row, c) for c in ENVELOPES if getattr(row, c) is not None]
    assert len(shredded) == 4 and all(envelope_key_ids(e) == [] for e in shredded)
    for envelope in shredded:
        for kid, key in keys:
            try:
                open_sealed(envelope, referral_id=old_id, key_id=kid, private_key=key)
                raise AssertionError(f"{kid} still opens a shredded envelope")
            except CryptoError:
                pass
    for ref in (young, still_open):
        assert (await intake.call("GET", f"/v1/referrals/{ref}/sealed", "dev-social-care")).status == 200
    audit = [r for r in await intake.audit_rows() if r.action == "referral.shredded"]
    assert [(r.reference, r.actor, r.detail["retention_days"], r.detail["envelopes"]) for r in audit] == [
        (old, "safeguard-retention", DAYS, 4)]
    audit_rows = await intake.audit_rows()
    assert canary not in out + gone + json.dumps([list(r) for r in audit_rows], default=str)

    code, again = await retention_run(capsys)
    assert code == 0 and "intake: 0 referrals" in again  # idempotent
    assert await asyncio.to_thread(cli.main, ["audit", "verify"]) == 0
    for check, result in (
            (f"closed {DAYS + 1} days ago (retention_days = {DAYS})", "shredded: 4 envelopes, 0 key copies left"),
            ("keys that open a shredded envelope (LA, force, notifier)", f"0 of {len(keys)}"),
            ("`GET …/sealed` of the shredded referral", "410 problem+json"),
            (f"closed {DAYS - 1} days ago / still open", "kept, 200"),
            ("status, pathway, `GET /v1/stats` after the run", "unchanged"),
            ("its sent outbox rows (payload already purged when sent)", f"{copies} deleted"),
            ("audit entries `referral.shredded`; second run; `audit verify`", "1; 0 shredded; ok")):
        reliability.row("retention", check=check, result=result)
    reliability.row("leaks", check="retention: CLI output, 410 reply, every audit row",
                    inspected=f"1 output, 1 reply, {len(audit_rows)} audit rows", canary_found=0)
