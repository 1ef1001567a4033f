"""Retention (DESIGN §5) of what escalation holds sealed: the control room's outcome notes.

The notes of every alert whose referral was closed before the cut-off are crypto-shredded
(`shared.crypto.shred`: every sealed copy of their data key dropped), as intake shreds the
referral's own envelopes (services/intake/retention.py); the outcome itself (action, time,
who) stays. One audit entry (`alert.notes_shredded`, ids only) per alert. Run by
`safeguard retention run` in the caller's transaction; a second run finds nothing to do.
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.escalation.adapters import tables
from shared import audit
from shared.crypto import envelope_key_ids, shred

ACTOR = "safeguard-retention"


async def shred_expired(conn: AsyncConnection, *, before: datetime, retention_days: int,
                        now: datetime) -> list[str]:
    """Shred the outcome notes of alerts of referrals closed before `before`; their alert ids."""
    a, r = tables.alerts.c, tables.referrals.c
    rows = (await conn.execute(
        sa.select(a.alert_id, a.reference, a.outcome_notes_sealed)
        .join(tables.referrals, r.referral_id == a.referral_id)
        .where(r.closed_at < before, a.outcome_notes_sealed.is_not(None)).order_by(a.raised_at))).all()
    done = []
    for row in rows:
        if not envelope_key_ids(row.outcome_notes_sealed):  # shredded already
            continue
        await conn.execute(sa.update(tables.alerts).where(a.alert_id == row.alert_id)
                           .values(outcome_notes_sealed=shred(row.outcome_notes_sealed)))
        await audit.record(conn, tables.audit, actor=ACTOR, action="alert.notes_shredded", reference=row.reference,
                           detail={"alert_id": row.alert_id, "retention_days": retention_days}, at=now)
        done.append(row.alert_id)
    return done
