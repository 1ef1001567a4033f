"""clocks: escalation's view of referrals, durable timers and control-room alerts

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

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "escalation_referrals",
        sa.Column("referral_id", sa.String(64), primary_key=True),
        sa.Column("reference", sa.String(40), nullable=False),
        sa.Column("force", sa.String(64), nullable=False),
        sa.Column("la_code", sa.String(9), nullable=False),
        sa.Column("received_at", TS, nullable=True),
        sa.Column("out_of_hours", sa.Boolean(), nullable=True),
        sa.Column("immediate_risk", sa.Boolean(), nullable=True),
        sa.Column("acknowledge_by", TS, nullable=True),
        sa.Column("checks_due_by", TS, nullable=True),
        sa.Column("holding", sa.JSON(), nullable=True),
        sa.Column("acknowledged_at", TS, nullable=True),
        sa.Column("decided_at", TS, nullable=True),
        sa.Column("pathway", sa.String(40), nullable=True),
        sa.Column("checks_completed_at", TS, nullable=True),
        sa.Column("checks_outcome", sa.String(40), nullable=True),
        sa.Column("feedback_released_at", TS, nullable=True),
        sa.Column("closed_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_escalation_referrals_reference", "escalation_referrals", ["reference"])
    op.create_table(
        "escalation_timers",
        sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True),
        sa.Column("timer_key", sa.String(200), nullable=False),
        sa.Column("referral_id", sa.String(64), nullable=False),
        sa.Column("reference", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.String(64), nullable=True),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("run_at", TS, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.Column("fired_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("timer_key", name="escalation_timers_timer_key_key"),
    )
    op.create_index("ix_escalation_timers_status_run_at", "escalation_timers", ["status", "run_at"])
    op.create_index("ix_escalation_timers_referral_id", "escalation_timers", ["referral_id"])
    op.create_table(
        "escalation_alerts",
        sa.Column("alert_id", sa.String(64), primary_key=True),
        sa.Column("referral_id", sa.String(64), nullable=False),
        sa.Column("reference", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("force", sa.String(64), nullable=False),
        sa.Column("la_code", sa.String(9), nullable=False),
        sa.Column("level_index", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("raised_at", TS, nullable=False),
        sa.Column("last_raised_at", TS, nullable=False),
        sa.Column("acknowledged_at", TS, nullable=True),
        sa.Column("acknowledged_by", sa.String(100), nullable=True),
    )
    op.create_index("ix_escalation_alerts_referral_id", "escalation_alerts", ["referral_id"])
    op.create_index("ix_escalation_alerts_force_status", "escalation_alerts", ["force", "status"])


def downgrade() -> None:
    op.drop_table("escalation_alerts")
    op.drop_table("escalation_timers")
    op.drop_table("escalation_referrals")
