"""A referral's clocks as people read them (pure; DESIGN §4): acknowledge-by, decide-by
(= acknowledge-by), strategy-discussion-by (60 minutes of wall-clock time after an immediate
risk, from receipt or from an `immediate_protection` decision) and checks-due-by, each running,
met (on time or late) or stopped because its track closed; "3 h 5 min left" or "overdue by 2 h";
and the order of the case list: overdue first, then the nearest deadline."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.clock import LONDON

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


@dataclass(frozen=True)
class Clock:
    key: str  # acknowledge_by | decide_by | strategy_discussion_by | checks_due_by
    label: str
    due: datetime
    done_at: datetime | None = None  # the action that stops it
    closed_at: datetime | None = None  # its track closed first

    def running(self) -> bool:
        return self.done_at is None and self.closed_at is None

    def overdue(self, now: datetime) -> bool:
        return self.running() and now > self.due

    def state(self, now: datetime) -> str:
        if self.done_at is not None:
            return "met" if self.done_at <= self.due else "met_late"
        if self.closed_at is not None:
            return "stopped"
        return "overdue" if now > self.due else "running"

    def text(self, now: datetime) -> str:
        """What the clock says now, in words."""
        state = self.state(now)
        if state == "running":
            return f"{duration(self.due - now)} left"
        if state == "overdue":
            return f"Overdue by {duration(now - self.due)}"
        if state == "stopped":
            return "Stopped: the track is closed"
        assert self.done_at is not None
        late = "" if state == "met" else f", {duration(self.done_at - self.due)} late"
        return f"Done {when(self.done_at)}{late}"


def clocks_of(row: Any, strategy_minutes: float) -> list[Clock]:
    """The clocks of a referral row (attribute access; metadata columns only)."""
    la_closed, ctp_closed = row.la_closed_at, row.ctp_closed_at
    out = [Clock("acknowledge_by", "Acknowledge by", row.acknowledge_by, row.acknowledged_at, la_closed),
           Clock("decide_by", "Decide by", row.acknowledge_by, row.decided_at, la_closed)]
    raised = row.received_at if row.immediate_risk else (
        row.decided_at if row.pathway == "immediate_protection" else None)
    if raised is not None:
        out.append(Clock("strategy_discussion_by", "Strategy discussion by",
                         raised + timedelta(minutes=strategy_minutes), row.strategy_at, la_closed))
    out.append(Clock("checks_due_by", "CTP checks due by", row.checks_due_by, row.checks_at, ctp_closed))
    return out


def strategy_due(row: Any) -> bool:
    """A strategy discussion is called for (an immediate risk) and not yet recorded."""
    return row.strategy_at is None and (row.immediate_risk or row.pathway == "immediate_protection")


def next_due(clocks: Sequence[Clock]) -> datetime | None:
    """The earliest deadline of the clocks still running (overdue ones are the earliest)."""
    return min((c.due for c in clocks if c.running()), default=None)


def urgency_key(clocks: Sequence[Clock], received_at: datetime) -> tuple[int, float]:
    """Sort key of the case list: a running clock's earliest deadline first (so overdue first),
    then the referrals whose clocks have all stopped, newest first."""
    due = next_due(clocks)
    return (0, due.timestamp()) if due is not None else (1, -received_at.timestamp())


def duration(span: timedelta) -> str:
    """"2 days 3 h", "2 h 5 min", "5 min", "less than a minute" (rounded down)."""
    minutes = int(abs(span).total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} day{'s' if days != 1 else ''}" + (f" {hours} h" if hours else "")
    if hours:
        return f"{hours} h" + (f" {mins} min" if mins else "")
    return f"{mins} min" if mins else "less than a minute"


def when(at: datetime) -> str:
    """A time as GOV.UK writes it, in Europe/London: "3 March 2026 at 2:05pm"."""
    t = at.astimezone(LONDON)
    hour = t.hour % 12 or 12
    clock = "midday" if (t.hour, t.minute) == (12, 0) else (
        "midnight" if (t.hour, t.minute) == (0, 0) else f"{hour}:{t.minute:02d}{'am' if t.hour < 12 else 'pm'}")
    return f"{t.day} {MONTHS[t.month - 1]} {t.year} at {clock}"
