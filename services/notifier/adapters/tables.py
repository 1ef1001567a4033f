"""The notifier service's tables (all named `notifier_*`); change them only with a new migration."""
from __future__ import annotations

from sqlalchemy import MetaData

from shared.audit import audit_table, checkpoint_table, head_table
from shared.storage.tables import outbox_table, processed_table

SERVICE = "notifier"

metadata = MetaData()

outbox = outbox_table(metadata, SERVICE)
processed = processed_table(metadata, SERVICE)
audit = audit_table(metadata, SERVICE)
audit_head = head_table(metadata, SERVICE)
audit_checkpoints = checkpoint_table(metadata, SERVICE)
