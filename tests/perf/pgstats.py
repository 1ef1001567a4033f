"""PostgreSQL work per item, by service, from `pg_stat_database` (each service under test has a
database of its own): committed transactions and rows written (inserted + updated + deleted).
The server publishes these counters when a backend's transaction ends (at most about a second
late), so a phase is read once it has gone quiet. `pg_stat_statements` would count statements,
but it must be preloaded at server start; these need nothing of the server."""
from __future__ import annotations

from collections.abc import Mapping

import asyncpg

from tests.conftest import PG_ADMIN_DSN

SETTLE_S = 11.0  # a phase is read this long after its last request: an idle backend flushes its counters
#                 within PostgreSQL 15's 10 s idle interval (with 1.5 s the first round of a fresh database read ~0)
LABELS = {"pg_tx": "PostgreSQL transactions per referral at the low rate",
          "pg_rows": "PostgreSQL rows written per referral at the low rate"}


async def snapshot(databases: Mapping[str, str]) -> dict[str, tuple[int, int]]:
    """{service: (transactions committed, rows written)} now."""
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        rows = await conn.fetch("SELECT datname, xact_commit, tup_inserted + tup_updated + tup_deleted AS written "
                                "FROM pg_stat_database WHERE datname = ANY($1::text[])", list(databases.values()))
    finally:
        await conn.close()
    by_name = {r["datname"]: (int(r["xact_commit"]), int(r["written"])) for r in rows}
    return {service: by_name.get(name, (0, 0)) for service, name in databases.items()}


def per_item(before: Mapping[str, tuple[int, int]], after: Mapping[str, tuple[int, int]],
             items: int) -> dict[str, float]:
    n = max(items, 1)
    out: dict[str, float] = {}
    for service in before:
        out[f"pg_tx_{service}"] = (after[service][0] - before[service][0]) / n
        out[f"pg_rows_{service}"] = (after[service][1] - before[service][1]) / n
    return out
