"""Alembic migrations of the escalation service (run by shared.storage.migrate.upgrade)."""
