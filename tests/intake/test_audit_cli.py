"""`safeguard audit verify` passes on an untouched chain and names the first bad
entry after one audit row is edited in the database."""
from __future__ import annotations

import asyncio

import sqlalchemy as sa

from safeguard import cli
from services.intake.adapters import tables
from services.intake.bootstrap import checkpoint_now
from tests.factories import referral


async def test_audit_verify_detects_an_edited_entry(intake, monkeypatch, capsys):
    for i in range(3):
        assert (await intake.submit(referral(client_reference=f"R{i}"))).status == 202
    assert await checkpoint_now(intake.app) == 3
    monkeypatch.setenv("SAFEGUARD_CONFIG", str(intake.settings.config_path))
    monkeypatch.setenv("SAFEGUARD_DATABASE_URL", intake.settings.database_url)
    monkeypatch.setenv("SAFEGUARD_AMQP_URL", intake.settings.amqp_url)
    assert await asyncio.to_thread(cli.main, ["audit", "verify"]) == 0
    assert "intake: ok (3 entries, 1 checkpoints)" in capsys.readouterr().out
    async with intake.engine.begin() as conn:
        await conn.execute(sa.update(tables.audit).where(tables.audit.c.seq == 2).values(outcome="rejected"))
    assert await asyncio.to_thread(cli.main, ["audit", "verify"]) == 1
    assert "intake: FAILED at entry 2: entry 2 was altered" in capsys.readouterr().out
