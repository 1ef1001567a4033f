"""referrals: sealed referrals, per-year reference counters, idempotency keys, nonces

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 00:00:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "intake_referrals",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("reference", sa.String(20), nullable=False),
        sa.Column("client_id", sa.String(100), nullable=False),
        sa.Column("client_reference", sa.String(100), nullable=False),
        sa.Column("force", sa.String(63), nullable=False),
        sa.Column("la_code", sa.String(9), nullable=False),
        sa.Column("received_via", sa.String(40), nullable=False),
        sa.Column("immediate_risk", sa.Boolean(), nullable=False),
        sa.Column("age_band", sa.String(8), nullable=False),
        sa.Column("concern_types", sa.JSON(), nullable=False),
        sa.Column("no_further_sharing", sa.Boolean(), nullable=False),
        sa.Column("no_family_contact", sa.Boolean(), nullable=False),
        sa.Column("holding_review_by", sa.Date(), nullable=True),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("out_of_hours", sa.Boolean(), nullable=False),
        sa.Column("acknowledge_by", TS, nullable=False),
        sa.Column("checks_due_by", TS, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("acknowledged_at", TS, nullable=True),
        sa.Column("acknowledged_by", sa.String(100), nullable=True),
        sa.Column("pathway", sa.String(40), nullable=True),
        sa.Column("decided_at", TS, nullable=True),
        sa.Column("decided_by", sa.String(100), nullable=True),
        sa.Column("rationale_sealed", sa.JSON(), nullable=True),
        sa.Column("checks_outcome", sa.String(40), nullable=True),
        sa.Column("checks_at", TS, nullable=True),
        sa.Column("checks_by", sa.String(100), nullable=True),
        sa.Column("checks_notes_sealed", sa.JSON(), nullable=True),
        sa.Column("family_contact_hold", sa.Boolean(), nullable=False),
        sa.Column("family_contact_lifted", sa.Boolean(), nullable=False),
        sa.Column("feedback_at", TS, nullable=True),
        sa.Column("feedback_by", sa.String(100), nullable=True),
        sa.Column("closed_at", TS, nullable=True),
        sa.Column("closed_by", sa.String(100), nullable=True),
        sa.Column("content_sealed", sa.JSON(), nullable=False),
        sa.Column("contacts_sealed", sa.JSON(), nullable=False),
        sa.Column("shredded_at", TS, nullable=True),
        sa.UniqueConstraint("reference", name="intake_referrals_reference_key"),
    )
    for col in ("force", "la_code", "received_at"):
        op.create_index(f"ix_intake_referrals_{col}", "intake_referrals", [col])
    op.create_table(
        "intake_reference_counters",
        sa.Column("year", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("last", sa.Integer(), nullable=False),
    )
    op.create_table(
        "intake_idempotency_keys",
        sa.Column("client_id", sa.String(100), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("client_id", "key", name="pk_intake_idempotency_keys"),
    )
    op.create_table(
        "intake_nonces",
        sa.Column("client_id", sa.String(100), nullable=False),
        sa.Column("nonce", sa.String(200), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("client_id", "nonce", name="pk_intake_nonces"),
    )
    op.create_index("ix_intake_nonces_expires_at", "intake_nonces", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_intake_nonces_expires_at", table_name="intake_nonces")
    op.drop_table("intake_nonces")
    op.drop_table("intake_idempotency_keys")
    op.drop_table("intake_reference_counters")
    for col in ("force", "la_code", "received_at"):
        op.drop_index(f"ix_intake_referrals_{col}", table_name="intake_referrals")
    op.drop_table("intake_referrals")
