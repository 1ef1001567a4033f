"""Alembic migrations of the intake service (run by shared.storage.migrate.upgrade)."""
