"""The `safeguard keys init` config made for a load run of the services as processes (the
cluster run and the fault-injection run)."""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from shared.clock import LONDON


def off_day() -> int:
    """A weekday (0 = Monday) that is neither today nor the next two days in Europe/London."""
    return (datetime.now(LONDON).weekday() + 3) % 7


def load_run_config(path: Path, *, reescalate_minutes: float) -> None:
    """Rewrite the `keys init` config at `path` for a load run: no per-client rate limit,
    email-only routes (Teams webhooks are rate-limited to 4/s each, which would be the whole
    run), a working week of one day (`off_day()`), so every referral is out of hours and
    raises a control-room alert, and re-escalation after seconds, not minutes."""
    text = re.sub(r', teams_webhook = "[^"]*"', "", path.read_text())
    text = text.replace("[system]\n", "[system]\nrate_limit_per_minute = 1000000\n", 1)
    text = text.replace('end = "17:00:00"\n', f'end = "17:00:00"\nweekdays = [{off_day()}]\n', 1)
    path.write_text(text + f"\n[escalation]\nalert_reescalate_minutes = {reescalate_minutes}\n")
