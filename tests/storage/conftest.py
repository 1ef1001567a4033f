"""Storage fixtures: an engine migrated to head, on whichever database `db_url` gives."""
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.storage import create_engine, upgrade

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=timezone.utc)
_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every storage test that touches PostgreSQL with `database`."""
    for item in items:
        if _HERE not in Path(item.path).parents:
            continue
        callspec = getattr(item, "callspec", None)
        on_pg = callspec is not None and callspec.params.get("db_url") == "postgres"
        if on_pg or "pg_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.database)


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine whose database holds the intake service's tables at head."""
    eng = create_engine(db_url)
    try:
        await upgrade(eng, "intake")
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
async def pg_engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    """A PostgreSQL engine with the intake tables at head."""
    eng = create_engine(pg_url)
    try:
        await upgrade(eng, "intake")
        yield eng
    finally:
        await eng.dispose()
