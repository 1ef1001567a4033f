"""strategy discussions: escalation's strategy-discussion-by and when one was recorded

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 00:00:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("escalation_referrals") as batch:
        batch.add_column(sa.Column("strategy_by", TS, nullable=True))
        batch.add_column(sa.Column("strategy_recorded_at", TS, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("escalation_referrals") as batch:
        batch.drop_column("strategy_recorded_at")
        batch.drop_column("strategy_by")
