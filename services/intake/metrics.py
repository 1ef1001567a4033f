"""Intake's Prometheus metrics (label values are code-defined: actions, reason codes, paths)."""
from __future__ import annotations

from prometheus_client import Counter

REJECTED = Counter("safeguard_intake_rejected_total", "Requests and submissions refused, by reason",
                   ["action", "reason", "via"])
ACCEPTED = Counter("safeguard_intake_accepted_total", "Referrals accepted (new, not idempotent replays)", ["via"])
