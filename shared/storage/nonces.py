"""Request nonces claimed in the database, so a signed request replayed is refused across
restarts and replicas (DESIGN §3.3): one table per service (`<prefix>_nonces`) with the
client id, the nonce and when the claim expires."""
from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.storage.tables import UtcDateTime

_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def nonce_table(metadata: MetaData, prefix: str) -> Table:
    """`<prefix>_nonces` (created by the service's migration; keep in step)."""
    return Table(
        f"{prefix}_nonces", metadata,
        Column("client_id", String(100), nullable=False),
        Column("nonce", String(200), nullable=False),
        Column("expires_at", UtcDateTime(), nullable=False, index=True),
        PrimaryKeyConstraint("client_id", "nonce", name=f"pk_{prefix}_nonces"),
    )


async def claim_nonce(engine: AsyncEngine, table: Table, client_id: str, nonce: str, now: datetime,
                      window: timedelta = timedelta(seconds=600)) -> bool:
    """True the first time (client, nonce) is seen within the window, across replicas: one
    upsert that inserts a new nonce or takes over an expired one, and touches a live one not."""
    async with engine.begin() as conn:
        return await claim_nonce_in(conn, table, client_id, nonce, now, window)


async def claim_nonce_in(conn: AsyncConnection, table: Table, client_id: str, nonce: str, now: datetime,
                         window: timedelta = timedelta(seconds=600)) -> bool:
    """`claim_nonce` in the caller's transaction (the claim holds once that commits)."""
    stmt = _INSERTS[conn.dialect.name](table).values(client_id=client_id, nonce=nonce, expires_at=now + window)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.client_id, table.c.nonce], set_={"expires_at": stmt.excluded.expires_at},
        where=table.c.expires_at <= now)
    return (await conn.execute(stmt)).rowcount == 1


async def purge_nonces(engine: AsyncEngine, table: Table, now: datetime) -> int:
    async with engine.begin() as conn:
        return int((await conn.execute(sa.delete(table).where(table.c.expires_at <= now))).rowcount or 0)
