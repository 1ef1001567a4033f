"""What the notifier's handlers need, wired once by bootstrap: the database, settings, the
renderer and channels, the retry policy, the key that opens a request's sealed contacts,
the outbox relay's wake-up, the clock and the delivery timings; plus the two look-ups a
request's recipients come from (the team's configured route, the opened contacts)."""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from datetime import timedelta
from typing import Any

from nacl.public import PrivateKey
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notifier.adapters.channels.base import Channel
from services.notifier.adapters.rendering import Renderer
from services.notifier.domain.recipients import ResolutionError
from services.notifier.domain.retry import RetryPolicy
from shared.clock import Clock, utcnow
from shared.config import Route, Settings
from shared.crypto import CryptoError, open_sealed
from shared.messages import NotificationRequested


def _nothing() -> None:
    return None


@dataclass
class Context:
    engine: AsyncEngine
    settings: Settings
    renderer: Renderer
    channels: dict[str, Channel]
    _: KW_ONLY
    policy: RetryPolicy
    sealing_key: PrivateKey | None
    sealing_key_id: str | None
    notify: Callable[[], None] = _nothing  # the outbox relay's wake-up, after each commit
    clock: Clock = utcnow
    sending_lease: timedelta = timedelta(seconds=45)  # a `sending` row older than this is taken over
    defer_after_s: float = 2.0  # a routine send waiting longer for its pacing slot is deferred

    def __post_init__(self) -> None:
        self.channels = dict(self.channels)

    def route(self, req: NotificationRequested) -> Route | None:
        """The configured route of a team audience (`la:<role>` / `force:<role>`), if any."""
        scope, _, role = req.audience.partition(":")
        org = self.settings.local_authority(req.la_code) if scope == "la" else self.settings.force(req.force)
        return org.contacts.get(role) if org else None

    def open_contacts(self, req: NotificationRequested) -> dict[str, Any]:
        """The request's sealed contact section, opened with the notifier's key (JSON)."""
        if req.contacts_sealed is None:
            raise ResolutionError("technical", "contacts_missing")
        if self.sealing_key is None or not self.sealing_key_id:
            raise ResolutionError("technical", "contacts_key_unavailable")
        try:
            raw = open_sealed(req.contacts_sealed, referral_id=req.referral_id, key_id=self.sealing_key_id,
                              private_key=self.sealing_key, reference=req.reference, section="contacts")
            contacts = json.loads(raw)
        except (CryptoError, ValueError):
            raise ResolutionError("technical", "contacts_unopenable") from None
        if not isinstance(contacts, dict):
            raise ResolutionError("technical", "contacts_invalid")
        return contacts
