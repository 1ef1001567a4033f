"""The notifier service's tables (all named `notifier_*`); change them only with a new migration."""
from __future__ import annotations

from sqlalchemy import Boolean, Column, Index, Integer, MetaData, String, Table, UniqueConstraint

from shared.storage.tables import ID_TYPE, UtcDateTime, common_tables

SERVICE = "notifier"

metadata = MetaData()

outbox, processed, audit, audit_head, audit_checkpoints = common_tables(metadata, SERVICE)

# One row per notification and delivery key (`email`, `teams`, `email.2`, `none`):
# its lifecycle state. No address, no content: ids, codes and times only.
deliveries = Table(
    f"{SERVICE}_deliveries", metadata,
    Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    Column("notification_id", String(64), nullable=False),
    Column("channel", String(40), nullable=False),
    Column("referral_id", String(64), nullable=False),
    Column("reference", String(40), nullable=False),
    Column("template", String(40), nullable=False),
    Column("audience", String(60), nullable=False),
    Column("priority", String(10), nullable=False),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("reason", String(100), nullable=True),
    Column("fallback_of", String(40), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("first_attempt_at", UtcDateTime(), nullable=True),
    Column("next_attempt_at", UtcDateTime(), nullable=True),
    Column("delivered_at", UtcDateTime(), nullable=True),
    UniqueConstraint("notification_id", "channel", name=f"{SERVICE}_deliveries_notification_channel_key"),
    Index(f"ix_{SERVICE}_deliveries_reference", "reference"),
)

# The notifier's own record of each referral's holding instructions (DESIGN §4).
holds = Table(
    f"{SERVICE}_holds", metadata,
    Column("referral_id", String(64), primary_key=True),
    Column("reference", String(40), nullable=False),
    Column("no_further_sharing", Boolean, nullable=False),
    Column("no_family_contact", Boolean, nullable=False),
    Column("feedback_released", Boolean, nullable=False),
    Column("guardians_released", Boolean, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)
