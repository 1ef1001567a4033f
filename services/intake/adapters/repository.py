"""Intake's storage functions (SQLAlchemy Core, SQLite and PostgreSQL alike).

All run on a connection inside the caller's transaction, except `claim_nonce`,
which commits on its own so that a replayed request is refused before any work
(`claim_nonce_in`: the same claim in the transaction that also counts the request against
the client's rate limit, committed before the work).
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.intake.adapters.tables import (
    concerns, idempotency_keys, nonces, people, reference_counters, referrals,
)
from services.intake.domain.lifecycle import State
from shared.storage import nonces as nonces_store
from shared.storage import people as people_store

_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def _insert(conn: AsyncConnection, table: sa.Table):
    return _INSERTS[conn.dialect.name](table)


async def begin_write(conn: AsyncConnection) -> None:
    """On SQLite take the write lock now (a later read→write upgrade could fail busy)."""
    if conn.dialect.name == "sqlite":
        await conn.execute(sa.update(reference_counters).where(sa.false()).values(last=0))


async def next_sequence(conn: AsyncConnection, year: int) -> int:
    """The next reference number of `year`: one upsert, row-locked until commit."""
    stmt = _insert(conn, reference_counters).values(year=year, last=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=[reference_counters.c.year], set_={"last": reference_counters.c.last + 1}
    ).returning(reference_counters.c.last)
    return int((await conn.execute(stmt)).scalar_one())


async def insert_referral(conn: AsyncConnection, values: dict[str, Any], *, at: datetime) -> None:
    await conn.execute(sa.insert(referrals), {**values, "updated_at": at})


async def get_referral(conn: AsyncConnection, reference: str, *, for_update: bool = False) -> Row | None:
    query = sa.select(referrals).where(referrals.c.reference == reference)
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return (await conn.execute(query)).first()


async def update_referral(conn: AsyncConnection, referral_id: str, values: dict[str, Any], *,
                          at: datetime | None) -> None:
    """`at`: when, kept as `updated_at` (what the list API's `updated_since` reads). None only for a
    change no metadata reader sees (a key rewrap re-seals envelopes and changes nothing else)."""
    values = {**values, "updated_at": at} if at is not None else values
    await conn.execute(sa.update(referrals).where(referrals.c.id == referral_id).values(**values))


async def insert_concern(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(sa.insert(concerns), values)


async def concerns_of(conn: AsyncConnection, referral_id: str) -> list[Row]:
    """A referral's concerns, oldest first."""
    return list((await conn.execute(sa.select(concerns).where(concerns.c.referral_id == referral_id)
                                    .order_by(concerns.c.raised_at, concerns.c.id))).all())


def state_of(row: Row) -> State:
    return State(
        status=row.status, acknowledged_at=row.acknowledged_at, pathway=row.pathway,
        checks_outcome=row.checks_outcome, feedback_at=row.feedback_at,
        family_contact_hold=row.family_contact_hold, family_contact_lifted=row.family_contact_lifted,
        closed_at=row.closed_at, received_at=row.received_at,
        la_closed_at=row.la_closed_at, ctp_closed_at=row.ctp_closed_at,
        strategy=None if row.strategy_at is None else {
            "held_at": row.strategy_held_at, "agencies": tuple(row.strategy_agencies),
            "legal_advice_sought": row.strategy_legal_advice_sought, "decision": row.strategy_decision,
            "parents_informed": row.strategy_parents_informed},
    )


async def get_idempotent(conn: AsyncConnection, client_id: str, key: str) -> Row | None:
    return (await conn.execute(sa.select(idempotency_keys).where(
        idempotency_keys.c.client_id == client_id, idempotency_keys.c.key == key))).first()


async def save_idempotent(conn: AsyncConnection, client_id: str, key: str, body_sha256: str,
                          response: dict[str, Any], now: datetime) -> None:
    await conn.execute(sa.insert(idempotency_keys).values(
        client_id=client_id, key=key, body_sha256=body_sha256, response=response, created_at=now))


async def claim_nonce(engine: AsyncEngine, client_id: str, nonce: str, now: datetime,
                      window: timedelta = timedelta(seconds=600)) -> bool:
    return await nonces_store.claim_nonce(engine, nonces, client_id, nonce, now, window)


async def claim_nonce_in(conn: AsyncConnection, client_id: str, nonce: str, now: datetime,
                         window: timedelta = timedelta(seconds=600)) -> bool:
    return await nonces_store.claim_nonce_in(conn, nonces, client_id, nonce, now, window)


async def purge_nonces(engine: AsyncEngine, now: datetime) -> int:
    return await nonces_store.purge_nonces(engine, nonces, now)


async def stats_rows(conn: AsyncConnection, start: datetime, end: datetime, org: str | None) -> list[Row]:
    r = referrals.c
    query = sa.select(r.status, r.pathway, r.checks_outcome, r.age_band, r.concern_types, r.referral_source_sector,
                      r.gender, r.feedback_at, r.la_closed_at, r.ctp_closed_at,
                      r.acknowledged_at, r.decided_at, r.acknowledge_by, r.checks_at, r.checks_due_by, r.immediate_risk,
                      r.out_of_hours, r.received_at).where(r.received_at >= start, r.received_at < end)
    if org is not None:
        query = query.where(sa.or_(r.la_code == org, r.force == org))
    return list((await conn.execute(query)).all())


__all__ = [
    "IntegrityError", "begin_write", "claim_nonce", "claim_nonce_in", "concerns_of", "get_idempotent", "get_referral",
    "insert_concern", "insert_referral",
    "next_sequence", "purge_nonces", "save_idempotent", "state_of", "stats_rows", "update_referral",
]


async def remember_person(conn: AsyncConnection, person: Any, now: datetime) -> None:
    """Keep the named person a `*_by` column will hold the id of (their latest name and role)."""
    await people_store.remember(conn, people, person, now)


async def names_of(conn: AsyncConnection, ids: set[str]) -> dict[str, Row]:
    """The people among `ids` (actor ids), by id."""
    return await people_store.people_of(conn, people, ids)
