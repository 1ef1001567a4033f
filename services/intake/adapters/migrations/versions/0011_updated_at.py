"""updated_at: when a referral's metadata last changed (received, an action, a concern, shredding),
for the list API's `updated_since`; and the indexes its keyset pages read by (organisation, then
receipt time and id, newest first). Existing rows get the latest time they record.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08 00:00:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
TIMES = ("received_at", "acknowledged_at", "decided_at", "checks_at", "feedback_at", "strategy_at",
         "la_closed_at", "ctp_closed_at", "closed_at", "shredded_at")
INDEXES = {"ix_intake_referrals_updated_at": ["updated_at"],
           "ix_intake_referrals_la_code_received_at_id": ["la_code", "received_at", "id"],
           "ix_intake_referrals_force_received_at_id": ["force", "received_at", "id"]}


def upgrade() -> None:
    with op.batch_alter_table("intake_referrals") as batch:
        batch.add_column(sa.Column("updated_at", TS, nullable=True))
    conn = op.get_bind()
    table = sa.table("intake_referrals", sa.column("id"), sa.column("updated_at", TS),
                     *(sa.column(t, TS) for t in TIMES))
    concerns = sa.table("intake_concerns", sa.column("referral_id"), sa.column("raised_at", TS))
    raised = dict(conn.execute(sa.select(concerns.c.referral_id, sa.func.max(concerns.c.raised_at))
                               .group_by(concerns.c.referral_id)).all())
    for row in conn.execute(sa.select(table.c.id, *(table.c[t] for t in TIMES))).all():
        latest = max(v for v in (*row[1:], raised.get(row.id)) if v is not None)
        conn.execute(sa.update(table).where(table.c.id == row.id).values(updated_at=latest))
    with op.batch_alter_table("intake_referrals") as batch:
        batch.alter_column("updated_at", existing_type=TS, nullable=False)
    for name, columns in INDEXES.items():
        op.create_index(name, "intake_referrals", columns)


def downgrade() -> None:
    for name in reversed(INDEXES):
        op.drop_index(name, table_name="intake_referrals")
    with op.batch_alter_table("intake_referrals") as batch:
        batch.drop_column("updated_at")
