"""The list API's read (DESIGN §3.3): the calling team's organisation's referrals (social care:
its LA's; CTP Prevent: its force's), metadata only — the sealed columns are never selected —
newest first by (received_at, id), one keyset page at a time. Audited once per call
(`referral.list`: the filters and the count)."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from services.intake.adapters import queries
from services.intake.adapters.effects import record
from services.intake.adapters.tables import referrals
from services.intake.adapters.worklist import METADATA
from services.intake.context import Context
from services.intake.domain import clocks
from services.intake.domain.access import RECIPIENT_TEAMS
from services.intake.domain.errors import Forbidden
from services.intake.domain.listing import ListQuery, parse
from shared.clock import LONDON
from shared.web.identity import Person

r = referrals.c


def _iso(v: datetime | None) -> str | None:
    return v.astimezone(LONDON).isoformat() if v is not None else None


def overdue(now: datetime, strategy_minutes: float) -> sa.ColumnElement[bool]:
    """Any clock still running past its deadline — as `domain.clocks` reads a row, in SQL:
    acknowledge-by, decide-by (the same deadline), the strategy discussion's (from receipt after
    an immediate risk, else from an `immediate_protection` decision) on the open LA track;
    checks-due-by on the open CTP track."""
    raised_before = now - timedelta(minutes=strategy_minutes)
    strategy = sa.and_(r.strategy_at.is_(None), sa.or_(
        sa.and_(r.immediate_risk.is_(True), r.received_at < raised_before),
        sa.and_(r.immediate_risk.is_(False), r.pathway == "immediate_protection", r.decided_at < raised_before)))
    la = sa.and_(r.la_closed_at.is_(None), sa.or_(
        sa.and_(sa.or_(r.acknowledged_at.is_(None), r.decided_at.is_(None)), r.acknowledge_by < now), strategy))
    ctp = sa.and_(r.ctp_closed_at.is_(None), r.checks_at.is_(None), r.checks_due_by < now)
    return sa.or_(la, ctp)


def item(row: Any, now: datetime, strategy_minutes: float) -> dict[str, Any]:
    """One referral of the list: its metadata, both tracks and every clock, no timeline."""
    its = clocks.clocks_of(row, strategy_minutes)
    due = clocks.next_due(its)
    return {
        **queries.facts(row), "updated_at": _iso(row.updated_at),
        "strategy_discussion_recorded": row.strategy_at is not None,
        "clocks": [{"clock": c.key, "due": _iso(c.due), "state": c.state(now), "done_at": _iso(c.done_at)}
                   for c in its],
        "overdue": any(c.overdue(now) for c in its), "next_due": _iso(due),
    }

def _select(field: str, organisation: str, q: ListQuery, now: datetime, minutes: float) -> sa.Select:
    query = sa.select(*METADATA).where(r[field] == organisation)
    if q.status is not None:
        query = query.where(r.status == q.status)
    if q.updated_since is not None:
        query = query.where(r.updated_at >= q.updated_since)
    if q.overdue:
        query = query.where(overdue(now, minutes))
    if q.after is not None:
        t, i = q.after.received_at, q.after.id
        query = query.where(sa.or_(r.received_at < t, sa.and_(r.received_at == t, r.id < i)))
    return query.order_by(r.received_at.desc(), r.id.desc()).limit(q.limit + 1)


async def list_referrals(ctx: Context, client_id: str, query: Iterable[tuple[str, str]],
                         person: Person | None = None) -> dict[str, Any]:
    """`{"items": [...], "next_cursor": str | None}` for the request's query (name, value) pairs;
    `social_care` / `prevent` only: the role is checked first (403), then the query (422)."""
    client = ctx.principal(client_id, person)
    if client is None or client.role not in RECIPIENT_TEAMS:
        raise Forbidden("This client's role may not list referrals", reason="wrong_role")
    q = parse(query)
    now, minutes = ctx.clock(), ctx.settings.file.escalation.strategy_discussion_minutes
    field = RECIPIENT_TEAMS[client.role]
    async with ctx.engine.begin() as conn:
        rows = (await conn.execute(_select(field, client.organisation or "", q, now, minutes))).all()
        page = rows[:q.limit]
        items = [item(row, now, minutes) for row in page]
        detail = {"filters": q.filters(), "cursor": q.after is not None, "limit": q.limit, "count": len(items),
                  "via": "api", **({"person": person.as_dict()} if person else {}),
                  **({"client_id": client_id} if person and person.id != client_id else {})}
        await record(conn, actor=person.id if person else client_id, action="referral.list", detail=detail, at=now)
    more = len(rows) > q.limit
    return {"items": items, "next_cursor": q.cursor_after(page[-1].received_at, page[-1].id) if more else None}
