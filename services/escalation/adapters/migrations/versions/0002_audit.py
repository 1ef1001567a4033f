"""audit: the escalation audit chain, its head row and signed checkpoints

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 00:00:00

"""
from collections.abc import Sequence

from alembic import op

from shared.audit import create_audit_tables, drop_audit_tables

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_audit_tables(op, "escalation")


def downgrade() -> None:
    drop_audit_tables(op, "escalation")
