"""Key rotation on the real PostgreSQL: `safeguard keys rotate` adds a new team key and
new referrals seal to it while old ones still open with the old key; `safeguard keys
rewrap` (run with the old private key) re-seals the data keys without touching the
ciphertext; with the old private key destroyed every referral still opens."""
from __future__ import annotations

import asyncio
import json
import tomllib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from safeguard import cli
from safeguard.rewrap_stores import envelopes_in
from services.escalation import handlers as esc_handlers
from services.escalation.adapters import tables as esc_tables
from services.escalation.context import Context
from services.intake.adapters import tables
from services.intake.bootstrap import create_app
from shared import bus
from shared.clock import ManualClock
from shared.config import load_settings
from shared.crypto import (
    CryptoError, envelope_key_ids, load_private_sealing_key, load_signing_key, open_sealed, rewrap,
)
from shared.messages import ReferralReceived
from shared.relay import OutboxRelay
from shared.storage.migrate import upgrade
from tests.factories import new_canary, referral
from tests.intake.conftest import Intake
from tests.intake.test_submit import bind_events
from tests.intake.test_trace import published

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


# --- issue 18 #3: no copy under the retired key anywhere -------------------------------------

TEXT_TYPES = (sa.String, sa.Text, sa.JSON, sa.LargeBinary)


def _json(value: Any) -> Any:
    if isinstance(value, (bytes, memoryview)):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


async def sealed_under(engine, key_id: str, key) -> dict[str, tuple[int, int]]:
    """Every table's text, JSON and blob columns scanned for envelopes naming `key_id`:
    {table.column: (envelopes naming it, of which `key` recovers the data key)}."""
    async with engine.connect() as conn:
        meta = sa.MetaData()
        await conn.run_sync(meta.reflect)
        found: dict[str, tuple[int, int]] = {}
        for table in meta.sorted_tables:
            cols = [c for c in table.c if isinstance(c.type, TEXT_TYPES)]
            if not cols:
                continue
            for row in (await conn.execute(sa.select(*cols))).all():
                for col, value in zip(cols, row):
                    for env in envelopes_in(_json(value)):
                        if key_id not in envelope_key_ids(env):
                            continue
                        try:
                            rewrap(env, key_id=key_id, private_key=key, add={})  # opens the data key, or fails
                            opened = 1
                        except CryptoError:
                            opened = 0
                        named, n = found.get(f"{table.name}.{col.name}", (0, 0))
                        found[f"{table.name}.{col.name}"] = (named + 1, n + opened)
    return found


async def all_sent(engine, table: sa.Table) -> None:
    async with asyncio.timeout(10):
        while True:
            async with engine.connect() as conn:
                if not await conn.scalar(sa.select(sa.func.count()).select_from(table)
                                         .where(table.c.sent_at.is_(None))):
                    return
            await asyncio.sleep(0.05)


async def test_after_rotate_and_rewrap_the_retired_key_opens_nothing_in_any_table(intake, monkeypatch, capsys,
                                                                                   reliability):
    """A referral walked through intake (its relay running), escalation's real handlers on its
    `referral.received` (notifications carrying the sealed contacts, an alert whose outcome notes
    are sealed), then `keys rotate` + `keys rewrap`: every table of the database is scanned."""
    env = {"SAFEGUARD_CONFIG": str(intake.settings.config_path), "SAFEGUARD_DATABASE_URL": intake.settings.database_url,
           "SAFEGUARD_AMQP_URL": intake.settings.amqp_url, "SAFEGUARD_DATA_DIR": str(intake.dir)}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    canary = new_canary()
    bus_conn, queue = await bind_events(intake.settings)
    try:
        ref, rid = await walk(intake, referral(canary), canary)
        received = (await published(queue, {"referral.received": (ReferralReceived, ref)}))["referral.received"]
    finally:
        await bus_conn.close()
    for svc in ("escalation", "notifier"):
        await upgrade(intake.engine, svc)
    now = datetime.now(UTC)
    ctx = Context(intake.settings, ManualClock(now))
    async with intake.engine.begin() as conn:
        await esc_handlers.on_received(conn, received, ctx, now)
        row = (await conn.execute(sa.select(esc_tables.referrals).where(esc_tables.referrals.c.referral_id == rid))).one()
        alert_id = await esc_handlers.raise_alert(conn, ctx, row, "out_of_hours_concern", now)
        await esc_handlers.record_outcome(conn, ctx, alert_id, "welfare_check_completed", f"{canary} outcome",
                                          "dev-control-room", now)
    await all_sent(intake.engine, tables.outbox)  # intake's relay published (and purged) its events
    old_key = intake.team_key(LA)
    before = await sealed_under(intake.engine, OLD, old_key)
    assert before["intake_referrals.contacts_sealed"] == (1, 1) and before["escalation_alerts.outcome_notes_sealed"] == (1, 1)
    unsent = before["escalation_outbox.body"][0]  # escalation's relay is not running here
    assert unsent >= 1 and "intake_outbox.body" not in before  # sent: purged

    assert await run("keys", "rotate", "--org", LA) == 0
    capsys.readouterr()
    assert await run("keys", "rewrap", "--org", LA) == 1  # escalation's unsent notifications still hold copies
    first = capsys.readouterr().out
    assert "  intake referrals: 0 envelopes (5 rewrapped)" in first
    assert "  escalation alert outcome notes: 0 alerts (1 rewrapped)" in first
    assert "  intake outbox, sent (bodies purged when sent): 0 messages" in first
    line = next(x for x in first.splitlines() if x.startswith("  escalation outbox, unsent"))
    assert line.count("(notification.requested)") == unsent and f": {unsent} messages: " in line

    keys = intake.settings.file.services["escalation"]
    publisher_conn = await bus.connect(intake.settings.amqp_url, name="test-escalation-relay")
    publisher = bus.Publisher(publisher_conn, producer="escalation",
                              signing_key=load_signing_key(intake.settings.resolve_path(keys.signing_key_file)))
    try:
        await publisher.start()
        assert await OutboxRelay(intake.engine, esc_tables.outbox, publisher).drain() >= unsent
    finally:
        await publisher.close()
        await publisher_conn.close()
    assert await run("keys", "rewrap", "--org", LA) == 0
    second = capsys.readouterr().out
    stores = [x.strip() for x in second.splitlines() if x.startswith("  ")]
    assert len(stores) == 8 and all(": 0 " in s for s in stores), stores
    after = await sealed_under(intake.engine, OLD, old_key)
    assert after == {}, after
    new_key = load_private_sealing_key(intake.dir / "keys" / f"{NEW}.x25519")
    notes = (await sealed_under(intake.engine, NEW, new_key))["escalation_alerts.outcome_notes_sealed"]
    assert notes == (1, 1)
    audit = [r for r in await intake.audit_rows() if r.action == "referral.rewrapped"]
    assert len(audit) == 1
    assert canary not in first + second
    opened_before = sum(n for _, n in before.values())
    reliability.row("attacks", finding="#3", attack="after `keys rotate` + `keys rewrap`, scan every table's text, "
                    "JSON and blob columns for envelopes naming the retired key id and open them with the retired "
                    "private key",
                    before="sent outbox rows (referral.received, notification.requested) kept the sealed contacts "
                           "under the retired key, which still opened them; the control room's outcome notes were "
                           "never rewrapped",
                    after=f"before rotation the retired key opened {opened_before} envelopes in "
                          f"{len(before)} columns; sent outbox rows hold no body (purged in the UPDATE that marks "
                          f"them sent); rewrap re-sealed 5 referral envelopes and 1 alert's notes, named {unsent} "
                          f"unsent escalation outbox rows (exit 1); after the relay published them: 0 envelopes "
                          f"anywhere name the retired key, 0 open with it; rewrap reports 0 in all {len(stores)} stores")


async def test_rewrap_reaches_every_store_on_the_sqlite_default(tmp_path):
    """The embedded default (`make run`): one SQLite file per service. Escalation's real handlers
    store a referral's notifications (one carrying the sealed contacts) and an alert's sealed
    outcome notes; one outbox row is sent (its body purged), the other is not."""
    from safeguard import keys as dev_keys
    from safeguard import rewrap as rewrap_cmd
    from safeguard.rotation import rotate
    from shared.crypto import seal
    from shared.storage import claim_batch, create_engine, mark_sent
    from tests.factories import referral_received

    env = {"SAFEGUARD_CONFIG": str(dev_keys.init(tmp_path)), "SAFEGUARD_DATA_DIR": str(tmp_path)}
    settings = load_settings(env)
    now = datetime.now(UTC)
    ctx = Context(settings, ManualClock(now))
    contacts = seal(b'{"guardians": "x"}', referral_id="r-1", recipients=ctx.team_keys(LA, "dev-force"))
    ev = referral_received(now, referral_id="r-1", contacts_sealed=contacts)
    intake_engine = create_engine(settings.database_url_for("intake"))
    await upgrade(intake_engine, "intake")
    await intake_engine.dispose()
    engine = create_engine(settings.database_url_for("escalation"))
    try:
        await upgrade(engine, "escalation")
        async with engine.begin() as conn:
            await esc_handlers.on_received(conn, ev, ctx, now)
            row = (await conn.execute(sa.select(esc_tables.referrals))).one()
            alert_id = await esc_handlers.raise_alert(conn, ctx, row, "out_of_hours_concern", now)
            await esc_handlers.record_outcome(conn, ctx, alert_id, "no_action_needed", "notes", "dev-control-room", now)
        async with engine.begin() as conn:
            rows = [r for r in await claim_batch(conn, esc_tables.outbox, 100) if b"contacts_sealed\":{" in r.body]
            assert len(rows) == 1
            await mark_sent(conn, esc_tables.outbox, [r.id for r in await claim_batch(conn, esc_tables.outbox, 100)
                                                      if r.id != rows[0].id], now)
        before = await sealed_under(engine, OLD, load_private_sealing_key(tmp_path / "keys" / f"{LA}.x25519"))
        assert set(before) == {"escalation_alerts.outcome_notes_sealed", "escalation_outbox.body"}
        rotate(settings.config_path, LA)
        done = await rewrap_cmd.rewrap_org(load_settings(env), LA, [])
        counts = {s.store.split(" (")[0]: (s.rewrapped, s.remaining, s.named) for s in done.stores}
        assert counts["intake referrals"] == (0, 0, ())  # no referral in intake's file here
        assert not any(k.startswith("notifier") for k in counts)  # no notifier database yet: not a store
        assert counts["escalation alert outcome notes"] == (1, 0, ())
        assert counts["escalation outbox, sent"] == (0, 0, ())
        assert counts["escalation outbox, unsent"] == (0, 1, (f"{rows[0].message_id} (notification.requested)",))
        assert not done.clean
        async with engine.begin() as conn:
            await mark_sent(conn, esc_tables.outbox, [rows[0].id], now)
        done = await rewrap_cmd.rewrap_org(load_settings(env), LA, [])
        assert done.clean and await sealed_under(engine, OLD, load_private_sealing_key(
            tmp_path / "keys" / f"{LA}.x25519")) == {}
    finally:
        await engine.dispose()


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
