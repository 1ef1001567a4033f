"""Group commit (shared.storage.group): concurrent effects share a transaction, and each
caller still gets exactly its own all-or-nothing outcome, after the commit."""
from __future__ import annotations

import asyncio
import contextlib
import contextvars

import pytest
from nacl.signing import SigningKey
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.intake.adapters.tables import audit, audit_checkpoints, outbox, processed
from shared.audit import batched as audit_batched, record, verify_chain
from shared.storage import OutgoingMessage, create_engine, enqueue
from shared.storage.group import GroupCommit
from shared.storage.outbox import batched as outbox_batched

from tests.support.processes import free_port

from .conftest import T0

CALLER = contextvars.ContextVar("caller", default="none")


class Writes:
    """`around` for the group: the audit and outbox batches, counting the groups it opened."""

    def __init__(self) -> None:
        self.groups = self.open = self.most_open = 0

    @contextlib.asynccontextmanager
    async def __call__(self, conn: AsyncConnection):
        self.groups += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            async with audit_batched(conn, audit), outbox_batched(conn, outbox):
                yield
        finally:
            self.open -= 1


def effect(mid: str, *, fail: bool = False, delay: float = 0.0, seen: list | None = None):
    async def fn(conn: AsyncConnection) -> str:
        if seen is not None:
            seen.append((mid, CALLER.get()))
        CALLER.set("changed by " + mid)  # must not leak into anyone else's effect
        await enqueue(conn, outbox, OutgoingMessage("ex", "rk", b"{}", f"out-{mid}"), T0)
        await record(conn, audit, actor="test", action="applied", reference=mid, at=T0)
        await asyncio.sleep(delay)
        if fail:
            raise RuntimeError("effect failed")
        return f"done-{mid}"
    return fn


def splits(name: str) -> float:
    return REGISTRY.get_sample_value("safeguard_group_commit_split_total", {"group": name}) or 0.0


async def counts(engine: AsyncEngine) -> tuple[int, int, int]:
    async with engine.connect() as conn:
        return tuple([(await conn.execute(select(func.count()).select_from(t))).scalar() for t in
                      (outbox, processed, audit)])


async def test_concurrent_effects_share_transactions_and_each_commits_once(engine: AsyncEngine) -> None:
    writes = Writes()
    group = GroupCommit(engine, "test", around=writes, max_size=16)
    results = await asyncio.gather(*[
        group.run_once(processed, "c", f"m-{i}", effect(f"m-{i}", delay=0.002), T0) for i in range(40)])
    assert results == [(True, f"done-m-{i}") for i in range(40)]
    assert await counts(engine) == (40, 40, 40)
    assert 3 <= writes.groups < 40  # 40 callers at once: at least ceil(40/16) transactions, far fewer than 40
    key = SigningKey.generate()
    async with engine.connect() as conn:
        verdict = await verify_chain(conn, audit, audit_checkpoints, key.verify_key)
    assert (verdict.ok, verdict.entries) == (True, 40)  # the group's entries chained in one insert, in order
    again = await asyncio.gather(*[
        group.run_once(processed, "c", f"m-{i}", effect(f"m-{i}"), T0) for i in range(40)])
    assert again == [(False, None)] * 40  # redelivered: nothing runs twice
    assert await counts(engine) == (40, 40, 40)


async def test_one_failing_effect_does_not_take_its_group_with_it(engine: AsyncEngine) -> None:
    writes = Writes()
    group = GroupCommit(engine, "split-test", around=writes)
    before = splits("split-test")
    blocker = asyncio.create_task(group.run(effect("first", delay=0.05)))  # the rest queue behind it
    await asyncio.sleep(0.01)
    outcomes = await asyncio.gather(*[
        group.run_once(processed, "c", f"m-{i}", effect(f"m-{i}", fail=(i == 3)), T0) for i in range(8)],
        return_exceptions=True)
    assert await blocker == "done-first"
    assert isinstance(outcomes[3], RuntimeError)
    assert [o for i, o in enumerate(outcomes) if i != 3] == [(True, f"done-m-{i}") for i in range(8) if i != 3]
    assert splits("split-test") == before + 1
    assert await counts(engine) == (8, 7, 8)  # "first" + 7: the failed one left no claim, row or entry
    # and its redelivery runs it (the claim was rolled back with it)
    assert await group.run_once(processed, "c", "m-3", effect("m-3"), T0) == (True, "done-m-3")


async def test_the_same_message_twice_in_one_group_runs_once(engine: AsyncEngine) -> None:
    group = GroupCommit(engine, "test", around=Writes())
    blocker = asyncio.create_task(group.run(effect("first", delay=0.05)))
    await asyncio.sleep(0.01)
    a, b = await asyncio.gather(group.run_once(processed, "c", "dup", effect("dup"), T0),
                                group.run_once(processed, "c", "dup", effect("dup"), T0))
    await blocker
    assert sorted([a, b], key=str) == [(False, None), (True, "done-dup")]
    assert await counts(engine) == (2, 1, 2)


async def test_each_effect_runs_in_its_callers_context(engine: AsyncEngine) -> None:
    group = GroupCommit(engine, "test", around=Writes())
    seen: list[tuple[str, str]] = []

    async def caller(i: int) -> str:
        CALLER.set(f"caller-{i}")
        result = await group.run(effect(f"m-{i}", delay=0.001, seen=seen))
        assert CALLER.get() == f"caller-{i}"  # the effect's own changes stayed in its task
        return result

    assert await asyncio.gather(*[caller(i) for i in range(10)]) == [f"done-m-{i}" for i in range(10)]
    assert sorted(seen) == sorted((f"m-{i}", f"caller-{i}") for i in range(10))


async def test_a_caller_cancelled_before_its_turn_runs_nothing(engine: AsyncEngine) -> None:
    group = GroupCommit(engine, "test", around=Writes())
    blocker = asyncio.create_task(group.run(effect("first", delay=0.1)))
    await asyncio.sleep(0.02)
    waiting = asyncio.create_task(group.run_once(processed, "c", "gone", effect("gone"), T0))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await blocker == "done-first"
    await group.run(effect("after"))  # the queue goes on
    assert await counts(engine) == (2, 0, 2)


async def test_nested_batches_on_one_connection_join_the_outer_one(engine: AsyncEngine) -> None:
    async with engine.begin() as conn, audit_batched(conn, audit), outbox_batched(conn, outbox):
        async with audit_batched(conn, audit), outbox_batched(conn, outbox):
            await enqueue(conn, outbox, OutgoingMessage("ex", "rk", b"{}", "inner"), T0)
            assert await record(conn, audit, actor="t", action="inner", at=T0) is None
        assert await counts(engine) == (0, 0, 0)  # not written when the inner block ended (another connection looks)
        await enqueue(conn, outbox, OutgoingMessage("ex", "rk", b"{}", "outer"), T0)
    async with engine.connect() as conn:
        ids = (await conn.execute(select(outbox.c.message_id).order_by(outbox.c.id))).scalars().all()
    assert ids == ["inner", "outer"]
    assert (await counts(engine))[2] == 1


@pytest.mark.parametrize("workers", [1, 2])
async def test_workers_bound_the_transactions_open_at_once(pg_engine: AsyncEngine, workers: int) -> None:
    """On PostgreSQL (SQLite has one writer: a second transaction would only wait for the first)."""
    engine = pg_engine
    writes = Writes()
    group = GroupCommit(engine, "test", around=writes, workers=workers)
    first = asyncio.create_task(group.run(effect("first", delay=0.1)))
    await asyncio.sleep(0.02)  # the first group is in flight; the next callers arrive
    rest = await asyncio.gather(*[group.run(effect(f"m-{i}", delay=0.01)) for i in range(6)])
    assert await first == "done-first" and rest == [f"done-m-{i}" for i in range(6)]
    assert writes.most_open == workers  # a second worker takes the next group at once, never a third
    assert await counts(engine) == (7, 0, 7)


class CountingEngine:
    """The engine, counting the transactions the group begins."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine, self.begins = engine, 0

    def begin(self):
        self.begins += 1
        return self.engine.begin()


async def test_no_database_fails_every_caller_at_once_without_a_connection_each() -> None:
    """PostgreSQL refusing connections (nothing listens on the port): one attempt per group,
    not one per caller, and each caller gets the error (its message is retried later)."""
    engine = create_engine(f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none")
    counting = CountingEngine(engine)
    group = GroupCommit(counting, "down-test", around=Writes())  # type: ignore[arg-type]
    before = splits("down-test")
    try:
        with pytest.raises(OSError) as alone:
            async with engine.begin():
                pass
        counting.begins = 0
        first = asyncio.create_task(group.run(effect("first")))
        await asyncio.sleep(0)  # its group has begun connecting; the ten queue behind it
        outcomes = await asyncio.gather(first, *[group.run(effect(f"m-{i}")) for i in range(10)],
                                        return_exceptions=True)
    finally:
        await engine.dispose()
    assert [type(o) for o in outcomes] == [alone.type] * 11
    assert counting.begins == 2  # the first one's group, then the ten together
    assert splits("down-test") == before
