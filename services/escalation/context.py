"""What escalation's handlers need, wired once by bootstrap: the settings, the injected
clock and the HTTP signature nonce cache (and the sealing keys the settings name)."""
from __future__ import annotations

from dataclasses import dataclass, field

from nacl.public import PublicKey

from shared.clock import Clock
from shared.config import EscalationTimings, Settings
from shared.crypto import public_key_from_b64
from shared.httpsig import NonceCache


@dataclass
class Context:
    settings: Settings
    clock: Clock
    nonces: NonceCache = field(default_factory=NonceCache)

    @property
    def timings(self) -> EscalationTimings:
        return self.settings.file.escalation

    def team_keys(self, la_code: str, force: str) -> dict[str, PublicKey]:
        """Active sealing keys of the referral's teams, the LA's and the force's (what a control
        room's outcome notes are sealed to); an organisation no longer configured adds none."""
        orgs = (self.settings.local_authority(la_code), self.settings.force(force))
        return {k.key_id: public_key_from_b64(k.public_key) for org in orgs if org is not None
                for k in org.active_keys}
