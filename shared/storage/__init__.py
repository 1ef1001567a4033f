"""Storage shared by the services: engines, the outbox, processed ids, migrations.

SQLAlchemy 2 async Core only. Each service owns its own tables, named with the
service as prefix, so the services may share one PostgreSQL database or use one
SQLite file each (the default, under the data directory).
"""
from shared.storage.db import create_engine, default_url, is_postgres, is_sqlite, ping
from shared.storage.migrate import current_revision, head_revision, upgrade
from shared.storage.outbox import (
    OutgoingMessage, backlog, claim_batch, enqueue, mark_sent, purge_sent, record_failure,
)
from shared.storage.processed import claim, process_once
from shared.storage.tables import UtcDateTime, outbox_table, processed_table

__all__ = [
    "OutgoingMessage", "UtcDateTime", "backlog", "claim", "claim_batch", "create_engine",
    "current_revision", "default_url", "enqueue", "head_revision", "is_postgres", "is_sqlite",
    "mark_sent", "outbox_table", "ping", "process_once", "processed_table", "purge_sent",
    "record_failure", "upgrade",
]
