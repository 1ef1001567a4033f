"""`safeguard trace` reads one referral's audit entries from every service's database,
in time order, with no content: a referral submitted and acknowledged through intake's
real HTTP API, its `referral.received` event (from intake's outbox) consumed by
escalation's and the notifier's real handlers on the same PostgreSQL database."""
from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from safeguard import cli, trace
from services.escalation import handlers as esc_handlers
from services.escalation.context import Context
from services.intake.adapters import tables
from services.notifier.bootstrap import Notifier
from services.notifier.domain.retry import RetryPolicy
from shared.clock import ManualClock
from shared.messages import ReferralAcknowledged, ReferralReceived
from shared.storage.migrate import upgrade
from tests.factories import new_canary, referral
from tests.intake.test_submit import bind_events


async def published(queue, wanted: dict) -> dict:
    """The events the relay published, by routing key, for `wanted` {routing key: (class, reference)}
    (their outbox rows keep no body once sent, issue 18 #3: the bus is where they are)."""
    found: dict = {}
    async with asyncio.timeout(10):
        while len(found) < len(wanted):
            msg = await queue.get(fail=False)
            if msg is None:
                await asyncio.sleep(0.05)
                continue
            await msg.ack()
            if msg.routing_key in wanted:
                cls, ref = wanted[msg.routing_key]
                if (event := cls.from_bytes(msg.body)).reference == ref:
                    found[msg.routing_key] = event
    return found


async def _sent_rows(intake, keys: tuple[str, ...]) -> list:
    """Intake's outbox rows of `keys` once all are sent: metadata only."""
    async with asyncio.timeout(10):
        while True:
            async with intake.engine.connect() as conn:
                t = tables.outbox.c
                rows = (await conn.execute(sa.select(tables.outbox).where(t.routing_key.in_(keys)))).all()
            if rows and all(r.sent_at for r in rows):
                return rows
            await asyncio.sleep(0.05)


async def test_trace_follows_a_referral_across_the_services(intake, monkeypatch, capsys):
    canary = new_canary()
    bus_conn, queue = await bind_events(intake.settings)
    resp = await intake.submit(referral(canary=canary))
    assert resp.status == 202
    ref = (await resp.json())["reference"]
    assert (await intake.submit(referral(client_reference="OTHER-1"))).status == 202  # not in the trace
    ack = await intake.call("POST", f"/v1/referrals/{ref}/acknowledgement", "dev-social-care")
    assert ack.status == 200

    try:
        events = await published(queue, {"referral.received": (ReferralReceived, ref),
                                          "referral.acknowledged": (ReferralAcknowledged, ref)})
    finally:
        await bus_conn.close()
    received, acked = events["referral.received"], events["referral.acknowledged"]
    rows = await _sent_rows(intake, tuple(events))
    assert len(rows) == 3 and all(r.body == b"" and r.body_size > 0 and len(r.body_sha256) == 64 for r in rows)
    for svc in ("escalation", "notifier"):
        await upgrade(intake.engine, svc)
    clock = ManualClock(received.at + timedelta(seconds=2))
    ctx = Context(intake.settings, clock)
    async with intake.engine.begin() as conn:
        await esc_handlers.on_received(conn, received, ctx, clock())
    notifier = Notifier(intake.engine, intake.settings, None, {}, policy=RetryPolicy(), sealing_key=None,
                        sealing_key_id=None, clock=lambda: received.at + timedelta(seconds=3))
    await notifier.on_received(received)
    async with intake.engine.begin() as conn:
        await esc_handlers.on_acknowledged(conn, acked, ctx, clock.advance(timedelta(minutes=5)))

    out, err = io.StringIO(), io.StringIO()
    assert await trace.trace_command(intake.settings, ref, as_json=True, out=out, err=err) == 0
    doc = json.loads(out.getvalue())
    entries = doc["entries"]
    assert {e["service"] for e in entries} == {"intake", "escalation", "notifier"}
    steps = [(e["service"], e["action"]) for e in entries]
    assert steps[0] == ("intake", "referral.submit") and entries[0]["outcome"] == "accepted"
    assert steps.index(("escalation", "referral.received")) < steps.index(("notifier", "hold_recorded"))
    assert ("escalation", "notification.requested") in steps
    assert steps.index(("intake", "referral.acknowledgement")) < steps.index(("escalation", "clock.stopped"))
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)  # same offset: one day
    assert all(e["detail"].get("referral_id", received.referral_id) == received.referral_id for e in entries)
    assert canary not in out.getvalue() and "OTHER-1" not in out.getvalue()

    # the command as run from a shell: the settings come from the environment
    monkeypatch.setenv("SAFEGUARD_CONFIG", str(intake.settings.config_path))
    monkeypatch.setenv("SAFEGUARD_DATABASE_URL", intake.settings.database_url)
    capsys.readouterr()
    assert await asyncio.to_thread(cli.main, ["trace", ref]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].startswith("TIME (Europe/London)") and len(lines) == len(entries) + 1
    assert "received (sealed, event queued for publishing)" in lines[1] and "dev-mash" in lines[1]
    assert any("acknowledged" in line and "dev-social-care" in line for line in lines)
    assert any("notifier" in line and "holding instructions recorded" in line for line in lines)
    assert canary not in text


async def test_trace_of_an_unknown_reference_says_so(intake):
    out, err = io.StringIO(), io.StringIO()
    assert await trace.trace_command(intake.settings, "PRV-2026-999999", out=out, err=err) == 1
    assert out.getvalue() == ""
    assert "no audit entries for PRV-2026-999999" in err.getvalue()
    assert "escalation: no audit table" in err.getvalue()


async def test_trace_reads_each_services_own_sqlite_database(tmp_path):
    """The embedded default (`make run`): one SQLite file per service; notifier has none yet."""
    from safeguard import keys
    from services.escalation.adapters.tables import audit as esc_audit
    from shared.audit import record
    from shared.config import load_settings
    from shared.storage import create_engine

    settings = load_settings({"SAFEGUARD_CONFIG": str(keys.init(tmp_path)), "SAFEGUARD_DATA_DIR": str(tmp_path)})
    at = datetime(2026, 7, 1, 12, tzinfo=UTC)
    for svc, table, when in (("escalation", esc_audit, at + timedelta(seconds=1)), ("intake", tables.audit, at)):
        engine = create_engine(settings.database_url_for(svc))
        try:
            await upgrade(engine, svc)
            async with engine.begin() as conn:
                await record(conn, table, actor=svc, action="referral.received" if svc == "escalation"
                             else "referral.submit", reference="PRV-2026-000001", outcome="ok", at=when)
        finally:
            await engine.dispose()
    out, err = io.StringIO(), io.StringIO()
    assert await trace.trace_command(settings, "PRV-2026-000001", as_json=True, out=out, err=err) == 0
    doc = json.loads(out.getvalue())
    assert doc["services"] == {"intake": "1 entries", "escalation": "1 entries", "notifier": "no audit table"}
    assert [(e["service"], e["at"]) for e in doc["entries"]] == [
        ("intake", "2026-07-01T13:00:00+01:00"), ("escalation", "2026-07-01T13:00:01+01:00")]
