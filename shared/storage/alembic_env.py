"""The body of every service's Alembic `env.py`.

A service's env.py is just `run_migrations("<service>", metadata)`. Each service
keeps its own version table (`alembic_version_<service>`) and, when
autogenerating, looks only at its own `<service>_*` tables, so all three can
share one PostgreSQL database. Nothing here configures logging (no fileConfig):
the process's structlog set-up stays in charge.

Migrations normally run on the connection `shared.storage.migrate.upgrade` passes
in `config.attributes["connection"]`; without one (a developer's
`python -m shared.storage …`) an engine is made from the configured URL.
"""
from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy import Connection, MetaData

from shared.storage.db import create_engine
from shared.storage.tables import UtcDateTime

__all__ = ["run_migrations", "version_table"]


def version_table(service: str) -> str:
    return f"alembic_version_{service}"


def _options(service: str, target_metadata: MetaData | None) -> dict[str, Any]:
    prefix = f"{service}_"

    def include_name(name: str | None, type_: str, _parent: Any) -> bool:
        return type_ != "table" or bool(name and name.startswith(prefix))

    return {
        "render_item": _render_item,
        "version_table": version_table(service),
        "target_metadata": target_metadata,
        "include_name": include_name,
        "compare_type": True,
    }


def _render_item(type_: str, obj: Any, _autogen_context: Any) -> str | bool:
    """Autogenerate writes plain `sa.DateTime(timezone=True)` for `UtcDateTime`."""
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _run_on(connection: Connection, options: dict[str, Any]) -> None:
    context.configure(
        connection=connection, render_as_batch=connection.dialect.name == "sqlite", **options,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_on_url(url: str, options: dict[str, Any]) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run_on, options)
    finally:
        await engine.dispose()


def run_migrations(service: str, target_metadata: MetaData | None = None) -> None:
    """Run the pending migrations of `service` (called from its env.py)."""
    config = context.config
    options = _options(service, target_metadata)
    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"), literal_binds=True,
            dialect_opts={"paramstyle": "named"}, **options,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection, options)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection in config.attributes and no sqlalchemy.url set")
    asyncio.run(_run_on_url(url, options))
