"""Open a service's tables from the command line (audit verify, trace, dlq, retention).

Each service keeps its tables — the hash-chained audit (`shared.audit`), the outbox … — in
the database its settings name. `service_table` / `service_audit` yield a connection in a
transaction, or None when that database or table does not exist yet (no service has
started there).
"""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import MetaData, Table, inspect
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.audit import record
from shared.bus.topology import ESCALATION_EVENTS, INTAKE_SUBMISSIONS, NOTIFIER_REQUESTS
from shared.config import Settings
from shared.storage import create_engine
from shared.storage.tables import common_tables

QUEUE_OWNERS = {INTAKE_SUBMISSIONS: "intake", ESCALATION_EVENTS: "escalation", NOTIFIER_REQUESTS: "notifier"}


@dataclass
class ServiceAudit:
    conn: AsyncConnection
    table: Table
    checkpoints: Table


@contextlib.asynccontextmanager
async def service_table(settings: Settings, service: str, table: Table) -> AsyncIterator[AsyncConnection | None]:
    """A connection (in a transaction) to the database `service` is configured with, or
    None when that database or `table` does not exist there yet."""
    url = settings.database_url_for(service)
    if url.startswith("sqlite") and not Path(url.split(":///", 1)[1]).exists():
        yield None
        return
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            yield conn if await conn.run_sync(lambda c: inspect(c).has_table(table.name)) else None
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def service_audit(settings: Settings, service: str) -> AsyncIterator[ServiceAudit | None]:
    tables = common_tables(MetaData(), service)
    async with service_table(settings, service, tables.audit) as conn:
        yield None if conn is None else ServiceAudit(conn, tables.audit, tables.audit_checkpoints)


def owner_of(queue: str) -> str:
    """The service whose audit records operator actions on `queue` (or its parking queue).

    Queues no service consumes (control-room.*, ops.*) are escalation's: it owns alerts."""
    return QUEUE_OWNERS.get(queue.removesuffix(".parked"), "escalation")


async def record_operator_action(settings: Settings, queue: str, *, actor: str, action: str,
                                 outcome: str, detail: dict) -> str | None:
    """Append one entry to the owning service's chain; return that service, or None when
    its audit table does not exist yet. `detail` must hold ids and codes only."""
    service = owner_of(queue)
    async with service_audit(settings, service) as audit:
        if audit is None:
            return None
        await record(audit.conn, audit.table, actor=actor[:100], action=action, outcome=outcome,
                     detail=detail, at=datetime.now(UTC))
    return service
