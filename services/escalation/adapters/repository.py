"""Repository functions over escalation's tables. All run in the caller's transaction."""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from services.escalation.adapters.tables import alerts, referrals, timers
from services.escalation.domain.ladder import TimerSpec

_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


# --- referrals -------------------------------------------------------------------

async def get_referral(conn: AsyncConnection, referral_id: str, *, lock: bool = False) -> Row[Any] | None:
    query = select(referrals).where(referrals.c.referral_id == referral_id)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return (await conn.execute(query)).first()


async def get_referrals(conn: AsyncConnection, referral_ids: Iterable[str]) -> dict[str, Row[Any]]:
    """Several referrals in one query (a batch of due timers), by id."""
    ids = sorted(set(referral_ids))
    if not ids:
        return {}
    rows = (await conn.execute(select(referrals).where(referrals.c.referral_id.in_(ids)))).all()
    return {r.referral_id: r for r in rows}


async def ensure_referral(conn: AsyncConnection, *, referral_id: str, reference: str, force: str,
                          la_code: str, now: datetime) -> Row[Any]:
    """The referral's row, locked; a placeholder (no receipt yet) if it is new. A new row comes
    back from the insert itself (and is ours until commit); only an existing one is read again."""
    insert = _INSERTS[conn.dialect.name]
    created = (await conn.execute(insert(referrals).values(
        referral_id=referral_id, reference=reference, force=force, la_code=la_code,
        created_at=now, updated_at=now,
    ).on_conflict_do_nothing(index_elements=[referrals.c.referral_id]).returning(*referrals.c))).first()
    row = created or await get_referral(conn, referral_id, lock=True)
    assert row is not None
    return row


async def update_referral(conn: AsyncConnection, referral_id: str, now: datetime, **values: Any) -> Row[Any]:
    """Set `values` (and updated_at); the updated row, from the same statement."""
    row = (await conn.execute(update(referrals).where(referrals.c.referral_id == referral_id)
                              .values(updated_at=now, **values).returning(*referrals.c))).first()
    assert row is not None, "update_referral: no such referral"
    return row


# --- timers ----------------------------------------------------------------------

def timer_key(referral_id: str, kind: str, seq: int, alert_id: str | None = None) -> str:
    return f"{alert_id or referral_id}:{kind}:{seq}"


_ADDED: contextvars.ContextVar[list[datetime] | None] = contextvars.ContextVar("timers_added", default=None)


@contextlib.contextmanager
def noting_added() -> Iterator[list[datetime]]:
    """Inside this block `add_timers` appends each added batch's earliest run_at to the list
    it yields, so that the caller can wake the scheduler for it after the commit."""
    added: list[datetime] = []
    token = _ADDED.set(added)
    try:
        yield added
    finally:
        _ADDED.reset(token)


async def add_timers(conn: AsyncConnection, referral_id: str, reference: str, specs: Iterable[TimerSpec],
                     now: datetime, alert_id: str | None = None) -> int:
    """Insert pending timers; a timer that already exists (same key) is left alone."""
    rows = [dict(timer_key=timer_key(referral_id, s.kind, s.seq, alert_id), referral_id=referral_id,
                 reference=reference, kind=s.kind, seq=s.seq, alert_id=alert_id, due_at=s.due_at,
                 run_at=s.due_at, status="pending", attempts=0, created_at=now) for s in specs]
    if not rows:
        return 0
    insert = _INSERTS[conn.dialect.name]
    result = await conn.execute(insert(timers).on_conflict_do_nothing(index_elements=[timers.c.timer_key]), rows)
    if (added := _ADDED.get()) is not None:
        added.append(min(r["run_at"] for r in rows))
    return int(result.rowcount or 0)


async def cancel_timers(conn: AsyncConnection, referral_id: str, kinds: Iterable[str] | None = None, *,
                        alert_id: str | None = None) -> int:
    query = update(timers).where(timers.c.referral_id == referral_id, timers.c.status == "pending")
    if kinds is not None:
        query = query.where(timers.c.kind.in_(list(kinds)))
    if alert_id is not None:
        query = query.where(timers.c.alert_id == alert_id)
    return int((await conn.execute(query.values(status="cancelled"))).rowcount or 0)


async def claim_due(conn: AsyncConnection, now: datetime, limit: int) -> list[Row[Any]]:
    """Due pending timers, in due order, locked until the transaction ends (others skipped)."""
    query = (select(timers).where(timers.c.status == "pending", timers.c.run_at <= now)
             .order_by(timers.c.run_at, timers.c.id).limit(limit))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list((await conn.execute(query)).all())


async def lock_timer(conn: AsyncConnection, timer_id: int) -> Row[Any] | None:
    """One timer, if it is still pending (skipped when another firer holds it)."""
    query = select(timers).where(timers.c.id == timer_id, timers.c.status == "pending")
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return (await conn.execute(query)).first()


async def finish_timer(conn: AsyncConnection, timer_id: int, status: str, now: datetime) -> None:
    await finish_timers(conn, [(timer_id, status)], now)


async def finish_timers(conn: AsyncConnection, outcomes: Iterable[tuple[int, str]], now: datetime) -> None:
    """Mark fired / cancelled timers: one statement per outcome, not per timer."""
    by_status: dict[str, list[int]] = {}
    for timer_id, status in outcomes:
        by_status.setdefault(status, []).append(timer_id)
    for status, ids in by_status.items():
        await conn.execute(update(timers).where(timers.c.id.in_(ids))
                           .values(status=status, fired_at=now if status == "fired" else None))


async def timer_failed(conn: AsyncConnection, timer_id: int, error: str, retry_at: datetime,
                       give_up: bool) -> None:
    await conn.execute(update(timers).where(timers.c.id == timer_id).values(
        attempts=timers.c.attempts + 1, last_error=error[:200], run_at=retry_at,
        status="failed" if give_up else "pending"))


async def next_run_at(conn: AsyncConnection) -> datetime | None:
    return await conn.scalar(select(func.min(timers.c.run_at)).where(timers.c.status == "pending"))


async def count_by_kind_and_status(conn: AsyncConnection) -> dict[tuple[str, str], int]:
    rows = await conn.execute(select(timers.c.kind, timers.c.status, func.count())
                              .group_by(timers.c.kind, timers.c.status))
    return {(kind, status): int(n) for kind, status, n in rows}


async def count_open_alerts(conn: AsyncConnection) -> dict[tuple[str, str, str], int]:
    """Open alerts by (kind, force, level): organisation codes and fixed kinds only."""
    rows = await conn.execute(select(alerts.c.kind, alerts.c.force, alerts.c.level, func.count())
                              .where(alerts.c.status == "open").group_by(alerts.c.kind, alerts.c.force, alerts.c.level))
    return {(kind, force, level): int(n) for kind, force, level, n in rows}


# --- alerts ----------------------------------------------------------------------

async def insert_alert(conn: AsyncConnection, **values: Any) -> Row[Any]:
    """The new alert's row, as the insert returned it."""
    return (await conn.execute(alerts.insert().values(**values).returning(*alerts.c))).one()


async def get_alert(conn: AsyncConnection, alert_id: str, *, lock: bool = False) -> Row[Any] | None:
    query = select(alerts).where(alerts.c.alert_id == alert_id)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return (await conn.execute(query)).first()


async def alert_for_concern(conn: AsyncConnection, concern_id: str) -> Row[Any] | None:
    return (await conn.execute(select(alerts).where(alerts.c.concern_id == concern_id))).first()


async def update_alert(conn: AsyncConnection, alert_id: str, **values: Any) -> None:
    await conn.execute(update(alerts).where(alerts.c.alert_id == alert_id).values(**values))


async def open_alerts(conn: AsyncConnection, *, force: str | None = None,
                      referral_id: str | None = None) -> list[Row[Any]]:
    query = select(alerts).where(alerts.c.status == "open")
    if force is not None:
        query = query.where(alerts.c.force == force)
    if referral_id is not None:
        query = query.where(alerts.c.referral_id == referral_id)
    return list((await conn.execute(query)).all())
