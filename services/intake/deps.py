"""What the handlers need, wired once by bootstrap: settings, the database, the relay's
wake-up, the clock, the authenticator and the rate limiter; plus the helpers every
handler uses to seal, audit and publish."""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nacl.public import PublicKey
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.intake import metrics
from services.intake.adapters import tables
from services.intake.domain.errors import IntakeError, SchemaInvalid
from shared import audit, bus
from shared.config import Settings
from shared.crypto import public_key_from_b64, seal
from shared.messages import Message
from shared.storage import OutgoingMessage, enqueue
from shared.worktime import WorkingCalendar, WorkingHours


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Deps:
    settings: Settings
    engine: AsyncEngine
    notify: Callable[[], None] = lambda: None
    clock: Callable[[], datetime] = utcnow
    auth: Any = None  # services.intake.auth.Authenticator
    limiter: Any = None  # services.intake.auth.RateLimiter
    _calendars: dict[str, WorkingCalendar] = field(default_factory=dict)

    def calendar(self, la_code: str) -> WorkingCalendar:
        if la_code not in self._calendars:
            la = self.settings.local_authority(la_code)
            hours = WorkingHours()
            if la is not None:
                wh = la.working_hours
                hours = WorkingHours(start=wh.start, end=wh.end, weekdays=frozenset(wh.weekdays),
                                     closures=frozenset(wh.closures))
            self._calendars[la_code] = WorkingCalendar(hours)
        return self._calendars[la_code]

    def team_keys(self, la_code: str, force: str) -> dict[str, PublicKey]:
        """Active sealing keys of the recipient teams: the LA's and the force's."""
        la, fo = self.settings.local_authority(la_code), self.settings.force(force)
        missing = [{"loc": name, "type": "unknown_organisation", "msg": "Unknown organisation"}
                   for name, org in (("la_code", la), ("force", fo)) if org is None]
        if missing:
            raise SchemaInvalid(missing, reason="unknown_organisation")
        keys = [*la.active_keys, *fo.active_keys]  # type: ignore[union-attr]
        return {k.key_id: public_key_from_b64(k.public_key) for k in keys}

    def notifier_key(self) -> dict[str, PublicKey]:
        svc = self.settings.file.services["notifier"]
        if not (svc.sealing_public_key and svc.sealing_key_id):
            return {}
        return {svc.sealing_key_id: public_key_from_b64(svc.sealing_public_key)}


def seal_json(value: Any, referral_id: str, recipients: dict[str, PublicKey]) -> dict[str, Any]:
    data = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()
    return seal(data, referral_id=referral_id, recipients=recipients)


async def record(conn: AsyncConnection, *, actor: str | None, action: str, at: datetime,
                 reference: str | None = None, outcome: str = "ok", detail: dict | None = None) -> int:
    """One audit entry in the caller's transaction. `detail`: codes and ids only."""
    return await audit.record(conn, tables.audit, actor=(actor or "unknown")[:100], action=action,
                              reference=reference, outcome=outcome, detail=detail, at=at)


async def audit_rejection(deps: Deps, *, actor: str | None, action: str, reference: str | None,
                          err: IntakeError, via: str) -> None:
    metrics.REJECTED.labels(action=action, reason=err.reason, via=via).inc()
    detail: dict[str, Any] = {"reason": err.reason, "status": err.status, "via": via}
    if actor:
        detail["client_id"] = actor[:100]
    if isinstance(err, SchemaInvalid):
        detail["fields"] = err.fields[:50]
    async with deps.engine.begin() as conn:
        await record(conn, actor=actor, action=action, reference=reference, outcome="rejected",
                     detail=detail, at=deps.clock())


async def publish(conn: AsyncConnection, event: Message, *, correlation_id: str | None, at: datetime) -> None:
    """Queue `event` in the outbox, in the caller's transaction."""
    await enqueue(conn, tables.outbox, OutgoingMessage(
        bus.EVENTS, event.routing_key, event.to_bytes(), message_id=str(uuid.uuid4()),
        correlation_id=correlation_id), at)
