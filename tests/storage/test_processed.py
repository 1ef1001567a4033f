"""Idempotent consumers: processed ids, committed with the effect."""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.intake.adapters.tables import outbox, processed
from shared.storage import OutgoingMessage, claim, create_engine, enqueue, process_once, upgrade

from .conftest import T0


async def test_claim_is_true_once_per_consumer(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        assert await claim(conn, processed, "escalation.clocks", "m-1", T0) is True
        assert await claim(conn, processed, "escalation.clocks", "m-1", T0) is False
        assert await claim(conn, processed, "notifier.email", "m-1", T0) is True
    async with engine.begin() as conn:  # and it stays claimed after commit
        assert await claim(conn, processed, "escalation.clocks", "m-1", T0) is False
        assert await claim(conn, processed, "escalation.clocks", "m-2", T0) is True


class Effect:
    """fn for process_once: enqueues one outgoing message per run, counts its runs."""

    def __init__(self, fail: bool = False, delay: float = 0.0) -> None:
        self.runs, self.fail, self.delay = 0, fail, delay

    async def __call__(self, conn: AsyncConnection) -> str:
        self.runs += 1
        await enqueue(conn, outbox, OutgoingMessage("ex", "rk", b"{}", f"out-{self.runs}"), T0)
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("effect failed")
        return f"done-{self.runs}"


async def counts(engine: AsyncEngine) -> tuple[int, int]:
    async with engine.connect() as conn:
        n_out = (await conn.execute(select(func.count()).select_from(outbox))).scalar()
        n_done = (await conn.execute(select(func.count()).select_from(processed))).scalar()
    return n_out, n_done


async def test_process_once_runs_the_effect_once(engine: AsyncEngine) -> None:
    effect = Effect()
    assert await process_once(engine, processed, "c", "m-1", effect, T0) == (True, "done-1")
    assert await process_once(engine, processed, "c", "m-1", effect, T0) == (False, None)
    assert effect.runs == 1
    assert await counts(engine) == (1, 1)
    assert await process_once(engine, processed, "other", "m-1", effect, T0) == (True, "done-2")


async def test_a_failed_effect_undoes_the_claim_so_a_retry_runs_it(engine: AsyncEngine) -> None:
    failing = Effect(fail=True)
    with pytest.raises(RuntimeError, match="effect failed"):
        await process_once(engine, processed, "c", "m-1", failing, T0)
    assert await counts(engine) == (0, 0)  # neither the claim nor the effect's writes stay
    retry = Effect()
    assert await process_once(engine, processed, "c", "m-1", retry, T0) == (True, "done-1")
    assert await counts(engine) == (1, 1)


async def test_concurrent_redeliveries_run_the_effect_exactly_once(db_url: str) -> None:
    """Two consumers (own engines) get the same message at once; one applies it."""
    engines = [create_engine(db_url) for _ in range(2)]
    try:
        await upgrade(engines[0], "intake")
        effect = Effect(delay=0.3)  # hold the transaction while the other one arrives
        results = await asyncio.gather(*(
            process_once(e, processed, "c", "m-1", effect, T0) for e in engines))
        assert sorted(results, key=lambda r: r[0]) == [(False, None), (True, "done-1")]
        assert effect.runs == 1
        assert await counts(engines[0]) == (1, 1)
    finally:
        for e in engines:
            await e.dispose()


async def test_concurrent_claim_waits_then_wins_if_the_first_rolls_back(pg_engine: AsyncEngine) -> None:
    async with pg_engine.connect() as first, pg_engine.connect() as second:
        await first.begin()
        await second.begin()
        assert await claim(first, processed, "c", "m-1", T0) is True
        pending = asyncio.create_task(claim(second, processed, "c", "m-1", T0))
        await asyncio.sleep(0.2)
        assert not pending.done()  # blocked on the first transaction's key
        await first.rollback()
        assert await asyncio.wait_for(pending, timeout=5) is True
        await second.commit()
    assert await counts(pg_engine) == (0, 1)
