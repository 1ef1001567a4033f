"""The named people whose ids a service's `*_by` columns hold (DESIGN §3.7): one row per
person id (`person:…`) with the identity provider's issuer and subject, the display name,
role and organisation, updated each time they act; pages show the name. One table per
service (`<prefix>_people`, created by its migration; keep in step). In the caller's
transaction."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Column, MetaData, String, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.storage.tables import UtcDateTime

_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def people_table(metadata: MetaData, prefix: str) -> Table:
    return Table(
        f"{prefix}_people", metadata,
        Column("id", String(100), primary_key=True),
        Column("issuer", String(300), nullable=False),
        Column("subject", String(200), nullable=False),
        Column("name", String(100), nullable=False),
        Column("role", String(20), nullable=False),
        Column("organisation", String(63), nullable=True),
        Column("updated_at", UtcDateTime(), nullable=False),
    )


async def remember(conn: AsyncConnection, table: Table, person: Any, now: datetime) -> None:
    """Keep `person` (a `shared.web.identity.Person`): their latest name, role and organisation."""
    values = {"issuer": person.issuer, "subject": person.subject, "name": person.name, "role": person.role,
              "organisation": person.organisation, "updated_at": now}
    stmt = _INSERTS[conn.dialect.name](table).values(id=person.id, **values)
    await conn.execute(stmt.on_conflict_do_update(index_elements=[table.c.id], set_=values))


async def people_of(conn: AsyncConnection, table: Table, ids: Iterable[str | None]) -> dict[str, Row]:
    """The rows of the people among `ids` (actor ids; client ids are skipped), by id."""
    wanted = sorted({i for i in ids if i and i.startswith("person:")})
    if not wanted:
        return {}
    return {r.id: r for r in (await conn.execute(sa.select(table).where(table.c.id.in_(wanted)))).all()}
