"""What escalation's handlers need, wired once by bootstrap: the settings, the injected
clock and the HTTP signature nonce cache."""
from __future__ import annotations

from dataclasses import dataclass, field

from shared.clock import Clock
from shared.config import EscalationTimings, Settings
from shared.httpsig import NonceCache


@dataclass
class Context:
    settings: Settings
    clock: Clock
    nonces: NonceCache = field(default_factory=NonceCache)

    @property
    def timings(self) -> EscalationTimings:
        return self.settings.file.escalation
