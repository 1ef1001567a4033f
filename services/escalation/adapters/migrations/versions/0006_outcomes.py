"""outcomes: the LA concern an alert was raised for (one alert per concern) and what the
control room did about an alert (once; its notes sealed, never in clear)

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
COLUMNS = (("concern_id", sa.String(64)), ("outcome_action", sa.String(40)), ("outcome_at", TS),
           ("outcome_by", sa.String(100)), ("outcome_notes_sealed", sa.JSON()))


def upgrade() -> None:
    with op.batch_alter_table("escalation_alerts") as batch:
        for name, type_ in COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
    op.create_index("ix_escalation_alerts_concern_id", "escalation_alerts", ["concern_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_escalation_alerts_concern_id", table_name="escalation_alerts")
    with op.batch_alter_table("escalation_alerts") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
