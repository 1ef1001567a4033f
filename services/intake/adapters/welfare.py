"""The welfare check (DESIGN §3.7): the control room of a referral's force may see the child's
identity and address — opened in the operator's browser with the force's key — only after an
audited step that names them and a reason. That step grants the signed-in *session* (its
row's `id_hash` in `intake_welfare_grants`) access to this referral's sealed content for
15 minutes; signing out or the session's expiry drops the grant with the session row.

Every read checks the role and the force first (absent and another force's referral: the same
`Forbidden`), then the grant. Only the content envelope is given out, never the contacts."""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.intake.adapters import repository as repo
from services.intake.adapters.effects import record
from services.intake.adapters.queries import sealed_of
from services.intake.adapters.tables import welfare_grants as grants
from services.intake.context import Context
from services.intake.domain.access import welfare_check
from services.intake.domain.errors import Forbidden
from shared.web.identity import Person

GRANT_FOR = timedelta(minutes=15)


def session_hash(session_id: str) -> str:
    """The session row's `id_hash` (shared/web/sessions.py hashes the cookie's id the same way)."""
    return hashlib.sha256(session_id.encode()).hexdigest()


async def _referral(conn: AsyncConnection, person: Person, reference: str) -> Row:
    row = await repo.get_referral(conn, reference)
    welfare_check(person, row)  # type: ignore[arg-type]  # a Person has role and organisation
    assert row is not None
    return row


async def referral_for(ctx: Context, person: Person, reference: str) -> Row:
    """The referral, when it is of the control-room person's force (`Forbidden` otherwise)."""
    async with ctx.engine.connect() as conn:
        return await _referral(conn, person, reference)


async def _live(conn: AsyncConnection, session_id: str, person: Person, reference: str,
                now: datetime) -> datetime | None:
    """When this session's grant for `reference` ends; None without a live one."""
    return await conn.scalar(sa.select(grants.c.expires_at).where(
        grants.c.session_hash == session_hash(session_id), grants.c.reference == reference,
        grants.c.person_id == person.id, grants.c.expires_at > now))


async def open_check(ctx: Context, person: Person, session_id: str, reference: str, reason: str,
                     alert_id: str | None) -> datetime:
    """The audited step (`referral.welfare_check_opened`, naming the person, the reason code and
    the control room's alert): grants this session 15 minutes; when they end."""
    now = ctx.clock()
    ends = now + GRANT_FOR
    h = session_hash(session_id)
    async with ctx.engine.begin() as conn:
        await _referral(conn, person, reference)
        await conn.execute(sa.delete(grants).where(
            (grants.c.expires_at <= now) | ((grants.c.session_hash == h) & (grants.c.reference == reference))))
        await conn.execute(sa.insert(grants).values(session_hash=h, reference=reference, person_id=person.id,
                                                    granted_at=now, expires_at=ends))
        await record(conn, actor=person.id, action="referral.welfare_check_opened", reference=reference, at=now,
                     detail={"person": person.as_dict(), "reason": reason, "via": "page",
                             "expires_at": ends.isoformat(), **({"alert_id": alert_id} if alert_id else {})})
    return ends


async def granted(ctx: Context, person: Person, session_id: str, reference: str) -> tuple[Row, datetime | None]:
    """The referral of the person's force, and when this session's live grant for it ends (None: none)."""
    async with ctx.engine.connect() as conn:
        row = await _referral(conn, person, reference)
        return row, await _live(conn, session_id, person, reference, ctx.clock())


async def sealed(ctx: Context, person: Person, session_id: str, reference: str) -> dict[str, Any]:
    """The referral's content envelope for the operator's browser (audited `referral.sealed_read`
    with the purpose); `Forbidden` (`no_welfare_grant`) without a live grant, `Gone` once shredded."""
    now = ctx.clock()
    async with ctx.engine.begin() as conn:
        row = await _referral(conn, person, reference)
        if await _live(conn, session_id, person, reference, now) is None:
            raise Forbidden("No welfare check is open for this referral in this session", reason="no_welfare_grant")
        reply = sealed_of(row)
        await record(conn, actor=person.id, action="referral.sealed_read", reference=reference, at=now,
                     detail={"person": person.as_dict(), "purpose": "welfare_check", "via": "page"})
    return {k: reply[k] for k in ("referral_id", "reference", "content_sealed")}  # never the contacts
