"""`safeguard audit verify` against intake's real PostgreSQL audit chain: each kind of
tampering done directly in the database (edit, delete, reorder, insert, truncate, a
consistent rewrite, a forged checkpoint, a consistent rewrite with the checkpoints
deleted) fails the command and names the first bad entry; each case starts from the
untouched rows, which pass again at the end. One app for every case."""
from __future__ import annotations

import asyncio
import re

import sqlalchemy as sa
from nacl.signing import SigningKey

from safeguard import cli
from services.intake.adapters import tables
from services.intake.bootstrap import checkpoint_now
from shared.audit import _checkpoint_message, canonical, chain_hash
from shared.crypto import b64e, sign
from shared.runtime import RUNTIME
from tests.factories import referral

AUDIT, HEAD, CPS = tables.audit, tables.audit_head, tables.audit_checkpoints
COLS = [c for c in AUDIT.c.keys() if c != "seq"]


async def snapshot(conn) -> dict:
    return {t: [dict(r._mapping) for r in (await conn.execute(sa.select(t))).all()] for t in (AUDIT, HEAD, CPS)}


async def restore(conn, snap: dict) -> None:
    for t, rows in snap.items():
        await conn.execute(sa.delete(t))
        await conn.execute(sa.insert(t), rows)


async def edit(conn, rows):
    await conn.execute(sa.update(AUDIT).where(AUDIT.c.seq == 2).values(detail={"via": "forged"}))


async def delete(conn, rows):
    await conn.execute(sa.delete(AUDIT).where(AUDIT.c.seq == 3))


async def reorder(conn, rows):
    r2, r3 = rows[1], rows[2]
    await conn.execute(sa.update(AUDIT).where(AUDIT.c.seq == 2).values({k: getattr(r3, k) for k in COLS}))
    await conn.execute(sa.update(AUDIT).where(AUDIT.c.seq == 3).values({k: getattr(r2, k) for k in COLS}))


async def insert(conn, rows):
    await conn.execute(sa.update(AUDIT).where(AUDIT.c.seq >= 4).values(seq=AUDIT.c.seq + 1000))
    await conn.execute(sa.update(AUDIT).where(AUDIT.c.seq >= 1004).values(seq=AUDIT.c.seq - 999))
    await conn.execute(sa.insert(AUDIT).values(seq=4, at=rows[3].at, actor="dev-social-care", action="referral.read",
                                               outcome="ok", prev_hash=rows[2].hash, hash=rows[3].hash))


async def truncate(conn, rows):
    await conn.execute(sa.delete(AUDIT).where(AUDIT.c.seq >= 5))


async def _rewrite(conn, rows) -> str:
    """Edit entry 2 and recompute every later hash and the head: only a signature can tell."""
    prev = rows[0].hash
    for r in rows[1:]:
        actor = "someone-else" if r.seq == 2 else r.actor
        h = chain_hash(prev, canonical(r.seq, r.at, actor, r.action, r.reference, r.outcome, r.detail))
        await conn.execute(sa.update(AUDIT).where(AUDIT.c.seq == r.seq).values(actor=actor, prev_hash=prev, hash=h))
        prev = h
    await conn.execute(sa.update(HEAD).values(seq=rows[-1].seq, hash=prev))
    return prev


async def rewrite(conn, rows):
    await _rewrite(conn, rows)


async def forge_checkpoint(conn, rows):
    """Rewrite the chain, then re-sign its checkpoint with a key that is not intake's."""
    await _rewrite(conn, rows)
    cp = (await conn.execute(sa.select(CPS))).one()
    new = (await conn.execute(sa.select(AUDIT.c.hash).where(AUDIT.c.seq == cp.seq))).scalar_one()
    sig = b64e(sign(SigningKey.generate(), _checkpoint_message(AUDIT, cp.seq, new)))
    await conn.execute(sa.update(CPS).values(hash=new, signature=sig))


async def delete_checkpoints(conn, rows):
    """Issue 18 #2: rewrite the chain consistently, then delete the signed checkpoints it no
    longer matches. Only the copy outside intake's tables (the checkpoint stream) can tell."""
    await _rewrite(conn, rows)
    await conn.execute(sa.delete(CPS))


CHECKPOINT_AT = 3
CASES = [  # (name, how, first bad entry, words of the problem)
    ("edit a row's detail", edit, 2, "entry 2 was altered"),
    ("delete a row", delete, 3, "entry 3 missing"),
    ("swap two rows", reorder, 2, "entry 2 does not follow entry 1"),
    ("insert a row", insert, 4, "entry 4 was altered"),
    ("delete the newest rows", truncate, 5, "entries after 4 were removed"),
    ("rewrite the chain consistently", rewrite, CHECKPOINT_AT, "differs from its signed checkpoint"),
    ("forge the checkpoint", forge_checkpoint, CHECKPOINT_AT, "has a bad signature"),
    ("rewrite the chain consistently and delete the checkpoints", delete_checkpoints, CHECKPOINT_AT,
     f"checkpoint {CHECKPOINT_AT} is in the external store but missing from the table"),
]


async def verify(capsys) -> tuple[int, str]:
    code = await asyncio.to_thread(cli.main, ["audit", "verify"])
    return code, next(line for line in capsys.readouterr().out.splitlines() if line.startswith("intake:"))


async def test_every_tampering_fails_audit_verify_at_the_first_bad_entry(intake, monkeypatch, capsys,
                                                                        reliability):
    for i in range(CHECKPOINT_AT):
        assert (await intake.submit(referral(client_reference=f"T{i}"))).status == 202
    assert await checkpoint_now(intake.app) == CHECKPOINT_AT
    await intake.app[RUNTIME].relay.drain()  # its copy is in the checkpoint stream now
    for i in range(3):
        assert (await intake.submit(referral(client_reference=f"U{i}"))).status == 202
    monkeypatch.setenv("SAFEGUARD_CONFIG", str(intake.settings.config_path))
    monkeypatch.setenv("SAFEGUARD_DATABASE_URL", intake.settings.database_url)
    monkeypatch.setenv("SAFEGUARD_AMQP_URL", intake.settings.amqp_url)
    assert await verify(capsys) == (0, "intake: ok (6 entries, 1 checkpoints)")
    async with intake.engine.connect() as conn:
        snap = await snapshot(conn)
        rows = (await conn.execute(sa.select(AUDIT).order_by(AUDIT.c.seq))).all()
    for name, how, first_bad, words in CASES:
        async with intake.engine.begin() as conn:
            await how(conn, rows)
        code, line = await verify(capsys)
        assert code == 1, name
        assert re.fullmatch(rf"intake: FAILED at entry {first_bad}: .*{re.escape(words)}.*", line), (name, line)
        async with intake.engine.begin() as conn:
            await restore(conn, snap)
        reliability.row("tamper", tampering=name, where="intake_audit (PostgreSQL)", detected="yes",
                        verify_says=line.removeprefix("intake: "))
        if how is delete_checkpoints:
            reliability.row("attacks", finding="#2", attack="edit an audit entry, recompute the chain so it is "
                            "self-consistent, delete the checkpoint table's rows (intake, PostgreSQL)",
                            before="`safeguard audit verify`: intake: ok", after=f"exit {code}: {line}")
    assert await verify(capsys) == (0, "intake: ok (6 entries, 1 checkpoints)")  # the restored rows pass again
