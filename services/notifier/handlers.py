"""The notifier's message handlers: holds from intake's events, requests from escalation.

One `notifier.requests` queue carries `notification.requested` (escalation), retry and
fallback copies `notifier.retry.<s>s` (notifier itself), and intake's
`referral.received` / `referral.feedback_released` (the notifier's own hold record).
Per delivery key the state row is committed as `sending` before the channel is called
and the outcome after (see domain/lifecycle.py for the one at-least-once window).
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from nacl.public import PrivateKey
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notifier.adapters import effects, repository as repo
from services.notifier.adapters.rendering import Renderer, RenderError
from services.notifier.delivery import FALLBACK, NO_TARGET, Channel, Delivery
from services.notifier.domain import recipients
from services.notifier.domain.guard import HoldRecord, decide
from services.notifier.domain.lifecycle import Status, is_final
from services.notifier.domain.recipients import ResolutionError, Target
from services.notifier.domain.retry import RetryPolicy
from shared import bus
from shared.config import Settings
from shared.crypto import CryptoError, open_sealed
from shared.logging import get_logger
from shared.messages import FeedbackReleased, NotificationRequested, ReferralReceived

log = get_logger(__name__)
RETRY_PREFIX = "notifier.retry."
PRODUCERS = {ReferralReceived.routing_key: "intake", FeedbackReleased.routing_key: "intake",
             NotificationRequested.routing_key: "escalation"}


class RetryCopy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    channel: str
    attempt: int
    request: NotificationRequested


def _parse(model: type[BaseModel], body: bytes) -> Any:
    try:
        return model.model_validate_json(body)
    except ValidationError:
        raise bus.Reject("schema_invalid") from None


class Notifier(Delivery):
    def __init__(self, engine: AsyncEngine, settings: Settings, renderer: Renderer, channels: Mapping[str, Channel],
                 *, policy: RetryPolicy, sealing_key: PrivateKey | None, sealing_key_id: str | None,
                 notify: Callable[[], None] = lambda: None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 sending_lease: timedelta = timedelta(seconds=45), defer_after_s: float = 2.0) -> None:
        self.engine, self.settings, self.renderer, self.channels = engine, settings, renderer, dict(channels)
        self.policy, self.sealing_key, self.sealing_key_id = policy, sealing_key, sealing_key_id
        self.notify, self.clock = notify, clock
        self.sending_lease, self.defer_after_s = sending_lease, defer_after_s
        self._locks: dict[tuple[str, str], list[Any]] = {}

    # --- dispatch ----------------------------------------------------------------------
    async def handle(self, msg: bus.BusMessage) -> None:
        key = msg.routing_key
        if key.startswith(RETRY_PREFIX):
            expected = "notifier"
        elif key in PRODUCERS:
            expected = PRODUCERS[key]
        else:
            raise bus.Reject("unexpected_routing_key")
        if msg.producer != expected:
            raise bus.Reject("producer_not_allowed_for_key")
        if key == ReferralReceived.routing_key:
            await self.on_received(_parse(ReferralReceived, msg.body))
        elif key == FeedbackReleased.routing_key:
            await self.on_feedback_released(_parse(FeedbackReleased, msg.body))
        elif key == NotificationRequested.routing_key:
            await self.on_request(_parse(NotificationRequested, msg.body), attempt=0, only=None)
        else:
            copy = _parse(RetryCopy, msg.body)
            await self.on_request(copy.request, attempt=copy.attempt, only=copy.channel)

    # --- holds -------------------------------------------------------------------------
    async def on_received(self, ev: ReferralReceived) -> None:
        now = self.clock()
        rec = HoldRecord.on_received(ev.referral_id, no_further_sharing=ev.holding.no_further_sharing,
                                     no_family_contact=ev.holding.no_family_contact)
        async with self.engine.begin() as conn:
            if await repo.insert_hold_if_absent(conn, rec, ev.reference, now):
                await effects.audit_record(conn, effects.tables.audit, actor=effects.ACTOR, action="hold_recorded",
                                           reference=ev.reference, at=now, detail={
                                               "no_further_sharing": rec.no_further_sharing,
                                               "no_family_contact": rec.no_family_contact})

    async def on_feedback_released(self, ev: FeedbackReleased) -> None:
        now = self.clock()
        async with self.engine.begin() as conn:
            old = await repo.load_hold(conn, ev.referral_id)
            new = (old.on_feedback_released(family_contact_lifted=ev.family_contact_lifted, audiences=ev.audiences)
                   if old else HoldRecord.unknown_then_released(
                       ev.referral_id, family_contact_lifted=ev.family_contact_lifted, audiences=ev.audiences))
            if new != old:
                await repo.save_hold(conn, new, ev.reference, now)
                await effects.audit_record(conn, effects.tables.audit, actor=effects.ACTOR, action="hold_updated",
                                           reference=ev.reference, at=now, detail={
                                               "no_family_contact": new.no_family_contact,
                                               "guardians_released": new.guardians_released})

    # --- requests ----------------------------------------------------------------------
    async def on_request(self, req: NotificationRequested, *, attempt: int, only: str | None) -> None:
        async with self.engine.connect() as conn:
            record = await repo.load_hold(conn, req.referral_id)
            done = await repo.find_delivery(conn, req.notification_id, NO_TARGET)
        if done is not None and is_final(done.status):
            return  # refused or failed before any channel: final for the whole notification
        verdict = decide(audience=req.audience, template=req.template, record=record,
                         request_no_family_contact=req.holding.no_family_contact,
                         request_no_further_sharing=req.holding.no_further_sharing)
        if not verdict.allowed:
            return await self._finish(req, only or NO_TARGET, NO_TARGET, Status.REFUSED, verdict.reason)
        try:
            kind = recipients.audience_kind(req.audience)
            if not self.renderer.supports(req.template, kind):
                raise ResolutionError("technical", "unknown_template")
            rendered = self.renderer.render(template=req.template, kind=kind, reference=req.reference,
                                            times=req.times, minimal=verdict.minimal, urgent=req.priority == "urgent")
            targets = self._targets(req, kind)
        except (ResolutionError, RenderError) as exc:
            status = Status.PERMANENT_FAILURE if getattr(exc, "kind", "") == "permanent" else Status.TECHNICAL_FAILURE
            return await self._finish(req, only or NO_TARGET, NO_TARGET, status, exc.reason)
        available = {t.channel for t in targets}
        if only is not None:
            base = only.removesuffix(FALLBACK)
            targets = [Target(only, t.channel, t.address, t.audience_kind) for t in targets if t.key == base]
            if not targets:
                return await self._finish(req, only, base, Status.TECHNICAL_FAILURE, "target_gone")
        await asyncio.gather(*(self._deliver(req, t, attempt, rendered, available) for t in targets))

    def _targets(self, req: NotificationRequested, kind: str) -> list[Target]:
        enabled = set(self.channels)
        if kind != "team":
            return recipients.contact_targets(req.audience, self._open_contacts(req), enabled)
        scope, _, role = req.audience.partition(":")
        org = self.settings.local_authority(req.la_code) if scope == "la" else self.settings.force(req.force)
        return recipients.route_targets(org.contacts.get(role) if org else None, enabled)

    def _open_contacts(self, req: NotificationRequested) -> dict[str, Any]:
        if req.contacts_sealed is None:
            raise ResolutionError("technical", "contacts_missing")
        if self.sealing_key is None or not self.sealing_key_id:
            raise ResolutionError("technical", "contacts_key_unavailable")
        try:
            raw = open_sealed(req.contacts_sealed, referral_id=req.referral_id, key_id=self.sealing_key_id,
                              private_key=self.sealing_key)
            contacts = json.loads(raw)
        except (CryptoError, ValueError):
            raise ResolutionError("technical", "contacts_unopenable") from None
        if not isinstance(contacts, dict):
            raise ResolutionError("technical", "contacts_invalid")
        return contacts

