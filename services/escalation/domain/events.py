"""Escalation's events now live in shared/messages.py; re-exported here until callers move."""
from shared.messages import (  # noqa: F401
    AlertAcknowledged, AlertEscalated, AlertEvent, AlertRaised, DEADLINE_EVENTS, DeadlineBreached, DeadlineEvent,
    DeadlineReminder,
)
