"""Alembic migrations of the notifier service (run by shared.storage.migrate.upgrade)."""
