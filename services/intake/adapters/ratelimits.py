"""The per-client rate limit's counts, shared by every replica through the database.

One row per client (`intake_rate_limits`): the minute it was last counted in, the requests
admitted in that minute (`n`) and in the minute before (`prev_n`), and whether the latest
request was admitted. `take` is ONE statement, an upsert that rolls the row into the current
minute, decides, counts only an admitted request and returns the counts: PostgreSQL's
`ON CONFLICT DO UPDATE` locks the row, so replicas deciding at once are serialised and the
total never exceeds the limit. Only authenticated clients reach it (a configured, bounded
set), so the table holds a row per client and needs no sweeping; `purge` drops the rows of
clients idle for two minutes (on the checkpointer's beat) so removed clients leave nothing.
"""
from __future__ import annotations

from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.intake.adapters.tables import rate_limits
from services.intake.domain.ratelimit import Position

_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


class Counts(NamedTuple):
    admitted: bool
    current: int  # admitted this minute, this request included when admitted
    previous: int  # admitted in the minute before


async def take(engine: AsyncEngine, client_id: str, limit: int, at: Position) -> Counts:
    async with engine.begin() as conn:
        return await take_in(conn, client_id, limit, at)


async def take_in(conn: AsyncConnection, client_id: str, limit: int, at: Position) -> Counts:
    """`take` in the caller's transaction (with the request's nonce claim: one commit for both)."""
    t = rate_limits.c
    minute = sa.literal(at.minute, sa.BigInteger)
    # A replica whose clock is up to a minute behind counts into the row's (later) minute
    # rather than resetting it; a row further ahead (a clock set back) starts afresh.
    same = t.minute.between(minute, minute + 1)
    current = sa.case((same, t.n), else_=0)
    previous = sa.case((same, t.prev_n), (t.minute == minute - 1, t.n), else_=0)
    admit = current + previous * sa.literal(at.weight, sa.Float) < limit
    stmt = _INSERTS[conn.dialect.name](rate_limits).values(
        client_id=client_id, minute=at.minute, n=1, prev_n=0, admitted=True)
    stmt = stmt.on_conflict_do_update(index_elements=[t.client_id], set_={
        "minute": sa.case((same, t.minute), else_=minute),
        "n": current + sa.case((admit, 1), else_=0),
        "prev_n": previous,
        "admitted": admit,
    }).returning(t.admitted, t.n, t.prev_n)
    row = (await conn.execute(stmt)).one()
    return Counts(bool(row.admitted), int(row.n), int(row.prev_n))


async def purge(engine: AsyncEngine, at: Position) -> int:
    async with engine.begin() as conn:
        result = await conn.execute(sa.delete(rate_limits).where(rate_limits.c.minute < at.minute - 1))
        return int(result.rowcount or 0)
