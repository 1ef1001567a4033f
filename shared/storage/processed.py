"""Idempotent consumers: remember which message ids each consumer has applied.

`claim` inserts (consumer, message_id) with ON CONFLICT DO NOTHING, so it is
True exactly once. `process_once` claims and applies the effect in one
transaction: a redelivery changes nothing, and a failed effect leaves no claim.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["claim", "once", "process_once"]

T = TypeVar("T")

_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


async def claim(
    conn: AsyncConnection, table: Table, consumer: str, message_id: str, now: datetime,
) -> bool:
    """True the first time `consumer` sees `message_id`, False ever after.

    On PostgreSQL a concurrent claim of the same id waits for the first
    transaction and then sees the conflict (or wins, if that one rolled back).
    """
    try:
        insert = _INSERTS[conn.dialect.name]
    except KeyError:
        raise NotImplementedError(f"claim() does not support {conn.dialect.name}") from None
    stmt = insert(table).values(
        consumer=consumer, message_id=message_id, processed_at=now,
    ).on_conflict_do_nothing(index_elements=[table.c.consumer, table.c.message_id])
    result = await conn.execute(stmt)
    return result.rowcount == 1


async def process_once(
    engine: AsyncEngine,
    table: Table,
    consumer: str,
    message_id: str,
    fn: Callable[[AsyncConnection], Awaitable[T]],
    now: datetime,
) -> tuple[bool, T | None]:
    """Run `fn(conn)` once per (consumer, message_id), committing it with the claim.

    Returns (True, fn's result) when it ran and (False, None) for a duplicate.
    If `fn` raises, the transaction — claim included — rolls back and the
    exception propagates, so a redelivery tries again.
    """
    async with engine.begin() as conn:
        return await once(table, consumer, message_id, fn, now)(conn)


def once(
    table: Table,
    consumer: str,
    message_id: str,
    fn: Callable[[AsyncConnection], Awaitable[T]],
    now: datetime,
) -> Callable[[AsyncConnection], Awaitable[tuple[bool, T | None]]]:
    """`fn` behind the processed-id claim, for the caller's transaction (`process_once`, or a
    group commit's `run_once`): (True, fn's result) the first time, (False, None) after."""
    async def claimed(conn: AsyncConnection) -> tuple[bool, T | None]:
        if not await claim(conn, table, consumer, message_id, now):
            return False, None
        return True, await fn(conn)
    return claimed
