"""Timer firing rules: the errors a firing raises and when a failed firing is retried."""
from __future__ import annotations

from datetime import datetime, timedelta

MAX_RETRY_S = 3600.0


class UnknownTimerKind(Exception):
    """A timer row this version cannot fire (retried, then marked failed)."""


class MissingRecord(Exception):
    """A timer refers to a referral or alert that does not exist."""


def retry_at(now: datetime, attempts: int, base_s: float) -> datetime:
    """The next try after `attempts` failed firings: `base_s` doubling per attempt, at most an hour."""
    return now + timedelta(seconds=min(base_s * 2 ** (attempts - 1), MAX_RETRY_S))
