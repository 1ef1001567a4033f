"""welfare grants: a control-room session's 15-minute access to one referral's sealed content
after the audited welfare-check step (DESIGN §3.7); dropped with the session

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 00:00:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
TABLE = "intake_welfare_grants"
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("session_hash", sa.String(64), sa.ForeignKey("intake_web_sessions.id_hash", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("reference", sa.String(20), primary_key=True),
        sa.Column("person_id", sa.String(100), nullable=False),
        sa.Column("granted_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_index(f"ix_{TABLE}_expires_at", TABLE, ["expires_at"])


def downgrade() -> None:
    op.drop_index(f"ix_{TABLE}_expires_at", table_name=TABLE)
    op.drop_table(TABLE)
