"""two tracks: when each agency closed its own track; a referral closed before is mapped
onto both tracks closed at its close time

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 00:00:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("escalation_referrals") as batch:
        batch.add_column(sa.Column("la_closed_at", TS, nullable=True))
        batch.add_column(sa.Column("ctp_closed_at", TS, nullable=True))
    op.execute("UPDATE escalation_referrals SET la_closed_at = closed_at, ctp_closed_at = closed_at "
               "WHERE closed_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("escalation_referrals") as batch:
        batch.drop_column("ctp_closed_at")
        batch.drop_column("la_closed_at")
