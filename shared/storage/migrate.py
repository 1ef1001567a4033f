"""Programmatic Alembic: each service's migrations, no alembic.ini needed.

`upgrade(engine, service)` brings `<service>`'s tables to head at start-up. The
scripts live in the package `services.<service>.adapters.migrations`, so they
ship with a normal (non-editable) install. On PostgreSQL a transaction-scoped
advisory lock per service serialises replicas starting together; within one
process migrations run one at a time (Alembic's proxies are global).

For developers: `python -m shared.storage {upgrade,current,heads,revision}
SERVICE [--url URL] [-m MESSAGE] [--autogenerate] [--rev-id 0002]`.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import weakref
import zlib
from importlib.resources import files
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.storage.alembic_env import version_table
from shared.storage.db import create_engine, default_url

__all__ = ["alembic_config", "current_revision", "head_revision", "migrations_dir", "upgrade"]

_SERVICE = re.compile(r"^[a-z][a-z0-9_]*$")
# Alembic's `context`/`op` are process-global proxies, so two migrations running
# interleaved on one event loop would trample each other: run them one at a time.
_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def migrations_dir(service: str) -> Path:
    """The directory of `services.<service>.adapters.migrations`."""
    if not _SERVICE.match(service):
        raise ValueError(f"bad service name {service!r}")
    return Path(str(files(f"services.{service}.adapters.migrations")))


def alembic_config(service: str, connection: Connection | None = None, url: str | None = None) -> Config:
    """An in-memory Alembic Config for `service` (no ini file, no logging set-up)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir(service)).replace("%", "%%"))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["connection"] = connection
    cfg.attributes["service"] = service
    return cfg


def _upgrade_sync(connection: Connection, service: str, revision: str = "head") -> None:
    if connection.dialect.name == "postgresql":
        key = zlib.crc32(f"safeguard-migrate-{service}".encode())
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    command.upgrade(alembic_config(service, connection), revision)


async def upgrade(engine: AsyncEngine, service: str, revision: str = "head") -> None:
    """Migrate `service`'s tables to `revision` (default head) in one transaction."""
    lock = _LOCKS.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock, engine.begin() as conn:
        await conn.run_sync(_upgrade_sync, service, revision)


def _current_sync(connection: Connection, service: str) -> str | None:
    ctx = MigrationContext.configure(connection, opts={"version_table": version_table(service)})
    return ctx.get_current_revision()


async def current_revision(engine: AsyncEngine, service: str) -> str | None:
    """The revision `service`'s tables are at, or None before the first upgrade."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current_sync, service)


def head_revision(service: str) -> str | None:
    """The newest revision among `service`'s migration scripts."""
    return ScriptDirectory.from_config(alembic_config(service)).get_current_head()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shared.storage")
    parser.add_argument("action", choices=["upgrade", "current", "heads", "revision"])
    parser.add_argument("service")
    parser.add_argument("--url", help="database URL (default: $SAFEGUARD_DATABASE_URL or SQLite)")
    parser.add_argument("-m", "--message", default="change")
    parser.add_argument("--autogenerate", action="store_true")
    parser.add_argument("--rev-id", help="e.g. 0002 (default: random)")
    args = parser.parse_args(argv)
    url = args.url or os.environ.get("SAFEGUARD_DATABASE_URL") or default_url(
        os.environ.get("SAFEGUARD_DATA_DIR", "./var"), args.service)
    if args.action == "heads":
        print(head_revision(args.service))
    elif args.action == "revision":
        command.revision(alembic_config(args.service, url=url), args.message,
                         autogenerate=args.autogenerate, rev_id=args.rev_id)
    else:
        asyncio.run(_run(args.action, url, args.service))


async def _run(action: str, url: str, service: str) -> None:
    engine = create_engine(url)
    try:
        if action == "upgrade":
            await upgrade(engine, service)
        print(await current_revision(engine, service))
    finally:
        await engine.dispose()
