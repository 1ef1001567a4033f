"""Every service signs its audit head when it stops (and every few minutes while it runs)."""
from __future__ import annotations

import asyncio
import importlib
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestServer

from safeguard import keys
from shared.audit import record, verify_chain
from shared.config import load_settings
from shared.runtime import RUNTIME, service_verify_keys
from shared.storage import create_engine

pytestmark = [pytest.mark.broker, pytest.mark.database]


@pytest.mark.parametrize("service", ["intake", "escalation", "notifier"])
async def test_a_stopping_service_signs_a_checkpoint_over_its_last_entry(service, tmp_path, amqp_url, pg_url):
    config = keys.init(tmp_path)
    settings = load_settings({"SAFEGUARD_CONFIG": str(config), "SAFEGUARD_DATA_DIR": str(tmp_path),
                              "SAFEGUARD_AMQP_URL": amqp_url, "SAFEGUARD_DATABASE_URL": pg_url})
    bootstrap = importlib.import_module(f"services.{service}.bootstrap")
    tables = importlib.import_module(f"services.{service}.adapters.tables")
    server = TestServer(bootstrap.create_app(settings))
    await server.start_server()
    engine = server.app[RUNTIME].engine
    try:
        async with engine.begin() as conn:
            seq = await record(conn, tables.audit, actor="test", action="test.entry", detail={"n": 1},
                               at=datetime.now(UTC))
    finally:
        await server.close()  # the final checkpoint happens here
    engine = create_engine(pg_url)
    try:
        async with engine.connect() as conn:
            signed = (await conn.execute(sa.select(tables.audit_checkpoints.c.seq))).scalars().all()
            verdict = await verify_chain(conn, tables.audit, tables.audit_checkpoints,
                                         service_verify_keys(settings)[service])
    finally:
        await engine.dispose()
    assert max(signed) >= seq
    assert verdict.ok and verdict.checkpoints >= 1


async def test_two_replicas_signing_the_same_head_at_once_is_not_an_error(tmp_path, amqp_url, pg_url):
    from services.escalation import bootstrap
    from services.escalation.adapters import tables
    from shared.checkpointer import checkpoint_now

    config = keys.init(tmp_path)
    settings = load_settings({"SAFEGUARD_CONFIG": str(config), "SAFEGUARD_DATA_DIR": str(tmp_path),
                              "SAFEGUARD_AMQP_URL": amqp_url, "SAFEGUARD_DATABASE_URL": pg_url})
    servers = [TestServer(bootstrap.create_app(settings)) for _ in range(2)]
    for server in servers:
        await server.start_server()
    try:
        async with servers[0].app[RUNTIME].engine.begin() as conn:
            seq = await record(conn, tables.audit, actor="test", action="test.entry", at=datetime.now(UTC))
        clock = lambda: datetime.now(UTC)  # noqa: E731
        signed = await asyncio.gather(*(checkpoint_now(s.app, tables.audit, tables.audit_checkpoints, clock)
                                        for s in servers))
        assert sorted(signed, key=lambda v: v is not None) == [None, seq]  # one signs, the other yields
    finally:
        for server in servers:
            await server.close()
