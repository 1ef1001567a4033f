"""SAFEGUARD_DATABASE_POOL_SIZE sizes each process's PostgreSQL pool (replicas must fit
max_connections); an explicit keyword still wins, and SQLite is untouched."""
from __future__ import annotations

import pytest
from sqlalchemy.pool import QueuePool

from shared.storage import create_engine

URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


async def test_pool_size_defaults_to_five_with_twice_as_many_for_bursts(monkeypatch):
    monkeypatch.delenv("SAFEGUARD_DATABASE_POOL_SIZE", raising=False)
    engine = create_engine(URL)
    try:
        assert isinstance(engine.pool, QueuePool)
        assert (engine.pool.size(), engine.pool._max_overflow) == (5, 10)
    finally:
        await engine.dispose()


async def test_pool_size_comes_from_the_environment_unless_given(monkeypatch, tmp_path):
    monkeypatch.setenv("SAFEGUARD_DATABASE_POOL_SIZE", "2")
    engine, explicit = create_engine(URL), create_engine(URL, pool_size=7)
    sqlite = create_engine(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    try:
        assert (engine.pool.size(), engine.pool._max_overflow) == (2, 4)
        assert explicit.pool.size() == 7
        assert not isinstance(sqlite.pool, QueuePool) or sqlite.pool.size() != 2
    finally:
        for e in (engine, explicit, sqlite):
            await e.dispose()


def test_a_bad_pool_size_names_the_variable(monkeypatch):
    from shared.config import ConfigError

    for bad in ("many", "0", "-1", ""):
        monkeypatch.setenv("SAFEGUARD_DATABASE_POOL_SIZE", bad)
        with pytest.raises(ConfigError, match="SAFEGUARD_DATABASE_POOL_SIZE"):
            create_engine(URL)
