"""What the handlers need, wired once by bootstrap: settings, the database, the relay's
wake-up, the clock, the authenticator and the rate limiters, and the sealing keys the settings
name."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from nacl.public import PublicKey
from sqlalchemy.ext.asyncio import AsyncEngine

from services.intake.adapters import tables
from services.intake.auth import Authenticator, RateLimiter
from services.intake.ratelimit import SharedRateLimiter
from services.intake.domain.errors import SchemaInvalid
from services.intake.recipients import team_keys
from services.intake.rejections import RejectionTally
from shared.clock import Clock, utcnow
from shared.config import Client, Settings
from shared.crypto import public_key_from_b64
from shared.storage.group import GroupCommit, writes_batched
from shared.web.identity import Person


@dataclass
class Context:
    settings: Settings
    engine: AsyncEngine
    notify: Callable[[], None] = lambda: None
    clock: Clock = utcnow
    # None where nothing is authenticated (the `safeguard report` CLI reads the database directly).
    auth: Authenticator | None = None
    limiter: SharedRateLimiter | None = None  # per client, shared by every replica
    address_limiter: RateLimiter | None = None  # before authentication, per client address, per replica
    rejections: RejectionTally = field(default_factory=RejectionTally)
    # Concurrent submissions share transactions (shared.storage.group): their reference
    # numbers in one, their stores (rows, outbox messages, audit entries) in another.
    numbers: GroupCommit = field(init=False)
    stores: GroupCommit = field(init=False)

    def __post_init__(self) -> None:
        self.numbers = GroupCommit(self.engine, "intake.numbers")
        self.stores = GroupCommit(self.engine, "intake.stores", workers=2,
                                  around=writes_batched(tables.audit, tables.outbox))

    def principal(self, client_id: str, person: Person | None = None) -> Client | Person | None:
        """Who acts, for the access rules: a configured client (a staff system, also when it names
        a person On-Behalf-Of), or the signed-in person whose id `client_id` is (the pages)."""
        return self.settings.client(client_id) or (person if person is not None and person.id == client_id else None)

    def team_keys(self, la_code: str, force: str) -> dict[str, PublicKey]:
        """Active sealing keys of the recipient teams: the LA's and the force's (`recipients.team_keys`);
        SchemaInvalid when either names no configured organisation."""
        keys, unknown = team_keys(self.settings, la_code, force)
        if unknown:
            raise SchemaInvalid([{"loc": name, "type": "unknown_organisation", "msg": "Unknown organisation"}
                                 for name in unknown], reason="unknown_organisation")
        return keys

    def notifier_key(self) -> dict[str, PublicKey]:
        svc = self.settings.file.services["notifier"]
        if not (svc.sealing_public_key and svc.sealing_key_id):
            return {}
        return {svc.sealing_key_id: public_key_from_b64(svc.sealing_public_key)}
