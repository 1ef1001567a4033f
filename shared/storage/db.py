"""Engines for the embedded SQLite default and for PostgreSQL.

SQLite (`sqlite+aiosqlite:///path`) gets its parent directory created and, on
every new connection, WAL journaling, foreign keys and a 30 s busy timeout so
that a second writer waits instead of failing (SQLite's busy wait is not fair: with a
dozen concurrent writers on a loaded machine 5 s was not enough, and a handler that
fails after its side effect repeats it on redelivery). PostgreSQL
(`postgresql+asyncpg://…`) gets a small pool: SAFEGUARD_DATABASE_POOL_SIZE (default 5)
connections, and up to twice as many more in bursts: 3 x SIZE per process, summed over every
replica of every service, must fit the server's max_connections.

A pooled PostgreSQL connection is checked before it is handed out (`_guard_checkout`): one the
server has closed (a restart, `pg_terminate_backend`) is replaced at no cost, and one that sat
idle for more than IDLE_PING_S is pinged first. SQLAlchemy's own `pool_pre_ping` pings on every
checkout; asyncpg's ping is three round trips (BEGIN, `;`, ROLLBACK), which under a burst was
about a third of the statements PostgreSQL ran.
"""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = ["create_engine", "default_url", "is_postgres", "is_sqlite", "ping"]

BUSY_TIMEOUT_MS = 30_000
IDLE_PING_S = 10.0  # a pooled connection idle longer than this is pinged before use


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
        options: dict[str, Any] = {"pool_size": size, "max_overflow": 2 * size, "pool_recycle": 1800}
        engine = create_async_engine(url, **(options | kwargs))
        _guard_checkout(engine)
        return engine
    raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}")


def _sqlite_engine(url: str, database: str | None, **kwargs: Any) -> AsyncEngine:
    in_memory = not database or database == ":memory:" or database.startswith("file:")
    if not in_memory:
        _private_file(Path(database).expanduser())
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


def _private_file(path: Path) -> None:
    """The database file readable by this user only (0600; a new directory 0700): SQLite makes
    its -wal and -shm files with the database file's permissions."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        os.chmod(path, 0o600)
    except OSError:  # not a file we can open (a directory, no permission): SQLite will say so
        return


def _guard_checkout(engine: AsyncEngine) -> None:
    """Replace a pooled connection the server closed; ping one that sat idle (see the module doc).
    Raising DisconnectionError on checkout makes the pool discard it and connect afresh."""
    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if dbapi_connection.driver_connection.is_closed():
            raise exc.DisconnectionError("the server closed this pooled connection")
        idle_since = record.info.pop("idle_since", None)
        if idle_since is not None and time.monotonic() - idle_since > IDLE_PING_S:
            try:
                dbapi_connection.ping()
            except Exception as error:
                raise exc.DisconnectionError("a pooled connection failed its ping after idling") from error


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
