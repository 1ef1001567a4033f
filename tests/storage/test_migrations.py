"""Per-service Alembic migrations: prefixed tables, idempotent, one shared database."""
from __future__ import annotations

import asyncio
import importlib
import logging

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from shared.storage import create_engine, current_revision, head_revision, upgrade
from shared.storage.migrate import alembic_config, migrations_dir

SERVICES = ["intake", "escalation", "notifier"]


def _schema(conn) -> dict:
    insp = inspect(conn)
    return {t: sorted(c["name"] for c in insp.get_columns(t)) for t in insp.get_table_names()}


def _details(conn, svc: str) -> dict:
    insp = inspect(conn)
    return {
        "indexes": {i["name"]: i["column_names"] for i in insp.get_indexes(f"{svc}_outbox")
                    if not i.get("duplicates_constraint")},  # PG: the unique constraint's index
        "uniques": [u["column_names"] for u in insp.get_unique_constraints(f"{svc}_outbox")],
        "outbox_pk": insp.get_pk_constraint(f"{svc}_outbox")["constrained_columns"],
        "processed_pk": insp.get_pk_constraint(f"{svc}_processed")["constrained_columns"],
    }


@pytest.mark.parametrize("svc", SERVICES)
async def test_upgrade_creates_the_service_tables_and_is_idempotent(db_url: str, svc: str) -> None:
    engine = create_engine(db_url)
    try:
        assert await current_revision(engine, svc) is None
        await upgrade(engine, svc, "0001")  # the frozen first revision: outbox + processed
        assert await current_revision(engine, svc) == "0001"
        async with engine.connect() as conn:
            schema = await conn.run_sync(_schema)
            details = await conn.run_sync(_details, svc)
        assert set(schema) == {f"{svc}_outbox", f"{svc}_processed", f"alembic_version_{svc}"}
        assert schema[f"{svc}_outbox"] == sorted([
            "id", "message_id", "exchange", "routing_key", "body", "headers", "correlation_id",
            "created_at", "sent_at", "attempts", "last_error",
        ])
        assert schema[f"{svc}_processed"] == ["consumer", "message_id", "processed_at"]
        assert details["indexes"] == {f"ix_{svc}_outbox_sent_at_id": ["sent_at", "id"]}
        assert details["uniques"] == [["message_id"]]
        assert details["outbox_pk"] == ["id"]
        assert details["processed_pk"] == ["consumer", "message_id"]

        async with engine.begin() as conn:  # data must survive a second upgrade
            await conn.execute(text(
                f"INSERT INTO {svc}_processed (consumer, message_id, processed_at) "
                "VALUES ('c', 'm', CURRENT_TIMESTAMP)"))
        await upgrade(engine, svc, "0001")
        assert await current_revision(engine, svc) == "0001"
        async with engine.connect() as conn:
            assert await conn.run_sync(_schema) == schema
        await upgrade(engine, svc)
        assert await current_revision(engine, svc) == head_revision(svc)
        await upgrade(engine, svc)  # head twice: a no-op that keeps the data
        async with engine.connect() as conn:
            assert (await conn.execute(text(f"SELECT count(*) FROM {svc}_processed"))).scalar() == 1
    finally:
        await engine.dispose()


def _diff(conn, svc: str) -> list:
    tables = importlib.import_module(f"services.{svc}.adapters.tables")
    ctx = MigrationContext.configure(conn, opts={
        "version_table": f"alembic_version_{svc}", "compare_type": True,
        "include_name": lambda name, type_, _p: type_ != "table" or name.startswith(f"{svc}_"),
    })
    return compare_metadata(ctx, tables.metadata)


@pytest.mark.parametrize("svc", SERVICES)
async def test_migrated_schema_matches_the_service_tables_module(db_url: str, svc: str) -> None:
    engine = create_engine(db_url)
    try:
        await upgrade(engine, svc)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff, svc) == []
    finally:
        await engine.dispose()


async def test_all_services_share_one_postgres_database(pg_url: str) -> None:
    engines = [create_engine(pg_url) for _ in SERVICES]
    try:
        for _ in range(2):  # the second round is a no-op for every service
            await asyncio.gather(*(upgrade(e, svc) for e, svc in zip(engines, SERVICES)))
        for svc in SERVICES:
            assert await current_revision(engines[0], svc) == head_revision(svc)
        async with engines[0].connect() as conn:
            schema = await conn.run_sync(_schema)
            diffs = [await conn.run_sync(_diff, svc) for svc in SERVICES]
        assert set(schema) >= {
            f"{prefix}{svc}{suffix}" for svc in SERVICES
            for prefix, suffix in [("", "_outbox"), ("", "_processed"), ("alembic_version_", "")]
        }
        assert all(name.startswith(tuple(f"{p}{svc}" for svc in SERVICES for p in ("", "alembic_version_")))
                   for name in schema)
        assert diffs == [[], [], []]
    finally:
        for e in engines:
            await e.dispose()


async def test_replicas_migrating_the_same_service_at_once_both_succeed(pg_url: str) -> None:
    engines = [create_engine(pg_url) for _ in range(3)]
    try:
        await asyncio.gather(*(upgrade(e, "escalation") for e in engines))
        assert await current_revision(engines[0], "escalation") == head_revision("escalation")
    finally:
        for e in engines:
            await e.dispose()


@pytest.mark.parametrize("svc", SERVICES)
async def test_the_outbox_digest_revision_purges_rows_sent_before_it(db_url: str, svc: str) -> None:
    """issue 18 #3: an upgraded database keeps no payload of a message it had already sent."""
    engine = create_engine(db_url)
    try:
        await upgrade(engine, svc, {"intake": "0011", "escalation": "0009", "notifier": "0003"}[svc])
        async with engine.begin() as conn:
            for mid, sent in (("sent", "CURRENT_TIMESTAMP"), ("unsent", "NULL")):
                await conn.execute(text(
                    f"INSERT INTO {svc}_outbox (message_id, exchange, routing_key, body, headers, created_at, sent_at) "
                    f"VALUES (:m, 'x', 'referral.received', :b, '{{}}', CURRENT_TIMESTAMP, {sent})"),
                    {"m": mid, "b": b'{"contacts_sealed": "secret"}'})
        await upgrade(engine, svc)
        async with engine.connect() as conn:
            rows = dict((r.message_id, r) for r in (await conn.execute(text(
                f"SELECT message_id, body, body_size, body_sha256 FROM {svc}_outbox"))).all())
        assert (bytes(rows["sent"].body), rows["sent"].body_size, rows["sent"].body_sha256) == (b"", 29, None)
        assert (bytes(rows["unsent"].body), rows["unsent"].body_size) == (b'{"contacts_sealed": "secret"}', 29)
    finally:
        await engine.dispose()


def _downgrade(conn, svc: str) -> None:
    command.downgrade(alembic_config(svc, conn), "base")


async def test_downgrade_to_base_removes_only_that_services_tables(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await upgrade(engine, "intake")
        await upgrade(engine, "notifier")
        async with engine.begin() as conn:
            await conn.run_sync(_downgrade, "intake")
        assert await current_revision(engine, "intake") is None
        assert await current_revision(engine, "notifier") == head_revision("notifier")
        async with engine.connect() as conn:
            tables = set(await conn.run_sync(_schema))
        assert {"notifier_outbox", "notifier_processed"} <= tables
        assert not {"intake_outbox", "intake_processed"} & tables
    finally:
        await engine.dispose()


async def test_migrating_leaves_the_logging_configuration_alone(sqlite_url: str) -> None:
    ours = logging.getLogger("safeguard.storage-test")
    handlers, level = list(logging.root.handlers), logging.root.level
    engine = create_engine(sqlite_url)
    try:
        await upgrade(engine, "notifier")
    finally:
        await engine.dispose()
    assert not ours.disabled
    assert logging.root.handlers == handlers and logging.root.level == level


@pytest.mark.parametrize("svc", SERVICES)
def test_migrations_ship_inside_the_service_package(svc: str) -> None:
    path = migrations_dir(svc)
    assert path.parts[-3:] == (svc, "adapters", "migrations")
    for name in ["__init__.py", "env.py", "script.py.mako", "versions/__init__.py",
                 "versions/0001_initial.py"]:
        assert (path / name).is_file(), name
    assert len((path / "env.py").read_text().strip().splitlines()) <= 4
