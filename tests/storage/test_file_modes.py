"""Issue 18 #16: in single-machine mode the SQLite databases were 0644 (any local user could
read the audit and the sealed envelopes). Now 0600, and the WAL files SQLite makes follow."""
from __future__ import annotations

import stat

import sqlalchemy as sa

from shared.storage import create_engine


async def test_a_sqlite_database_and_its_wal_are_private_to_the_user(tmp_path, reliability):
    path = tmp_path / "data" / "intake.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
            await conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        files = [p for p in path.parent.iterdir() if p.name.startswith("intake.db")]
        assert {p.name for p in files} >= {"intake.db", "intake.db-wal"}
        assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {p.name: 0o600 for p in files}
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        reliability.row("attacks", finding="#16", attack="another local user reads the single-machine SQLite "
                        "databases and safeguard.toml",
                        before="0644 files: readable by every local user",
                        after="0600 database, -wal and -shm files (directory 0700) and a 0600 safeguard.toml; "
                              "Teams webhooks in Kubernetes: in a Secret (the ConfigMap row below)")
    finally:
        await engine.dispose()


async def test_an_existing_world_readable_database_is_made_private(tmp_path):
    path = tmp_path / "old.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await engine.dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
