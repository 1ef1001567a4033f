"""two tracks: the LA's and CTP Prevent's close on intake_referrals; a referral closed
before is mapped onto both tracks closed at its close time

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
COLUMNS = (("la_closed_at", TS), ("la_closed_by", sa.String(100)),
           ("ctp_closed_at", TS), ("ctp_closed_by", sa.String(100)))


def upgrade() -> None:
    with op.batch_alter_table("intake_referrals") as batch:
        for name, type_ in COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
    op.execute("UPDATE intake_referrals SET la_closed_at = closed_at, la_closed_by = closed_by, "
               "ctp_closed_at = closed_at, ctp_closed_by = closed_by WHERE closed_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("intake_referrals") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
