"""deliveries and holds: per-channel delivery lifecycle and the notifier's own hold record

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 00:00:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.storage.tables import ID_TYPE

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notifier_deliveries",
        sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True),
        sa.Column("notification_id", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(40), nullable=False),
        sa.Column("referral_id", sa.String(64), nullable=False),
        sa.Column("reference", sa.String(40), nullable=False),
        sa.Column("template", sa.String(40), nullable=False),
        sa.Column("audience", sa.String(60), nullable=False),
        sa.Column("priority", sa.String(10), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(100), nullable=True),
        sa.Column("fallback_of", sa.String(40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("notification_id", "channel", name="notifier_deliveries_notification_channel_key"),
    )
    op.create_index("ix_notifier_deliveries_reference", "notifier_deliveries", ["reference"])
    op.create_table(
        "notifier_holds",
        sa.Column("referral_id", sa.String(64), primary_key=True),
        sa.Column("reference", sa.String(40), nullable=False),
        sa.Column("no_further_sharing", sa.Boolean(), nullable=False),
        sa.Column("no_family_contact", sa.Boolean(), nullable=False),
        sa.Column("feedback_released", sa.Boolean(), nullable=False),
        sa.Column("guardians_released", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("notifier_holds")
    op.drop_index("ix_notifier_deliveries_reference", table_name="notifier_deliveries")
    op.drop_table("notifier_deliveries")
