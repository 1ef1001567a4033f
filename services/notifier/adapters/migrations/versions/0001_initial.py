"""initial: the notifier outbox and processed-message tables

Revision ID: 0001
Revises:
Create Date: 2025-11-24 00:00:00

"""
from collections.abc import Sequence

from alembic import op

from shared.storage.tables import create_common_tables, drop_common_tables

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_common_tables(op, "notifier")


def downgrade() -> None:
    drop_common_tables(op, "notifier")
