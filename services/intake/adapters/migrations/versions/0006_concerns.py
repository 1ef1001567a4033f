"""concerns: each out-of-hours concern the LA raises for its force's control room (category,
when, by whom; never what it is about)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 00:00:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "intake_concerns",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("referral_id", sa.String(36), nullable=False),
        sa.Column("reference", sa.String(20), nullable=False),
        sa.Column("category", sa.String(20), nullable=False),
        sa.Column("raised_at", TS, nullable=False),
        sa.Column("raised_by", sa.String(100), nullable=False),
    )
    op.create_index("ix_intake_concerns_referral_id", "intake_concerns", ["referral_id"])


def downgrade() -> None:
    op.drop_index("ix_intake_concerns_referral_id", table_name="intake_concerns")
    op.drop_table("intake_concerns")
