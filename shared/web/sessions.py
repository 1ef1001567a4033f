"""Server-side sessions for the pages (DESIGN §3.7): the browser holds only a random id in an
HttpOnly, SameSite=Lax cookie (`Secure` whenever the request's scheme — the forwarded one
from a trusted proxy — is https); the table holds its SHA-256, the person, the CSRF token
and the times. 30 minutes idle and 12 hours absolute; signing out deletes the row.

A sign-in in progress is a row too (`pending`: the OIDC state, nonce, PKCE verifier and the
page to return to, 10 minutes); completing it makes a new row with a new id (no fixation).
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import JSON, Column, MetaData, String, Table
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.storage.tables import UtcDateTime
from shared.web.identity import Person

IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=12)
PENDING = timedelta(minutes=10)
TOUCH_EVERY = timedelta(seconds=60)


def session_table(metadata: MetaData, prefix: str) -> Table:
    """`<prefix>_web_sessions` (created by each service's migration; keep in step)."""
    return Table(
        f"{prefix}_web_sessions", metadata,
        Column("id_hash", String(64), primary_key=True),
        Column("person", JSON(none_as_null=True), nullable=True),  # None while a sign-in is pending
        Column("pending", JSON(none_as_null=True), nullable=True),
        Column("csrf_token", String(64), nullable=False),
        Column("created_at", UtcDateTime(), nullable=False),
        Column("last_seen_at", UtcDateTime(), nullable=False),
        Column("expires_at", UtcDateTime(), nullable=False, index=True),
    )



def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    id: str
    person: Person | None
    pending: dict[str, Any] | None
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


class SessionStore:
    def __init__(self, engine: AsyncEngine, table: Table) -> None:
        self.engine, self.table = engine, table

    async def _insert(self, now: datetime, *, person: Person | None, pending: dict | None,
                      lifetime: timedelta) -> Session:
        session_id = secrets.token_urlsafe(32)
        session = Session(session_id, person, pending, secrets.token_urlsafe(32), now, now, now + lifetime)
        async with self.engine.begin() as conn:
            await conn.execute(sa.insert(self.table).values(
                id_hash=_hash(session_id), person=person.as_dict() if person else None, pending=pending,
                csrf_token=session.csrf_token, created_at=now, last_seen_at=now, expires_at=session.expires_at))
        return session

    async def begin_sign_in(self, now: datetime, pending: dict[str, Any]) -> Session:
        return await self._insert(now, person=None, pending=pending, lifetime=PENDING)

    async def signed_in(self, now: datetime, person: Person) -> Session:
        return await self._insert(now, person=person, pending=None, lifetime=ABSOLUTE)

    async def get(self, session_id: str | None, now: datetime) -> Session | None:
        """The live session with this id (touched at most once a minute); None when absent,
        expired (absolute or idle) or malformed."""
        if not session_id or len(session_id) > 100:
            return None
        t = self.table
        async with self.engine.begin() as conn:
            row = (await conn.execute(sa.select(t).where(t.c.id_hash == _hash(session_id)))).first()
            if row is None:
                return None
            idle_out = row.person is not None and now - row.last_seen_at > IDLE
            if now >= row.expires_at or idle_out:
                await conn.execute(sa.delete(t).where(t.c.id_hash == row.id_hash))
                return None
            last_seen = row.last_seen_at
            if row.person is not None and now - last_seen >= TOUCH_EVERY:
                last_seen = now
                await conn.execute(sa.update(t).where(t.c.id_hash == row.id_hash).values(last_seen_at=now))
        person = Person.from_dict(row.person) if row.person else None
        return Session(session_id, person, row.pending, row.csrf_token, row.created_at, last_seen, row.expires_at)

    async def end(self, session_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(self.table).where(self.table.c.id_hash == _hash(session_id)))

    async def purge(self, now: datetime) -> int:
        """Delete expired rows (absolute or idle); the number deleted."""
        t = self.table
        async with self.engine.begin() as conn:
            # a pending sign-in lives 10 minutes, under the idle limit: one rule covers both
            result = await conn.execute(sa.delete(t).where((t.c.expires_at <= now) | (t.c.last_seen_at < now - IDLE)))
        return result.rowcount or 0
