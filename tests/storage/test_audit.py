"""The audit chain: appends verify; every edit, deletion, insertion, reorder,
truncation or forged checkpoint is caught and the first bad entry named."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from nacl.signing import SigningKey

from services.intake.adapters.tables import audit, audit_checkpoints, audit_head
from shared.audit import batched, checkpoint, record, verify_chain
from shared.clock import LONDON
from shared.crypto import b64e
from shared.storage import create_engine
from shared.storage.migrate import upgrade

KEY = SigningKey.generate()
T0 = datetime(2026, 11, 2, 14, 0, tzinfo=UTC)


@pytest.fixture
async def engine(db_url):
    engine = create_engine(db_url)
    await upgrade(engine, "intake")
    yield engine
    await engine.dispose()


async def append(engine, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        async with engine.begin() as c:
            await record(c, audit, actor="dev-mash", action="referral.accepted", reference=f"PRV-2026-{i:06d}",
                         detail={"client": "dev-mash", "n": i}, at=T0 + timedelta(minutes=i))


async def verdict(engine, key=KEY):
    async with engine.connect() as c:
        return await verify_chain(c, audit, audit_checkpoints, key.verify_key)


async def sign_head(engine, key=KEY):
    async with engine.begin() as c:
        return await checkpoint(c, audit, audit_checkpoints, signing_key=key, signer="intake", at=T0)


async def test_an_untouched_chain_verifies_with_checkpoints(engine):
    await append(engine, 10)
    assert await sign_head(engine) == 10
    assert await sign_head(engine) is None  # nothing new to sign
    await append(engine, 5, start=10)
    assert await sign_head(engine) == 15
    v = await verdict(engine)
    assert (v.ok, v.entries, v.checkpoints, v.first_bad) == (True, 15, 2, None)


async def test_local_time_is_hashed_as_stored(engine):
    async with engine.begin() as c:
        await record(c, audit, actor="a", action="x", at=datetime(2026, 7, 1, 10, tzinfo=LONDON))
    assert (await verdict(engine)).ok


async def test_a_rolled_back_change_leaves_no_entry(engine):
    await append(engine, 2)
    with pytest.raises(RuntimeError):
        async with engine.begin() as c:
            await record(c, audit, actor="a", action="x", at=T0)
            raise RuntimeError
    await append(engine, 1, start=2)
    v = await verdict(engine)
    assert (v.ok, v.entries) == (True, 3)


async def exec_sql(engine, *stmts):
    async with engine.begin() as c:
        for s in stmts:
            await c.execute(s)


@pytest.mark.parametrize(
    ("tamper", "first_bad", "words"),
    [
        (lambda: [sa.update(audit).where(audit.c.seq == 4).values(outcome="rejected")], 4, "altered"),
        (lambda: [sa.update(audit).where(audit.c.seq == 5).values(detail={"client": "someone-else", "n": 4})], 5, "altered"),
        (lambda: [sa.delete(audit).where(audit.c.seq == 3)], 3, "missing"),
        (lambda: [sa.delete(audit).where(audit.c.seq >= 7)], 7, "removed"),
        # insertion: shift the tail up and put a forged entry in the gap
        (lambda: [sa.update(audit).where(audit.c.seq > 5).values(seq=audit.c.seq + 100),
                  sa.insert(audit).values(seq=6, at=T0, actor="x", action="forged", outcome="ok",
                                          prev_hash="0" * 64, hash="0" * 64)], 6, "follow"),
    ],
    ids=["edit-outcome", "edit-detail", "delete-middle", "truncate-tail", "insert"],
)
async def test_tampering_is_detected_and_named(engine, tamper, first_bad, words):
    await append(engine, 8)
    await exec_sql(engine, *tamper())
    v = await verdict(engine)
    assert not v.ok
    assert v.first_bad == first_bad
    assert words in v.problem


async def test_reordering_two_entries_is_detected(engine):
    await append(engine, 6)
    async with engine.connect() as c:
        r2, r3 = (await c.execute(sa.select(audit).where(audit.c.seq.in_([2, 3])).order_by(audit.c.seq))).all()
    cols = [c for c in audit.c.keys() if c != "seq"]
    await exec_sql(
        engine,
        sa.update(audit).where(audit.c.seq == 2).values({k: getattr(r3, k) for k in cols}),
        sa.update(audit).where(audit.c.seq == 3).values({k: getattr(r2, k) for k in cols}),
    )
    v = await verdict(engine)
    assert (v.ok, v.first_bad) == (False, 2)


async def test_truncating_head_and_tail_together_is_caught_by_the_checkpoint(engine):
    await append(engine, 6)
    await sign_head(engine)
    async with engine.connect() as c:
        h4 = (await c.execute(sa.select(audit.c.hash).where(audit.c.seq == 4))).scalar_one()
    await exec_sql(engine, sa.delete(audit).where(audit.c.seq > 4), sa.update(audit_head).values(seq=4, hash=h4))
    v = await verdict(engine)
    assert (v.ok, v.first_bad) == (False, 5)
    assert "removed" in v.problem


async def test_a_forged_checkpoint_is_detected(engine):
    await append(engine, 3)
    await sign_head(engine)
    forger = SigningKey.generate()
    await exec_sql(engine, sa.update(audit_checkpoints).values(signature=b64e(forger.sign(b"x").signature)))
    v = await verdict(engine)
    assert (v.ok, v.first_bad) == (False, 3)
    assert "bad signature" in v.problem


async def test_a_checkpoint_signed_by_another_key_does_not_verify(engine):
    await append(engine, 3)
    await sign_head(engine, key=SigningKey.generate())
    assert not (await verdict(engine)).ok


@pytest.mark.database
async def test_concurrent_appenders_on_postgres_make_one_gapless_chain(pg_url):
    engines = [create_engine(pg_url) for _ in range(4)]
    try:
        await upgrade(engines[0], "intake")
        await asyncio.gather(*(append(e, 25, start=i * 25) for i, e in enumerate(engines)))
        v = await verdict(engines[0])
        assert (v.ok, v.entries) == (True, 100)
    finally:
        for e in engines:
            await e.dispose()


async def test_a_batch_writes_its_entries_together_and_the_chain_still_verifies(engine):
    await append(engine, 2)
    async with engine.begin() as c, batched(c, audit):
        seqs = [await record(c, audit, actor="escalation", action="deadline.reminder", reference=f"PRV-2026-{i:06d}",
                             detail={"i": i}, at=T0 + timedelta(hours=1, minutes=i)) for i in range(5)]
        # not yet inserted, even as seen from inside the same transaction: written when the batch ends
        assert await c.scalar(sa.select(sa.func.count()).select_from(audit)) == 2
    assert seqs == [None] * 5
    async with engine.connect() as c:
        rows = (await c.execute(sa.select(audit.c.seq, audit.c.detail).where(audit.c.seq > 2)
                                .order_by(audit.c.seq))).all()
    assert [(r.seq, r.detail) for r in rows] == [(3 + i, {"i": i}) for i in range(5)]  # in call order
    await append(engine, 2, start=10)  # a plain record after the batch follows its head
    with pytest.raises(RuntimeError):
        async with engine.begin() as c, batched(c, audit):
            await record(c, audit, actor="escalation", action="x", at=T0)
            raise RuntimeError("handler failed")
    async with engine.connect() as c:
        assert (await c.execute(sa.select(audit.c.seq).order_by(audit.c.seq))).scalars().all() == list(range(1, 10))
    await sign_head(engine)
    v = await verdict(engine)
    assert (v.ok, v.entries) == (True, 9)
