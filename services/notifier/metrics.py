"""The notifier's Prometheus metrics (label values from fixed sets: channels, statuses, subscription ids)."""
from __future__ import annotations

from prometheus_client import Counter

NOTIFICATIONS = Counter("safeguard_notifications_total", "Notification deliveries by channel and status",
                        ["channel", "status"])
DEFERRED = Counter("safeguard_notifications_deferred_total",
                   "Routine deliveries put back through a delay queue because the channel's pacing queue was long",
                   ["channel"])
# Status callbacks per subscription (its configured id: a bounded, config-defined label) and
# outcome of each attempt: delivered, temporary-failure (retried), permanent-failure, technical-failure.
CALLBACKS = Counter("safeguard_callbacks_total", "Status-callback attempts by subscription and outcome",
                    ["subscription", "outcome"])
