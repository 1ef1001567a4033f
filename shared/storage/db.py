"""Engines for the embedded SQLite default and for PostgreSQL.

SQLite (`sqlite+aiosqlite:///path`) gets its parent directory created and, on
every new connection, WAL journaling, foreign keys and a 30 s busy timeout so
that a second writer waits instead of failing (SQLite's busy wait is not fair: with a
dozen concurrent writers on a loaded machine 5 s was not enough, and a handler that
fails after its side effect repeats it on redelivery). PostgreSQL
(`postgresql+asyncpg://…`) gets a small pre-pinged pool: SAFEGUARD_DATABASE_POOL_SIZE
(default 5) connections, and up to twice as many more in bursts: 3 x SIZE per process, summed
over every replica of every service, must fit the server's max_connections.
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from sqlalchemy import event, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = ["create_engine", "default_url", "is_postgres", "is_sqlite", "ping"]

BUSY_TIMEOUT_MS = 30_000


def default_url(data_dir: str, service: str) -> str:
    """The per-service SQLite file used when no database URL is configured."""
    return f"sqlite+aiosqlite:///{data_dir}/{service}.db"


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for `url`, tuned for its backend (kwargs pass through)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, parsed.database, **kwargs)
    if backend == "postgresql":
        size = _pool_size(os.environ.get("SAFEGUARD_DATABASE_POOL_SIZE", "5"))
        options: dict[str, Any] = {
            "pool_pre_ping": True, "pool_size": size, "max_overflow": 2 * size, "pool_recycle": 1800,
        }
        return create_async_engine(url, **(options | kwargs))
    raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}")


def _sqlite_engine(url: str, database: str | None, **kwargs: Any) -> AsyncEngine:
    in_memory = not database or database == ":memory:" or database.startswith("file:")
    if not in_memory:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, **kwargs)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    return engine


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


async def ping(engine: AsyncEngine, timeout: float = 5.0) -> bool:
    """True if the database answers `SELECT 1` within `timeout` (for /readyz)."""
    async def _select() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(_select(), timeout)
    except Exception:  # any failure means "not ready", never a crash
        return False
    return True


def _pool_size(raw: str) -> int:
    from shared.config import ConfigError

    if not raw.strip().isdigit() or int(raw) < 1:
        raise ConfigError("environment: SAFEGUARD_DATABASE_POOL_SIZE: expected a whole number of at least 1")
    return int(raw)
