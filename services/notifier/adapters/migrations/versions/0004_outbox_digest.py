"""outbox digest: `body_size` and `body_sha256` on the notifier outbox, and the bodies of rows
already sent purged (issue 18 #3: a sent row keeps its metadata, not its payload;
`shared.storage.tables.add_outbox_digest`, keep in step)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10 00:00:00

"""
from collections.abc import Sequence

from alembic import op

from shared.storage.tables import add_outbox_digest, drop_outbox_digest

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_outbox_digest(op, "notifier")


def downgrade() -> None:
    drop_outbox_digest(op, "notifier")
