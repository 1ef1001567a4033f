"""The transactional outbox on SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.intake.adapters.tables import outbox
from shared.storage import (
    OutgoingMessage, backlog, claim_batch, enqueue, mark_sent, purge_sent, record_failure,
)
from shared.storage.outbox import batched

from .conftest import T0


def msg(n: int, **kw) -> OutgoingMessage:
    return OutgoingMessage(
        exchange="safeguard.events", routing_key="referral.received",
        body=f'{{"n": {n}, "narrative": "secret words {n}"}}'.encode(), message_id=f"m-{n}",
        **kw,
    )


async def fill(engine: AsyncEngine, n: int) -> list[int]:
    async with engine.begin() as conn:
        return [await enqueue(conn, outbox, msg(i), T0 + timedelta(seconds=i)) for i in range(n)]


async def test_rolled_back_enqueue_leaves_nothing(engine: AsyncEngine) -> None:
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await enqueue(conn, outbox, msg(1), T0)
            raise RuntimeError("the state change failed")
    async with engine.begin() as conn:
        assert await claim_batch(conn, outbox, 10) == []
        assert await backlog(conn, outbox, T0) == (0, None)


async def test_committed_rows_are_claimed_in_order_and_round_trip(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await enqueue(conn, outbox, msg(0, correlation_id="corr-1", headers={"traceparent": "00-ab"}), T0)
    ids = await fill_more(engine)
    async with engine.begin() as conn:
        rows = await claim_batch(conn, outbox, 10)
    assert [r.message_id for r in rows] == ["m-0", "m-10", "m-11", "m-12"]
    assert [r.id for r in rows][1:] == ids and rows[0].id < ids[0]
    first = rows[0]
    assert first.body == msg(0).body and isinstance(first.body, bytes)
    assert (first.body_size, first.body_sha256) == (len(msg(0).body), hashlib.sha256(msg(0).body).hexdigest())
    assert first.headers == {"traceparent": "00-ab"} and first.correlation_id == "corr-1"
    assert first.created_at == T0 and first.created_at.tzinfo is not None
    assert first.sent_at is None and first.attempts == 0 and first.last_error is None
    async with engine.begin() as conn:
        assert [r.message_id for r in await claim_batch(conn, outbox, 2)] == ["m-0", "m-10"]


async def fill_more(engine: AsyncEngine) -> list[int]:
    async with engine.begin() as conn:
        return [await enqueue(conn, outbox, msg(i), T0) for i in (10, 11, 12)]


async def test_mark_sent_removes_rows_from_the_next_claim_and_backlog(engine: AsyncEngine) -> None:
    ids = await fill(engine, 4)
    async with engine.begin() as conn:
        assert await backlog(conn, outbox, T0 + timedelta(seconds=60)) == (4, 60.0)
        rows = await claim_batch(conn, outbox, 2)
        await mark_sent(conn, outbox, [r.id for r in rows], T0 + timedelta(seconds=61))
        await mark_sent(conn, outbox, [], T0)  # nothing to do
    async with engine.begin() as conn:
        assert [r.id for r in await claim_batch(conn, outbox, 10)] == ids[2:]
        assert await backlog(conn, outbox, T0 + timedelta(seconds=62)) == (2, 60.0)
        sent = (await conn.execute(select(outbox.c.sent_at).where(outbox.c.id == ids[0]))).scalar()
    assert sent == T0 + timedelta(seconds=61)


async def test_a_sent_row_keeps_its_metadata_but_not_its_body(engine: AsyncEngine) -> None:
    """issue 18 #3: the payload (which may carry sealed contacts) goes in the UPDATE that marks
    the row sent; its ids, routing key, times, size and digest stay for trace and ops."""
    async with engine.begin() as conn:
        await enqueue(conn, outbox, msg(0, correlation_id="corr-0"), T0)
        await enqueue(conn, outbox, msg(1), T0)
        rows = await claim_batch(conn, outbox, 10)
        statements = []
        sa_event.listen(conn.sync_connection, "before_cursor_execute",
                        lambda *a: statements.append(a[2]))
        await mark_sent(conn, outbox, [rows[0].id], T0 + timedelta(seconds=1))
    assert len(statements) == 1 and statements[0].lstrip().upper().startswith("UPDATE")  # no statement more
    async with engine.connect() as conn:
        sent, unsent = (await conn.execute(select(outbox).order_by(outbox.c.id))).all()
    assert sent.body == b"" and b"secret words" not in sent.body
    assert (sent.message_id, sent.routing_key, sent.correlation_id) == ("m-0", "referral.received", "corr-0")
    assert (sent.created_at, sent.sent_at) == (T0, T0 + timedelta(seconds=1))
    assert (sent.body_size, sent.body_sha256) == (len(msg(0).body), hashlib.sha256(msg(0).body).hexdigest())
    assert unsent.body == msg(1).body and unsent.sent_at is None  # not confirmed: kept for the retry


async def test_record_failure_counts_attempts_and_keeps_no_body(engine: AsyncEngine) -> None:
    ids = await fill(engine, 2)
    body = msg(0).body
    async with engine.begin() as conn:
        await record_failure(conn, outbox, [ids[0]], "timeout waiting for confirm")
        await record_failure(conn, outbox, [ids[0]], f"broker refused {body!r}; text {body.decode()}")
        await record_failure(conn, outbox, [], "ignored")
    async with engine.begin() as conn:
        rows = await claim_batch(conn, outbox, 10)  # failed rows stay unsent for a retry
    assert [r.attempts for r in rows] == [2, 0]
    assert rows[0].last_error.startswith("broker refused ")
    assert "secret words" not in rows[0].last_error and "[body redacted]" in rows[0].last_error
    assert rows[1].last_error is None


async def test_long_errors_are_truncated(engine: AsyncEngine) -> None:
    ids = await fill(engine, 1)
    async with engine.begin() as conn:
        await record_failure(conn, outbox, ids, "x" * 5000)
        row = (await claim_batch(conn, outbox, 1))[0]
    assert len(row.last_error) == 1000


async def test_purge_sent_deletes_only_old_sent_rows(engine: AsyncEngine) -> None:
    ids = await fill(engine, 3)
    async with engine.begin() as conn:
        await mark_sent(conn, outbox, [ids[0]], T0)
        await mark_sent(conn, outbox, [ids[1]], T0 + timedelta(days=2))
    async with engine.begin() as conn:
        assert await purge_sent(conn, outbox, T0 + timedelta(days=1)) == 1
        left = (await conn.execute(select(outbox.c.id).order_by(outbox.c.id))).scalars().all()
    assert left == ids[1:]


async def test_a_message_id_is_enqueued_once(engine: AsyncEngine) -> None:
    await fill(engine, 1)
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await enqueue(conn, outbox, msg(0), T0)


async def test_naive_datetimes_are_refused(engine: AsyncEngine) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        async with engine.begin() as conn:
            await enqueue(conn, outbox, msg(0), T0.replace(tzinfo=None))


async def test_concurrent_relays_claim_disjoint_rows_on_postgres(pg_engine: AsyncEngine) -> None:
    ids = await fill(pg_engine, 5)
    async with pg_engine.connect() as first, pg_engine.connect() as second:
        await first.begin()
        await second.begin()
        taken_first = await claim_batch(first, outbox, 3)
        # SKIP LOCKED: the second relay does not wait for the first, it takes the rest.
        taken_second = await asyncio.wait_for(claim_batch(second, outbox, 10), timeout=5)
        assert [r.id for r in taken_first] == ids[:3]
        assert [r.id for r in taken_second] == ids[3:]
        await mark_sent(first, outbox, [r.id for r in taken_first], T0)
        await first.commit()
        await second.rollback()  # the second relay failed: its rows are free again
    async with pg_engine.begin() as conn:
        assert [r.id for r in await claim_batch(conn, outbox, 10)] == ids[3:]


async def test_batched_messages_are_written_together_in_order_at_the_end(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        async with batched(conn, outbox):
            for i in range(5):
                assert await enqueue(conn, outbox, msg(i, headers={"traceparent": f"00-{i}"}), T0) is None
            assert await claim_batch(conn, outbox, 10) == []  # not written yet
        rows = await claim_batch(conn, outbox, 10)
    assert [r.message_id for r in rows] == [f"m-{i}" for i in range(5)]
    assert [r.headers for r in rows] == [{"traceparent": f"00-{i}"} for i in range(5)]
    assert rows == sorted(rows, key=lambda r: r.id) and all(r.body == msg(i).body for i, r in enumerate(rows))


async def test_a_failing_batched_block_writes_nothing(engine: AsyncEngine) -> None:
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn, batched(conn, outbox):
            await enqueue(conn, outbox, msg(1), T0)
            raise RuntimeError("the state change failed")
    async with engine.begin() as conn:
        assert await claim_batch(conn, outbox, 10) == []
