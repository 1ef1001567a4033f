"""The named people whose ids the alerts' `acknowledged_by` / `outcome_by` hold (their latest
name, role and organisation), and the console's list of alerts. In the caller's transaction."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.escalation.adapters.tables import alerts, people
from shared.storage import people as store
from shared.web.identity import Person

async def remember(conn: AsyncConnection, person: Person, now: datetime) -> None:
    await store.remember(conn, people, person, now)


async def names_of(conn: AsyncConnection, ids: Iterable[str | None]) -> dict[str, str]:
    """Display names of the people among `ids` (actor ids), by id."""
    return {i: r.name for i, r in (await store.people_of(conn, people, ids)).items()}


async def console_alerts(conn: AsyncConnection, force: str) -> list[Row[Any]]:
    """The force's alerts the control room still has to deal with: open ones, and acknowledged
    ones whose outcome is not recorded yet."""
    waiting = or_(alerts.c.status == "open", and_(alerts.c.status == "acknowledged", alerts.c.outcome_action.is_(None)))
    return list((await conn.execute(select(alerts).where(alerts.c.force == force, waiting))).all())
