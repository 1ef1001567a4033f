"""The named people whose ids the alerts' `acknowledged_by` / `outcome_by` hold (their latest
name, role and organisation), and the console's list of alerts. In the caller's transaction."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from services.escalation.adapters.tables import alerts, people
from shared.web.identity import Person

_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


async def remember(conn: AsyncConnection, person: Person, now: datetime) -> None:
    values = {"issuer": person.issuer, "subject": person.subject, "name": person.name, "role": person.role,
              "organisation": person.organisation, "updated_at": now}
    stmt = _INSERTS[conn.dialect.name](people).values(id=person.id, **values)
    await conn.execute(stmt.on_conflict_do_update(index_elements=[people.c.id], set_=values))


async def names_of(conn: AsyncConnection, ids: Iterable[str | None]) -> dict[str, str]:
    """Display names of the people among `ids` (actor ids), by id."""
    wanted = sorted({i for i in ids if i and i.startswith("person:")})
    if not wanted:
        return {}
    rows = (await conn.execute(select(people.c.id, people.c.name).where(people.c.id.in_(wanted)))).all()
    return {r.id: r.name for r in rows}


async def console_alerts(conn: AsyncConnection, force: str) -> list[Row[Any]]:
    """The force's alerts the control room still has to deal with: open ones, and acknowledged
    ones whose outcome is not recorded yet."""
    waiting = or_(alerts.c.status == "open", and_(alerts.c.status == "acknowledged", alerts.c.outcome_action.is_(None)))
    return list((await conn.execute(select(alerts).where(alerts.c.force == force, waiting))).all())
