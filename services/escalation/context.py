"""What escalation's handlers need, wired once by bootstrap: the settings, the injected
clock, the LA calendars (built on first use) and the HTTP signature nonce cache."""
from __future__ import annotations

from dataclasses import dataclass, field

from shared.clock import Clock
from shared.config import EscalationTimings, Settings
from shared.httpsig import NonceCache
from shared.worktime import WorkingCalendar, WorkingHours


@dataclass
class Context:
    settings: Settings
    clock: Clock
    nonces: NonceCache = field(default_factory=NonceCache)
    _calendars: dict[str, WorkingCalendar] = field(default_factory=dict)

    @property
    def timings(self) -> EscalationTimings:
        return self.settings.file.escalation

    def calendar(self, la_code: str) -> WorkingCalendar:
        if la_code not in self._calendars:
            la = self.settings.local_authority(la_code)
            hours = WorkingHours() if la is None else WorkingHours(
                start=la.working_hours.start, end=la.working_hours.end,
                weekdays=frozenset(la.working_hours.weekdays), closures=frozenset(la.working_hours.closures))
            self._calendars[la_code] = WorkingCalendar(hours)
        return self._calendars[la_code]
