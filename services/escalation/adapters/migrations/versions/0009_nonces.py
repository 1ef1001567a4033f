"""nonces: signed requests' nonces claimed in the database, so a replay is refused after a
restart and across replicas (issue 18 #9; `shared.storage.nonces.nonce_table`, keep in step)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 00:00:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "escalation_nonces",
        sa.Column("client_id", sa.String(100), nullable=False),
        sa.Column("nonce", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "nonce", name="pk_escalation_nonces"),
    )
    op.create_index("ix_escalation_nonces_expires_at", "escalation_nonces", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_escalation_nonces_expires_at", table_name="escalation_nonces")
    op.drop_table("escalation_nonces")
