"""Prometheus metrics shared by the services (served on `/metrics`).

Label values are routing keys, queue names, reasons and outcomes from fixed sets —
never a reference, a name or an address.
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_PUBLISHED = Counter(
    "safeguard_messages_published_total", "Messages confirmed by the broker", ["routing_key", "outcome"]
)
MESSAGES_CONSUMED = Counter(
    "safeguard_messages_consumed_total", "Messages taken from a queue", ["queue", "outcome"]
)
HANDLER_SECONDS = Histogram(
    "safeguard_handler_seconds", "Time a consumer's handler took", ["queue"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
GROUP_COMMIT_SIZE = Histogram(
    "safeguard_group_commit_size", "Effects committed together in one transaction (shared.storage.group)",
    ["group"], buckets=(1, 2, 4, 8, 16, 32, 64),
)
GROUP_COMMIT_SPLIT = Counter(
    "safeguard_group_commit_split_total",
    "Groups rolled back because one effect failed, then run one by one", ["group"],
)
MESSAGES_PARKED = Counter("safeguard_messages_parked_total", "Messages moved to a parking queue", ["queue", "reason"])
OUTBOX_PUBLISHED = Counter("safeguard_outbox_published_total", "Outbox rows confirmed and marked sent")
OUTBOX_FAILURES = Counter("safeguard_outbox_failures_total", "Outbox publish failures", ["reason"])
OUTBOX_BACKLOG = Gauge("safeguard_outbox_backlog", "Unsent outbox rows", ["service"])
OUTBOX_OLDEST_AGE = Gauge("safeguard_outbox_oldest_age_seconds", "Age of the oldest unsent outbox row", ["service"])
BROKER_NODE = Gauge(
    "safeguard_broker_node", "1 for the RabbitMQ node (host:port) a connection is on, 0 for its other nodes",
    ["connection", "node"],
)
