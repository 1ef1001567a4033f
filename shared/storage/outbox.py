"""The transactional outbox: messages commit with the state change that causes them.

`enqueue` runs in the caller's transaction, so a rolled-back change leaves no
message behind; inside `batched(conn, table)` a transaction's messages are written
together, in order, in one statement at the end of the block. A relay then, in its own transaction, `claim_batch`es unsent
rows (on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so concurrent relays never
take the same rows), publishes them with confirms and `mark_sent`s them, or
`record_failure`s them and lets the next pass retry.

A sent row keeps its metadata (ids, routing key, times, `body_size`, `body_sha256`) but
not its payload: `mark_sent` empties the body in the same UPDATE that sets `sent_at`, so
no copy of a sealed section outlives its delivery (a retired team key opens nothing there).
"""
from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Row, Table, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shared import tracing

__all__ = [
    "OutgoingMessage", "PURGED", "backlog", "batched", "claim_batch", "enqueue", "mark_sent", "purge_sent",
    "record_failure",
]

MAX_ERROR_CHARS = 1000
_BODY_REDACTED = "[body redacted]"
PURGED = b""  # the body of a sent row


@dataclass(frozen=True)
class OutgoingMessage:
    exchange: str
    routing_key: str
    body: bytes
    message_id: str
    correlation_id: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)


def _row(msg: OutgoingMessage, now: datetime) -> dict[str, Any]:
    headers = dict(msg.headers)
    if "traceparent" not in headers and (tp := tracing.current()):
        headers["traceparent"] = tracing.child_of(tp)  # the relay publishes later, elsewhere
    return {"message_id": msg.message_id, "exchange": msg.exchange, "routing_key": msg.routing_key,
            "body": msg.body, "body_size": len(msg.body), "body_sha256": hashlib.sha256(msg.body).hexdigest(),
            "headers": headers, "correlation_id": msg.correlation_id,
            "created_at": now, "attempts": 0}


# (id(conn), table) -> the rows of the open batch; see `batched`
_BATCHES: dict[tuple[int, str], tuple[AsyncConnection, Table, list[dict[str, Any]]]] = {}


async def enqueue(conn: AsyncConnection, table: Table, msg: OutgoingMessage, now: datetime) -> int | None:
    """Add `msg` to the outbox inside the caller's transaction; returns the row id
    (None inside `batched`, where the row is written at the end of the block)."""
    batch = _BATCHES.get((id(conn), table.name))
    if batch is not None and batch[0] is conn and batch[1] is table:
        batch[2].append(_row(msg, now))
        return None
    result = await conn.execute(table.insert(), _row(msg, now))  # parameters apart: a cached statement
    return int(result.inserted_primary_key[0])


@contextlib.asynccontextmanager
async def batched(conn: AsyncConnection, table: Table) -> AsyncIterator[None]:
    """Inside this block `enqueue(conn, table, ...)` collects its rows; the block's end
    writes them in one multi-row insert (still in the caller's transaction, in order).
    The batch belongs to the connection, not to the task (as `shared.audit.batched`): a
    block nested in another on the same connection joins the outer one.
    On an exception nothing is written; the caller's transaction rolls back anyway."""
    key = (id(conn), table.name)
    if key in _BATCHES:
        yield
        return
    rows: list[dict[str, Any]] = []
    _BATCHES[key] = (conn, table, rows)
    try:
        yield
        if rows:
            await conn.execute(table.insert(), rows)
    finally:
        del _BATCHES[key]


async def claim_batch(conn: AsyncConnection, table: Table, limit: int) -> list[Row[Any]]:
    """Up to `limit` unsent rows, oldest first, locked until the caller's transaction ends.

    On PostgreSQL rows locked by another relay are skipped; SQLite has a single
    writer, so a plain select is enough there.
    """
    query = select(table).where(table.c.sent_at.is_(None)).order_by(table.c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list((await conn.execute(query)).all())


async def mark_sent(conn: AsyncConnection, table: Table, ids: list[int], now: datetime) -> None:
    """Record that the broker confirmed these rows and purge their bodies, in one statement."""
    if ids:
        await conn.execute(update(table).where(table.c.id.in_(ids)).values(sent_at=now, body=PURGED))


async def record_failure(conn: AsyncConnection, table: Table, ids: list[int], error: str) -> None:
    """Count a failed publish of these rows and keep the (body-free, truncated) error."""
    if not ids:
        return
    bodies = (await conn.execute(select(table.c.body).where(table.c.id.in_(ids)))).scalars()
    text = _scrub(str(error), list(bodies))[:MAX_ERROR_CHARS]
    await conn.execute(
        update(table).where(table.c.id.in_(ids))
        .values(attempts=table.c.attempts + 1, last_error=text)
    )


def _scrub(error: str, bodies: list[bytes]) -> str:
    """Remove any message body (as text or as a bytes repr) from an error text."""
    for body in bodies:
        for form in (body.decode("utf-8", "replace"), repr(body), repr(body)[2:-1]):
            if len(form) >= 8 and form in error:
                error = error.replace(form, _BODY_REDACTED)
    return error


async def backlog(conn: AsyncConnection, table: Table, now: datetime) -> tuple[int, float | None]:
    """(number of unsent rows, age in seconds of the oldest of them or None)."""
    count, oldest = (await conn.execute(
        select(func.count(), func.min(table.c.created_at)).where(table.c.sent_at.is_(None))
    )).one()
    if not count or oldest is None:
        return 0, None
    if oldest.tzinfo is None:  # a table declared with plain DateTime on SQLite
        oldest = oldest.replace(tzinfo=timezone.utc)
    return int(count), max(0.0, (now - oldest).total_seconds())


async def purge_sent(conn: AsyncConnection, table: Table, older_than: datetime) -> int:
    """Delete rows sent before `older_than`; returns how many went."""
    result = await conn.execute(
        delete(table).where(table.c.sent_at.is_not(None), table.c.sent_at < older_than)
    )
    return int(result.rowcount or 0)
