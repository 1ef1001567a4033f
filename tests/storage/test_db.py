"""Engines: SQLite pragmas and directory, PostgreSQL pool, ping, default URL."""
from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from shared.storage import db
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
        assert not engine.pool._pre_ping  # replaced by the cheaper checkout guard below
        assert await ping(engine)
    finally:
        await engine.dispose()


async def _backend_pid(engine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()


async def _terminate(pg_url: str, pid: int) -> None:
    admin = create_async_engine(pg_url, poolclass=NullPool)
    try:
        async with admin.connect() as conn:
            assert (await conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})).scalar_one()
    finally:
        await admin.dispose()


def _pooled(engine) -> list:
    """[the pool's connection record last checked in]: the connection waiting in the pool."""
    last: list = [None]

    @event.listens_for(engine.sync_engine, "checkin")
    def _remember(_dbapi_connection, record) -> None:
        last[0] = record
    return last


async def test_a_pooled_connection_the_server_closed_is_replaced_not_handed_out(pg_url: str) -> None:
    engine = create_engine(pg_url, pool_size=1, max_overflow=0)
    pooled = _pooled(engine)
    try:
        first = await _backend_pid(engine)
        driver = pooled[0].dbapi_connection.driver_connection
        await _terminate(pg_url, first)
        for _ in range(100):  # asyncpg notices the server's goodbye on its next read
            if driver.is_closed():
                break
            await asyncio.sleep(0.01)
        assert driver.is_closed()
        second = await _backend_pid(engine)  # no error: the guard replaced it on checkout
        assert second != first
    finally:
        await engine.dispose()


async def test_a_connection_idle_past_the_threshold_is_pinged_and_replaced_if_dead(pg_url, monkeypatch) -> None:
    """A half-open connection (the server is gone but no goodbye arrived, as after a network
    cut) passes the closed check; after IDLE_PING_S of idling, the ping catches it."""
    engine = create_engine(pg_url, pool_size=1, max_overflow=0)
    pooled = _pooled(engine)
    try:
        first = await _backend_pid(engine)
        half_open = pooled[0].dbapi_connection.driver_connection
        real_is_closed = type(half_open).is_closed
        monkeypatch.setattr(type(half_open), "is_closed", lambda self: self is not half_open and real_is_closed(self))
        await _terminate(pg_url, first)
        monkeypatch.setattr(db, "IDLE_PING_S", 0.0)
        second = await _backend_pid(engine)
        assert second != first
    finally:
        await engine.dispose()


async def test_a_busy_pooled_connection_is_not_pinged(pg_url, monkeypatch) -> None:
    """Within IDLE_PING_S a pooled connection is handed out without a round trip."""
    engine = create_engine(pg_url, pool_size=1, max_overflow=0)
    pooled = _pooled(engine)
    try:
        await _backend_pid(engine)
        pings: list[object] = []
        adapted = pooled[0].dbapi_connection
        real_ping = type(adapted).ping

        def counted_ping(self) -> None:
            pings.append(self)
            real_ping(self)
        monkeypatch.setattr(type(adapted), "ping", counted_ping)
        for _ in range(3):
            await _backend_pid(engine)
        assert pings == []
        monkeypatch.setattr(db, "IDLE_PING_S", 0.0)
        await _backend_pid(engine)
        assert pings == [adapted]
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
