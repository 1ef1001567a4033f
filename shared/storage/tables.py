"""The tables every service has: its transactional outbox, its processed ids and its
audit chain (`<svc>_audit`, `<svc>_audit_head`, `<svc>_audit_checkpoint`; see `shared.audit`).

Table names carry the service's name as a prefix (`intake_outbox`, …) because
several services may share one PostgreSQL database; `common_tables` defines them
all in a service's `MetaData`. `create_common_tables` is the *frozen* schema of each
service's revision 0001 (and `shared.audit.create_audit_tables` that of the audit
revision): change these tables only through new revisions, and keep the definitions
below in step with them.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import (
    JSON, BigInteger, Column, DateTime, Index, Integer, LargeBinary, MetaData,
    PrimaryKeyConstraint, String, Table, Text, TypeDecorator, UniqueConstraint,
)

__all__ = [
    "ID_TYPE", "CommonTables", "UtcDateTime", "add_outbox_digest", "audit_table", "checkpoint_table", "common_tables",
    "create_common_tables", "drop_common_tables", "drop_outbox_digest", "head_table", "outbox_table", "processed_table",
]

# BIGINT on PostgreSQL; INTEGER on SQLite, where only "INTEGER PRIMARY KEY" autoincrements.
ID_TYPE = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """`DateTime(timezone=True)` that stores UTC and always returns aware datetimes.

    SQLite keeps no offset, so values are normalised to UTC on the way in and
    marked UTC on the way out; naive datetimes are refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime: pass an aware datetime (UTC)")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


def outbox_table(metadata: MetaData, prefix: str) -> Table:
    """Messages committed with the state change that caused them, awaiting the relay.

    Once the broker confirmed a row, the relay empties its `body` in the statement that
    sets `sent_at` (it may hold sealed sections under a team key that a rotation retires);
    the row's metadata stays: ids, routing key, times, and the body's size and SHA-256."""
    name = f"{prefix}_outbox"
    return Table(
        name, metadata,
        Column("id", ID_TYPE, primary_key=True, autoincrement=True),
        Column("message_id", String(64), nullable=False),
        Column("exchange", String(255), nullable=False),
        Column("routing_key", String(255), nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("headers", JSON, nullable=False),
        Column("correlation_id", String(64), nullable=True),
        Column("created_at", UtcDateTime(), nullable=False),
        Column("sent_at", UtcDateTime(), nullable=True),
        Column("attempts", Integer, nullable=False, default=0, server_default="0"),
        Column("last_error", Text, nullable=True),
        # --- each service's outbox_digest revision (`add_outbox_digest`) ---
        Column("body_size", Integer, nullable=True),
        Column("body_sha256", String(64), nullable=True),
        UniqueConstraint("message_id", name=f"{name}_message_id_key"),
        Index(f"ix_{name}_sent_at_id", "sent_at", "id"),
    )


def processed_table(metadata: MetaData, prefix: str) -> Table:
    """Ids of the messages each consumer has already applied (idempotency)."""
    name = f"{prefix}_processed"
    return Table(
        name, metadata,
        Column("consumer", String(100), nullable=False),
        Column("message_id", String(64), nullable=False),
        Column("processed_at", UtcDateTime(), nullable=False),
        PrimaryKeyConstraint("consumer", "message_id", name=f"pk_{name}"),
    )


def audit_table(metadata: MetaData, prefix: str) -> Table:
    return Table(
        f"{prefix}_audit", metadata,
        Column("seq", ID_TYPE, primary_key=True, autoincrement=False),
        Column("at", UtcDateTime(), nullable=False),
        Column("actor", String(100), nullable=False),
        Column("action", String(100), nullable=False),
        Column("reference", String(40), nullable=True, index=True),
        Column("outcome", String(60), nullable=False),
        Column("detail", JSON, nullable=True),
        Column("prev_hash", String(64), nullable=False),
        Column("hash", String(64), nullable=False),
    )


def head_table(metadata: MetaData, prefix: str) -> Table:
    return Table(
        f"{prefix}_audit_head", metadata,
        Column("id", ID_TYPE, primary_key=True, autoincrement=False),
        Column("seq", ID_TYPE, nullable=False),
        Column("hash", String(64), nullable=False),
    )


def checkpoint_table(metadata: MetaData, prefix: str) -> Table:
    return Table(
        f"{prefix}_audit_checkpoint", metadata,
        Column("seq", ID_TYPE, primary_key=True, autoincrement=False),
        Column("at", UtcDateTime(), nullable=False),
        Column("hash", String(64), nullable=False),
        Column("signer", String(100), nullable=False),
        Column("signature", String(100), nullable=False),
    )


class CommonTables(NamedTuple):
    """The tables every service has, all in the service's one `MetaData`."""

    outbox: Table
    processed: Table
    audit: Table
    audit_head: Table
    audit_checkpoints: Table


def common_tables(metadata: MetaData, prefix: str) -> CommonTables:
    """The outbox, the processed ids and the audit chain (entries, head, signed checkpoints)."""
    return CommonTables(outbox_table(metadata, prefix), processed_table(metadata, prefix),
                        audit_table(metadata, prefix), head_table(metadata, prefix),
                        checkpoint_table(metadata, prefix))


def create_common_tables(op: Any, prefix: str) -> None:
    """Alembic ops of revision 0001: create `<prefix>_outbox` and `<prefix>_processed`."""
    outbox = f"{prefix}_outbox"
    op.create_table(
        outbox,
        sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("exchange", sa.String(255), nullable=False),
        sa.Column("routing_key", sa.String(255), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("correlation_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.UniqueConstraint("message_id", name=f"{outbox}_message_id_key"),
    )
    op.create_index(f"ix_{outbox}_sent_at_id", outbox, ["sent_at", "id"])
    processed = f"{prefix}_processed"
    op.create_table(
        processed,
        sa.Column("consumer", sa.String(100), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "message_id", name=f"pk_{processed}"),
    )


def add_outbox_digest(op: Any, prefix: str) -> None:
    """Alembic ops of each service's outbox_digest revision: `body_size` and `body_sha256`
    (set at enqueue), and the bodies of rows already sent purged (their size kept; their
    digest was never taken, so it stays NULL)."""
    name = f"{prefix}_outbox"
    op.add_column(name, sa.Column("body_size", sa.Integer(), nullable=True))
    op.add_column(name, sa.Column("body_sha256", sa.String(64), nullable=True))
    table = sa.table(name, sa.column("body", sa.LargeBinary()), sa.column("body_size", sa.Integer()),
                     sa.column("sent_at"))
    op.execute(table.update().values(body_size=sa.func.length(table.c.body)))
    op.execute(table.update().where(table.c.sent_at.is_not(None)).values(body=b""))


def drop_outbox_digest(op: Any, prefix: str) -> None:
    """Alembic ops undoing `add_outbox_digest` (purged bodies stay purged)."""
    with op.batch_alter_table(f"{prefix}_outbox") as batch:
        batch.drop_column("body_sha256")
        batch.drop_column("body_size")


def drop_common_tables(op: Any, prefix: str) -> None:
    """Alembic ops undoing `create_common_tables`."""
    op.drop_table(f"{prefix}_processed")
    op.drop_index(f"ix_{prefix}_outbox_sent_at_id", table_name=f"{prefix}_outbox")
    op.drop_table(f"{prefix}_outbox")
