"""reporting codes: the referrer's sector and the child's gender as optional clear codes
(national referral form; performance data only, never free text)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 00:00:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("intake_referrals") as batch:
        batch.add_column(sa.Column("referral_source_sector", sa.String(20), nullable=True))
        batch.add_column(sa.Column("gender", sa.String(20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("intake_referrals") as batch:
        batch.drop_column("gender")
        batch.drop_column("referral_source_sector")
