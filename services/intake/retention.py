"""Retention (DESIGN §5): crypto-shred referrals closed longer ago than the period.

Every sealed copy of a referral's data key is dropped from each of its envelopes
(`shared.crypto.shred`), so nobody — no team, not the notifier — can open its content,
contacts, rationale, CTP notes or strategy-discussion notes again. The referral row (status, times, pathway,
outcome, age band, concern types) stays, so reporting counts do not change. One
transaction and one audit entry (`referral.shredded`) per referral, row locked.
"""
from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.intake.adapters import repository as repo
from services.intake.adapters import tables
from shared import audit
from shared.crypto import shred

ENVELOPES = tables.SEALED_COLUMNS
ACTOR = "safeguard-retention"


def cutoff(now: datetime, retention_days: int) -> datetime:
    """Referrals closed before this instant are past retention."""
    return now - timedelta(days=retention_days)


async def due(engine: AsyncEngine, before: datetime) -> list[str]:
    """References of closed, not yet shredded referrals closed before `before`."""
    r = tables.referrals.c
    async with engine.connect() as conn:
        return list((await conn.execute(sa.select(r.reference).where(
            r.status == "closed", r.closed_at < before, r.shredded_at.is_(None)).order_by(r.closed_at))).scalars())


async def shred_referral(engine: AsyncEngine, reference: str, *, before: datetime, retention_days: int,
                         now: datetime) -> bool:
    """Shred one referral if it is still due; True if this call shredded it."""
    async with engine.begin() as conn:
        await repo.begin_write(conn)
        row = await repo.get_referral(conn, reference, for_update=True)
        if row is None or row.shredded_at is not None or row.closed_at is None or row.closed_at >= before:
            return False
        values = {c: shred(getattr(row, c)) for c in ENVELOPES if getattr(row, c) is not None}
        await repo.update_referral(conn, row.id, {**values, "shredded_at": now}, at=now)
        await audit.record(conn, tables.audit, actor=ACTOR, action="referral.shredded", reference=reference,
                           detail={"retention_days": retention_days, "closed_at": row.closed_at.isoformat(),
                                   "envelopes": len(values)}, at=now)
    return True


async def shred_expired(engine: AsyncEngine, *, retention_days: int, now: datetime) -> list[str]:
    """Shred every referral past retention; return the references shredded."""
    before = cutoff(now, retention_days)
    done = []
    for reference in await due(engine, before):
        if await shred_referral(engine, reference, before=before, retention_days=retention_days, now=now):
            done.append(reference)
    return done
