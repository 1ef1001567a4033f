"""Reads for the pages of a signed-in person (DESIGN §3.7): their organisation's case list and
one referral's page, metadata only — the sealed columns are never selected or returned (the
person's browser fetches and opens the envelopes itself). Every read is audited."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from services.intake.adapters import queries
from services.intake.adapters import repository as repo
from services.intake.adapters.effects import record
from services.intake.adapters.tables import SEALED_COLUMNS, referrals
from services.intake.context import Context
from services.intake.domain.access import RECIPIENT_TEAMS, authorise
from services.intake.domain.actions import ACTIONS, SOCIAL_CARE
from shared.web.identity import Person

LIMIT = 200
METADATA = [c for c in referrals.c if c.name not in SEALED_COLUMNS]


def _metadata(row: Any) -> SimpleNamespace:
    return SimpleNamespace(**{c.name: row._mapping[c.name] for c in METADATA})


async def case_list(ctx: Context, person: Person, *, closed: bool = False,
                    limit: int = LIMIT) -> list[SimpleNamespace]:
    """The referrals of the person's organisation whose track of theirs is open (or closed),
    oldest first — the most urgent, since every deadline follows the receipt — at most `limit`."""
    field = RECIPIENT_TEAMS[person.role]
    track_closed = referrals.c.la_closed_at if person.role == "social_care" else referrals.c.ctp_closed_at
    query = (sa.select(*METADATA).where(referrals.c[field] == person.organisation)
             .where(track_closed.is_not(None) if closed else track_closed.is_(None)))
    query = query.order_by(referrals.c.received_at.desc() if closed else referrals.c.received_at).limit(limit)
    async with ctx.engine.begin() as conn:
        rows = [_metadata(r) for r in (await conn.execute(query)).all()]
        await record(conn, actor=person.id, action="referral.list", at=ctx.clock(), detail={
            "person": person.as_dict(), "state": "closed" if closed else "open", "count": len(rows), "via": "page"})
    return rows


async def referral_page(ctx: Context, person: Person, reference: str) -> tuple[dict[str, Any], SimpleNamespace]:
    """One referral for its recipient teams (social care of its LA, CTP Prevent of its force):
    the status reply of `GET /v1/referrals/{reference}` (timeline with names, concerns, the
    strategy discussion) and the row's metadata. Absent and another organisation's: the same
    `Forbidden`, before anything is read."""
    async with ctx.engine.begin() as conn:
        row = await repo.get_referral(conn, reference)
        authorise(person, row, RECIPIENT_TEAMS)  # type: ignore[arg-type]  # a Person has role and organisation
        assert row is not None
        concerns = await repo.concerns_of(conn, row.id)
        summary = queries.summary(row, concerns, await repo.names_of(conn, queries.by_ids(row, concerns)))
        await record(conn, actor=person.id, action="referral.read", reference=reference, at=ctx.clock(),
                     detail={"person": person.as_dict(), "via": "page"})
    return summary, _metadata(row)


DONE_AT = {"acknowledgement": "acknowledged_at", "decision": "decided_at", "checks": "checks_at",
           "feedback": "feedback_at", "strategy-discussion": "strategy_at"}
WHO = {**{a: spec.who for a, spec in ACTIONS.items()}, "concerns": SOCIAL_CARE}


async def check_action(ctx: Context, person: Person, reference: str, action: str) -> bool:
    """Before a page's form is read: whether the person's role may take `action` on this
    referral of their organisation (`Forbidden` otherwise; absent and another organisation's
    alike), and whether it had already been taken (a repeat changes nothing: the page says so)."""
    async with ctx.engine.connect() as conn:
        row = await repo.get_referral(conn, reference)
    authorise(person, row, WHO[action])  # type: ignore[arg-type]
    column = DONE_AT.get(action) or (
        ("la_closed_at" if person.role == "social_care" else "ctp_closed_at") if action == "close" else None)
    return column is not None and getattr(row, column) is not None
