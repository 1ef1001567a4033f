"""The notifier service's tables (all named `notifier_*`); change them only with a new migration."""
from __future__ import annotations

from sqlalchemy import MetaData

from shared.storage.tables import outbox_table, processed_table

SERVICE = "notifier"

metadata = MetaData()

outbox = outbox_table(metadata, SERVICE)
processed = processed_table(metadata, SERVICE)
