"""Engines: SQLite pragmas and directory, PostgreSQL pool, ping, default URL."""
from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy import text

from shared.storage import create_engine, default_url, is_postgres, is_sqlite, ping


def test_default_url_is_one_sqlite_file_per_service() -> None:
    assert default_url("/srv/var", "intake") == "sqlite+aiosqlite:////srv/var/intake.db"
    assert default_url("./var", "notifier") == "sqlite+aiosqlite:///./var/notifier.db"


async def test_sqlite_engine_creates_directory_and_sets_pragmas(tmp_path) -> None:
    path = tmp_path / "deep" / "er" / "intake.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        assert path.parent.is_dir()
        assert is_sqlite(engine) and not is_postgres(engine)
        async with engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 30_000
        assert path.exists()
        assert await ping(engine)
    finally:
        await engine.dispose()


async def test_postgres_engine_pings(pg_url: str) -> None:
    engine = create_engine(pg_url)
    try:
        assert is_postgres(engine) and not is_sqlite(engine)
        assert engine.pool._pre_ping  # stale pooled connections are replaced, not handed out
        assert await ping(engine)
    finally:
        await engine.dispose()


async def test_ping_is_false_when_the_database_is_unreachable() -> None:
    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    try:
        assert await ping(engine, timeout=5) is False
    finally:
        await engine.dispose()


async def test_ping_is_false_for_an_unopenable_sqlite_file(tmp_path) -> None:
    (tmp_path / "dir.db").mkdir()  # a directory cannot be opened as a database
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/dir.db")
    try:
        assert await ping(engine) is False
    finally:
        await engine.dispose()
        await _aiosqlite_threads_finished()


async def _aiosqlite_threads_finished() -> None:
    """aiosqlite stops its worker after a failed connect without awaiting it; if
    this test's loop closed first, that thread would raise into the next test."""
    for _ in range(200):
        if not any(t.name.endswith("(_connection_worker_thread)") and t.is_alive()
                   for t in threading.enumerate()):
            return
        await asyncio.sleep(0.01)


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        create_engine("mysql+aiomysql://u@h/db")
