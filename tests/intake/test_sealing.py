"""Content is sealed at the front door: only the recipient teams open it, the notifier
opens only the contacts, and a canary in every content field is nowhere in clear —
not in any database column, not on the bus, not in any log line."""
from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest
import sqlalchemy as sa
import structlog

from services.intake.adapters import tables
from services.intake.entrypoints.client import open_envelope
from shared.crypto import CryptoError, load_private_sealing_key, open_sealed
from shared.logging import configure
from tests.factories import canary_phone, new_canary, postcode_of, referral
from tests.intake.test_submit import bind_events, drain


@pytest.fixture
def log_stream():
    stream = io.StringIO()
    configure("intake", "json", level=logging.DEBUG, stream=stream)
    yield stream
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


async def sealed(intake, reference: str, client_id: str):
    return await intake.call("GET", f"/v1/referrals/{reference}/sealed", client_id)


async def test_recipient_teams_open_content_notifier_only_contacts(intake):
    doc = referral()
    reply = await (await intake.submit(doc)).json()
    ref, rid = reply["reference"], reply["referral_id"]
    for client_id, org in (("dev-social-care", "E99999999"), ("dev-prevent", "dev-force")):
        resp = await sealed(intake, ref, client_id)
        assert resp.status == 200
        envelopes = await resp.json()
        content = json.loads(open_envelope(envelopes["content_sealed"], rid, intake.team_key(org)))
        assert content["concerns"] == doc["content"]["concerns"]
        contacts = json.loads(open_envelope(envelopes["contacts_sealed"], rid, intake.team_key(org)))
        assert contacts["referrer"]["email"] == doc["contacts"]["referrer"]["email"]
    for client_id in ("other-social-care", "dev-mash", "dev-control-room", "dev-ops"):
        resp = await sealed(intake, ref, client_id)
        assert resp.status == 403, client_id
    notifier = load_private_sealing_key(intake.dir / "keys" / "notifier.x25519")
    contacts = json.loads(open_sealed(envelopes["contacts_sealed"], referral_id=rid, key_id="notifier-1",
                                      private_key=notifier))
    assert contacts["guardians"][0]["email"] == doc["contacts"]["guardians"][0]["email"]
    with pytest.raises(CryptoError):
        open_envelope(envelopes["content_sealed"], rid, notifier)
    reads = [r for r in await intake.audit_rows() if r.action == "referral.sealed_read"]
    assert [(r.actor, r.outcome) for r in reads] == [
        ("dev-social-care", "ok"), ("dev-prevent", "ok"), ("other-social-care", "rejected"),
        ("dev-mash", "rejected"), ("dev-control-room", "rejected"), ("dev-ops", "rejected")]
    # shredded content is gone for everyone (shredding itself comes later)
    async with intake.engine.begin() as conn:
        await conn.execute(sa.update(tables.referrals).values(shredded_at=sa.func.now()))
    assert (await sealed(intake, ref, "dev-social-care")).status == 410


def _as_text(value) -> str:
    if isinstance(value, memoryview):
        value = bytes(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


async def _dump_database(engine) -> str:
    """Every column of every row of every table, as text."""
    parts = []
    async with engine.connect() as conn:
        names = (await conn.execute(sa.text(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"))).scalars().all()
        for name in names:
            for row in (await conn.execute(sa.text(f'SELECT * FROM "{name}"'))).all():
                parts.extend(_as_text(value) for value in row)
    return "\n".join(parts)


async def test_a_canary_in_every_content_field_appears_nowhere_in_clear(intake, log_stream):
    canary, phone = new_canary(), canary_phone()
    secrets_ = (canary, phone, postcode_of(canary))
    conn, queue = await bind_events(intake.settings)
    try:
        reply = await (await intake.submit(referral(canary, phone))).json()
        ref = reply["reference"]
        assert (await intake.call("POST", f"/v1/referrals/{ref}/acknowledgement", "dev-social-care")).status == 200
        resp = await intake.call("POST", f"/v1/referrals/{ref}/decision", "dev-social-care",
                                 {"pathway": "section_17", "rationale": f"{canary} rationale"})
        assert resp.status == 200
        resp = await intake.call("POST", f"/v1/referrals/{ref}/checks", "dev-prevent",
                                 {"outcome": "not_suitable", "notes": f"{canary} notes"})
        assert resp.status == 200
        bad = referral(canary, phone)
        bad["content"]["subject"]["date_of_birth"] = canary  # refused: the value is never echoed
        resp = await intake.submit(bad)
        assert resp.status == 422 and canary not in await resp.text()
        assert (await intake.call("GET", f"/v1/referrals/{ref}", "dev-social-care")).status == 200
        messages = await drain(queue, 2.0)
        assert {m.routing_key for m in messages} >= {"referral.received", "referral.decided"}
    finally:
        await conn.close()
    for message in messages:
        wire = message.body.decode() + json.dumps(dict(message.headers or {}), default=str)
        assert not any(s in wire for s in secrets_), message.routing_key
    dump = await _dump_database(intake.engine)
    assert ref in dump and "referral.submit" in dump  # the dump really holds the rows
    assert not any(s in dump for s in secrets_)
    await asyncio.sleep(0.1)
    logs = log_stream.getvalue()
    assert ref in logs  # the log really was captured
    assert not any(s in logs for s in secrets_)
