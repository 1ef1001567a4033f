"""Open a service's audit chain from the command line (verify, trace, dlq audit entries).

Each service keeps its hash-chained audit (`shared.audit`) in the database its settings
name. `service_audit` yields a connection in a transaction and the service's tables, or
None when that database or table does not exist yet (no service has started there).
"""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import MetaData, Table, inspect
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.audit import audit_table, checkpoint_table, head_table, record
from shared.bus.topology import ESCALATION_EVENTS, INTAKE_SUBMISSIONS, NOTIFIER_REQUESTS
from shared.config import Settings
from shared.storage import create_engine

QUEUE_OWNERS = {INTAKE_SUBMISSIONS: "intake", ESCALATION_EVENTS: "escalation", NOTIFIER_REQUESTS: "notifier"}


@dataclass
class ServiceAudit:
    conn: AsyncConnection
    table: Table
    checkpoints: Table


@contextlib.asynccontextmanager
async def service_audit(settings: Settings, service: str) -> AsyncIterator[ServiceAudit | None]:
    url = settings.database_url_for(service)
    if url.startswith("sqlite") and not Path(url.split(":///", 1)[1]).exists():
        yield None
        return
    md = MetaData()
    table, checkpoints = audit_table(md, service), checkpoint_table(md, service)
    head_table(md, service)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            if not await conn.run_sync(lambda c: inspect(c).has_table(table.name)):
                yield None
            else:
                yield ServiceAudit(conn, table, checkpoints)
    finally:
        await engine.dispose()


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
