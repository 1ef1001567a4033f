"""Escalation's Prometheus metrics (label values from fixed sets: kinds, outcomes)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TIMERS = Gauge("safeguard_escalation_timers", "Escalation timers by kind and status", ["kind", "status"])
TIMERS_FIRED = Counter("safeguard_escalation_timers_fired_total", "Timers fired (or found moot)", ["kind", "outcome"])
TIMER_FAILURES = Counter(
    "safeguard_escalation_timer_failures_total", "Timer firings that raised", ["kind", "final"])
TIMER_LATENESS = Histogram(
    "safeguard_escalation_timer_lateness_seconds", "How late a timer fired after it was due",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
ALERTS_RAISED = Counter("safeguard_escalation_alerts_raised_total", "Control-room alerts raised", ["kind"])
ALERTS_ESCALATED = Counter("safeguard_escalation_alerts_escalated_total", "Alerts raised one level up")
ALERTS_ACKNOWLEDGED = Counter("safeguard_escalation_alerts_acknowledged_total", "Alerts acknowledged", ["via"])
DEADLINES = Counter(
    "safeguard_deadlines_total", "Statutory deadlines met (clock stopped in time) or breached", ["clock", "outcome"])
ALERTS_OPEN = Gauge("safeguard_alerts_open", "Control-room alerts not yet acknowledged", ["kind", "force", "level"])


def count_deadline_met(clock: str, deadline, stopped_at) -> None:
    """Count a clock stopping: `met` when it stopped by its deadline (breaches count when they fire)."""
    if deadline is not None and stopped_at is not None and stopped_at <= deadline:
        DEADLINES.labels(clock=clock, outcome="met").inc()


def set_open_alerts(counts: dict[tuple[str, str, str], int]) -> None:
    ALERTS_OPEN.clear()
    for (kind, force, level), n in counts.items():
        ALERTS_OPEN.labels(kind=kind, force=force, level=level).set(n)


def set_timers(counts: dict[tuple[str, str], int]) -> None:
    """Timers by kind and status; every status of a kind seen is set (0 when none are left)."""
    for kind in {k for k, _ in counts}:
        for status in ("pending", "fired", "cancelled", "failed"):
            TIMERS.labels(kind=kind, status=status).set(counts.get((kind, status), 0))
CONSOLE_STREAMS = Gauge("safeguard_console_streams", "Console live streams (Server-Sent Events) open")
CONSOLE_STREAMS_CLOSED = Counter(
    "safeguard_console_streams_closed_total",
    "Console live streams ended: client_closed (the tab closed), ended (the session's time was up), "
    "shutdown, cancelled, failed", ["how"])
