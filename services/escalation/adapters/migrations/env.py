from services.escalation.adapters.tables import SERVICE, metadata
from shared.storage.alembic_env import run_migrations

run_migrations(SERVICE, metadata)
