"""strategy discussion: the LA's record on intake_referrals (notes sealed, never in clear)

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
COLUMNS = (
    ("strategy_at", TS), ("strategy_by", sa.String(100)), ("strategy_held_at", TS),
    ("strategy_decision", sa.String(40)), ("strategy_agencies", sa.JSON()),
    ("strategy_legal_advice_sought", sa.Boolean()), ("strategy_parents_informed", sa.Boolean()),
    ("strategy_family_contact_lifted", sa.Boolean()), ("strategy_notes_sealed", sa.JSON()),
)


def upgrade() -> None:
    with op.batch_alter_table("intake_referrals") as batch:
        for name, type_ in COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("intake_referrals") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
