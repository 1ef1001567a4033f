"""Append-only, hash-chained audit log with signed checkpoints (DESIGN §5).

Each service has three tables (defined in `shared.storage.tables`): `<svc>_audit`
(the entries), `<svc>_audit_head` (one row: the last seq and hash) and
`<svc>_audit_checkpoint` (Ed25519-signed heads).
`h_i = SHA-256(h_{i-1} || canonical(entry_i))`, `h_0` = 32 zero bytes.

`record()` runs inside the caller's transaction, so an entry commits with the
change it describes (`batched()` groups a transaction's entries into one insert). It first updates the head row: that write lock serialises
appenders on SQLite and PostgreSQL alike, so seqs are gapless and the chain has
no forks. `verify_chain()` recomputes everything and names the first bad entry:
an edited, deleted, inserted or reordered row, a truncated tail, or a forged
checkpoint; given the checkpoints' copies outside the service's tables
(`shared.audit_store`), also a deleted or replaced checkpoint row.
`detail` must hold codes and ids only, never content.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from nacl.signing import SigningKey, VerifyKey
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.crypto import CryptoError, b64d, b64e, sign, verify
from shared.storage.tables import ID_TYPE

GENESIS = "0" * 64


def create_audit_tables(op: Any, prefix: str) -> None:
    """Alembic ops (a frozen schema) for the revision that introduces a service's audit."""
    op.create_table(
        f"{prefix}_audit",
        sa.Column("seq", ID_TYPE, primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("reference", sa.String(40), nullable=True),
        sa.Column("outcome", sa.String(60), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index(f"ix_{prefix}_audit_reference", f"{prefix}_audit", ["reference"])
    head = op.create_table(
        f"{prefix}_audit_head",
        sa.Column("id", ID_TYPE, primary_key=True, autoincrement=False),
        sa.Column("seq", ID_TYPE, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS}])
    op.create_table(
        f"{prefix}_audit_checkpoint",
        sa.Column("seq", ID_TYPE, primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("signer", sa.String(100), nullable=False),
        sa.Column("signature", sa.String(100), nullable=False),
    )


def drop_audit_tables(op: Any, prefix: str) -> None:
    op.drop_index(f"ix_{prefix}_audit_reference", table_name=f"{prefix}_audit")
    for name in ("audit_checkpoint", "audit_head", "audit"):
        op.drop_table(f"{prefix}_{name}")


def canonical(seq: int, at: datetime, actor: str, action: str, reference: str | None,
              outcome: str, detail: Any) -> bytes:
    doc = {"seq": seq, "at": at.isoformat(), "actor": actor, "action": action,
           "reference": reference, "outcome": outcome, "detail": detail}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()


def chain_hash(prev: str, entry: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(prev) + entry).hexdigest()


def _head(table: Table) -> Table:
    return table.metadata.tables[f"{table.name}_head"]


class _Batch:
    """Entries of one transaction, chained and written when the batch ends (see `batched`):
    the head row is locked only then, so concurrent transactions queue on it for as short
    a time as possible."""

    def __init__(self, conn: AsyncConnection, table: Table) -> None:
        self.conn, self.table = conn, table
        self.entries: list[dict[str, Any]] = []

    async def flush(self) -> None:
        if not self.entries:
            return
        seq, h = await _lock_head(self.conn, self.table)
        rows: list[dict[str, Any]] = []
        for entry in self.entries:
            seq, h = _chained(rows, seq, h, entry)
        await self.conn.execute(sa.insert(self.table), rows)
        head = _head(self.table)
        await self.conn.execute(sa.update(head).where(head.c.id == 1).values(seq=seq, hash=h))
        self.entries = []


_BATCHES: dict[tuple[int, str], _Batch] = {}  # (id(conn), table): one open batch per transaction


@contextlib.asynccontextmanager
async def batched(conn: AsyncConnection, table: Table) -> AsyncIterator[None]:
    """Inside this block, `record(conn, table, ...)` appends to a batch written at the end
    (still inside the caller's transaction, so end the block last): 3 statements for N
    entries instead of 3N, and the head lock is held only from there to the commit.
    The batch belongs to the connection, not to the task: every `record` on `conn` joins
    it, including those of effects run in other tasks by a group commit
    (`shared.storage.group`), and a `batched` block nested in another on the same
    connection joins the outer one (written when the outer block ends).
    On an exception nothing is written; the caller's transaction rolls back anyway."""
    key = (id(conn), table.name)
    if key in _BATCHES:
        yield
        return
    batch = _BATCHES[key] = _Batch(conn, table)
    try:
        yield
        await batch.flush()
    finally:
        del _BATCHES[key]


async def _lock_head(conn: AsyncConnection, table: Table) -> tuple[int, str]:
    """A no-op UPDATE takes the head's row lock (serialising appenders on SQLite and
    PostgreSQL alike) and RETURNING reads it: one round trip."""
    head = _head(table)
    seq, h = (await conn.execute(
        sa.update(head).where(head.c.id == 1).values(seq=head.c.seq).returning(head.c.seq, head.c.hash))).one()
    return seq, h


def _chained(rows: list[dict[str, Any]], last_seq: int, last_hash: str, entry: dict[str, Any]) -> tuple[int, str]:
    seq = last_seq + 1
    h = chain_hash(last_hash, canonical(seq, entry["at"], entry["actor"], entry["action"], entry["reference"],
                                        entry["outcome"], entry["detail"]))
    rows.append({**entry, "seq": seq, "prev_hash": last_hash, "hash": h})
    return seq, h


async def record(conn: AsyncConnection, table: Table, *, actor: str, action: str, reference: str | None = None,
                 outcome: str = "ok", detail: dict | None = None, at: datetime) -> int | None:
    """Append one entry in the caller's transaction; return its seq (None inside `batched`)."""
    entry = {"at": at.astimezone(UTC),  # hashed as stored: the database gives it back in UTC
             "actor": actor, "action": action, "reference": reference, "outcome": outcome, "detail": detail}
    batch = _BATCHES.get((id(conn), table.name))
    if batch is not None and batch.conn is conn and batch.table is table:
        batch.entries.append(entry)
        return None  # numbered when the batch is written
    rows: list[dict[str, Any]] = []
    seq, h = _chained(rows, *(await _lock_head(conn, table)), entry)
    await conn.execute(sa.insert(table), rows[0])
    head = _head(table)
    await conn.execute(sa.update(head).where(head.c.id == 1).values(seq=seq, hash=h))
    return seq


def checkpoint_text(table_name: str, seq: int, h: str) -> bytes:
    """What a checkpoint's Ed25519 signature covers."""
    return f"safeguard-audit-v1\n{table_name}\n{seq}\n{h}".encode()


def _checkpoint_message(table: Table, seq: int, h: str) -> bytes:
    return checkpoint_text(table.name, seq, h)


async def checkpoint(conn: AsyncConnection, table: Table, checkpoints: Table, *, signing_key: SigningKey,
                     signer: str, at: datetime) -> int | None:
    """Sign the current head; return its seq (None if empty or already checkpointed)."""
    head = _head(table)
    seq, h = (await conn.execute(sa.select(head.c.seq, head.c.hash).where(head.c.id == 1))).one()
    done = await conn.scalar(sa.select(sa.func.max(checkpoints.c.seq)))
    if seq == 0 or (done is not None and done >= seq):
        return None
    sig = b64e(sign(signing_key, _checkpoint_message(table, seq, h)))
    await conn.execute(sa.insert(checkpoints).values(seq=seq, at=at, hash=h, signer=signer, signature=sig))
    return seq


@dataclass(frozen=True)
class AuditVerdict:
    ok: bool
    entries: int
    checkpoints: int
    first_bad: int | None = None
    problem: str | None = None


async def verify_chain(conn: AsyncConnection, table: Table, checkpoints: Table, verify_key: VerifyKey,
                       page: int = 5000, external: Mapping[int, str] | None = None) -> AuditVerdict:
    """`external`: seq -> hash of the checkpoints' verified copies outside the service's
    tables; each must still be in `checkpoints`, with the same hash (seq 0: an empty chain)."""
    cps = {cp.seq: cp for cp in (await conn.execute(sa.select(checkpoints))).all()}
    for cp in cps.values():
        try:
            verify(verify_key, _checkpoint_message(table, cp.seq, cp.hash), b64d(cp.signature))
        except CryptoError:
            return AuditVerdict(False, 0, len(cps), cp.seq, f"checkpoint at entry {cp.seq} has a bad signature")
    for seq, h in sorted((external or {}).items()):
        if seq > 0 and seq not in cps:
            return AuditVerdict(False, 0, len(cps), seq,
                                f"checkpoint {seq} is in the external store but missing from the table")
        if seq > 0 and cps[seq].hash != h:
            return AuditVerdict(False, 0, len(cps), seq, f"checkpoint {seq} differs from the external store")
    prev, last, count = GENESIS, 0, 0
    while rows := (await conn.execute(
        sa.select(table).where(table.c.seq > last).order_by(table.c.seq).limit(page)
    )).all():
        for r in rows:
            if r.seq != last + 1:
                return AuditVerdict(False, count, len(cps), last + 1, f"entry {last + 1} missing (next is {r.seq})")
            if r.prev_hash != prev:
                return AuditVerdict(False, count, len(cps), r.seq, f"entry {r.seq} does not follow entry {last}")
            h = chain_hash(prev, canonical(r.seq, r.at, r.actor, r.action, r.reference, r.outcome, r.detail))
            if h != r.hash:
                return AuditVerdict(False, count, len(cps), r.seq, f"entry {r.seq} was altered")
            if r.seq in cps and cps[r.seq].hash != h:
                return AuditVerdict(False, count, len(cps), r.seq, f"entry {r.seq} differs from its signed checkpoint")
            prev, last, count = h, r.seq, count + 1
    beyond = [seq for seq in cps if seq > last]
    if beyond:
        return AuditVerdict(False, count, len(cps), last + 1, f"entries after {last} were removed (checkpoint at {min(beyond)})")
    head = (await conn.execute(sa.select(_head(table)).where(_head(table).c.id == 1))).one()
    if head.seq != last or head.hash != prev:
        return AuditVerdict(False, count, len(cps), last + 1, f"entries after {last} were removed (head is {head.seq})")
    return AuditVerdict(True, count, len(cps))
