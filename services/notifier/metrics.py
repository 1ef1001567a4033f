"""The notifier's Prometheus metrics (label values from fixed sets: channels, statuses)."""
from __future__ import annotations

from prometheus_client import Counter

NOTIFICATIONS = Counter("safeguard_notifications_total", "Notification deliveries by channel and status",
                        ["channel", "status"])
DEFERRED = Counter("safeguard_notifications_deferred_total",
                   "Routine deliveries put back through a delay queue because the channel's pacing queue was long",
                   ["channel"])
