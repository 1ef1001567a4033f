"""Every service signs its audit head when it stops (and every few minutes while it runs),
and copies every checkpoint to the stream `safeguard.audit.checkpoints` outside its own
tables, which `safeguard audit verify` reads (DESIGN §5, issue 18 #2)."""
from __future__ import annotations

import asyncio
import importlib
import json
from datetime import UTC, datetime

import aio_pika
import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestServer

from safeguard import cli, keys
from shared.audit import canonical, chain_hash, record, verify_chain
from shared.config import load_settings
from shared.runtime import RUNTIME, service_verify_keys
from shared.storage import create_engine
from tests.conftest import AMQP_HOST
from tests.faults.proxy import Proxy

pytestmark = [pytest.mark.broker, pytest.mark.database]
STREAM = "safeguard.audit.checkpoints"


def make_settings(tmp_path, amqp_url, pg_url):
    config = keys.init(tmp_path)
    return load_settings({"SAFEGUARD_CONFIG": str(config), "SAFEGUARD_DATA_DIR": str(tmp_path),
                          "SAFEGUARD_AMQP_URL": amqp_url, "SAFEGUARD_DATABASE_URL": pg_url})


async def stream_records(amqp_url: str) -> list[dict]:
    """Every record in the checkpoint stream, read raw from its first offset."""
    conn = await aio_pika.connect(amqp_url)
    found: list[dict] = []
    try:
        channel = await conn.channel()
        await channel.set_qos(prefetch_count=100)
        queue = await channel.declare_queue(STREAM, passive=True)
        async with queue.iterator(arguments={"x-stream-offset": "first"}) as it:
            try:
                while True:
                    message = await asyncio.wait_for(it.__anext__(), 2)
                    await message.ack()
                    found.append(json.loads(message.body))
            except TimeoutError:
                pass
    finally:
        await conn.close()
    return found


async def audit_verify(settings, monkeypatch, capsys, service: str, amqp_url: str | None = None) -> tuple[int, str]:
    """`safeguard audit verify`: its exit code and `service`'s verdict line."""
    for name, value in (("SAFEGUARD_CONFIG", str(settings.config_path)),
                        ("SAFEGUARD_AMQP_URL", amqp_url or settings.amqp_url),
                        ("SAFEGUARD_DATABASE_URL", settings.database_url)):
        monkeypatch.setenv(name, value)
    code = await asyncio.to_thread(cli.main, ["audit", "verify"])
    return code, next(line for line in capsys.readouterr().out.splitlines() if line.startswith(f"{service}:"))


async def run_and_stop(settings, service: str, entries: int = 1) -> int:
    """Start `service`, append `entries` audit entries, stop it cleanly; the last seq."""
    bootstrap = importlib.import_module(f"services.{service}.bootstrap")
    tables = importlib.import_module(f"services.{service}.adapters.tables")
    server = TestServer(bootstrap.create_app(settings))
    await server.start_server()
    try:
        async with server.app[RUNTIME].engine.begin() as conn:
            for n in range(entries):
                seq = await record(conn, tables.audit, actor="test", action="test.entry", detail={"n": n},
                                   at=datetime.now(UTC))
    finally:
        await server.close()  # the final checkpoint happens here
    return seq


@pytest.mark.parametrize("service", ["intake", "escalation", "notifier"])
async def test_a_stopping_service_signs_a_checkpoint_over_its_last_entry(service, tmp_path, amqp_url, pg_url,
                                                                        monkeypatch, capsys):
    settings = make_settings(tmp_path, amqp_url, pg_url)
    tables = importlib.import_module(f"services.{service}.adapters.tables")
    seq = await run_and_stop(settings, service)
    engine = create_engine(pg_url)
    try:
        async with engine.connect() as conn:
            signed = (await conn.execute(sa.select(tables.audit_checkpoints.c.seq))).scalars().all()
            verdict = await verify_chain(conn, tables.audit, tables.audit_checkpoints,
                                         service_verify_keys(settings)[service])
    finally:
        await engine.dispose()
    assert max(signed) == seq
    assert verdict.ok and verdict.checkpoints >= 1
    mine = [r for r in await stream_records(amqp_url) if r["service"] == service]
    assert [r["event"] for r in mine] == ["start", "final"]
    assert (mine[-1]["seq"], mine[0]["replica"]) == (seq, mine[-1]["replica"])  # one replica, its head covered
    assert await audit_verify(settings, monkeypatch, capsys, service) == (
        0, f"{service}: ok ({seq} entries, 1 checkpoints)")


async def test_after_a_clean_stop_an_entry_beyond_the_final_checkpoint_or_a_rewritten_head_fails(
        tmp_path, amqp_url, pg_url, monkeypatch, capsys):
    from services.escalation.adapters import tables

    settings = make_settings(tmp_path, amqp_url, pg_url)
    seq = await run_and_stop(settings, "escalation", entries=3)
    engine = create_engine(pg_url)
    try:
        async with engine.begin() as conn:  # appended while the service was stopped
            await record(conn, tables.audit, actor="someone", action="test.entry", at=datetime.now(UTC))
        assert await audit_verify(settings, monkeypatch, capsys, "escalation") == (1, (
            f"escalation: FAILED at entry {seq + 1}: head {seq + 1} is not covered by a checkpoint after a clean "
            f"stop (last checkpoint {seq})"))
        async with engine.begin() as conn:  # take it back out, then rewrite the head and drop its checkpoint
            await conn.execute(sa.delete(tables.audit).where(tables.audit.c.seq == seq + 1))
            head = (await conn.execute(sa.select(tables.audit).where(tables.audit.c.seq == seq))).one()
            h = chain_hash(head.prev_hash, canonical(seq, head.at, "someone", head.action, head.reference,
                                                     head.outcome, head.detail))
            await conn.execute(sa.update(tables.audit).where(tables.audit.c.seq == seq).values(actor="someone", hash=h))
            await conn.execute(sa.update(tables.audit_head).values(seq=seq, hash=h))
            await conn.execute(sa.delete(tables.audit_checkpoints))
        assert await audit_verify(settings, monkeypatch, capsys, "escalation") == (1, (
            f"escalation: FAILED at entry {seq}: checkpoint {seq} is in the external store but missing from the table"))
    finally:
        await engine.dispose()


async def test_a_checkpoint_made_while_the_broker_is_down_is_published_when_it_is_back(
        tmp_path, amqp_url, pg_url, monkeypatch, capsys):
    from services.escalation import bootstrap
    from services.escalation.adapters import tables
    from shared.checkpointer import checkpoint_now

    proxy = Proxy(AMQP_HOST, 5672)
    await proxy.start()
    settings = make_settings(tmp_path, amqp_url.replace(f"@{AMQP_HOST}:5672/", f"@127.0.0.1:{proxy.port}/"), pg_url)
    server = TestServer(bootstrap.create_app(settings))
    await server.start_server()
    app = server.app
    try:
        await app[RUNTIME].relay.drain()
        async with app[RUNTIME].engine.begin() as conn:
            seq = await record(conn, tables.audit, actor="test", action="test.entry", at=datetime.now(UTC))
        assert proxy.cut() >= 1
        assert await checkpoint_now(app, tables.audit, tables.audit_checkpoints, lambda: datetime.now(UTC)) == seq
        await asyncio.sleep(1)
        assert [r["seq"] for r in await stream_records(amqp_url)] == [0]  # the start record only
        unsent = sa.select(sa.func.count()).select_from(tables.outbox).where(
            tables.outbox.c.routing_key == STREAM, tables.outbox.c.sent_at.is_(None))
        async with app[RUNTIME].engine.connect() as conn:
            assert await conn.scalar(unsent) == 1  # kept in the outbox, not lost
        proxy.restore()
        for _ in range(300):
            async with app[RUNTIME].engine.connect() as conn:
                if await conn.scalar(unsent) == 0:
                    break
            await asyncio.sleep(0.1)
        found = await stream_records(amqp_url)
        assert [(r["event"], r["seq"]) for r in found] == [("start", 0), ("checkpoint", seq)]
    finally:
        proxy.restore()  # so that a failure above still stops the service cleanly
        await server.close()
        await proxy.close()
    assert await audit_verify(settings, monkeypatch, capsys, "escalation", amqp_url) == (
        0, f"escalation: ok ({seq} entries, 1 checkpoints)")


async def test_a_forged_record_in_the_stream_fails_verify(tmp_path, amqp_url, pg_url, monkeypatch, capsys):
    from nacl.signing import SigningKey

    from shared.bus import sign_headers

    settings = make_settings(tmp_path, amqp_url, pg_url)
    seq = await run_and_stop(settings, "notifier")
    forger = SigningKey.generate()
    body = json.dumps({"service": "notifier", "replica": "x", "event": "final", "seq": seq + 1, "hash": "0" * 64,
                       "at": datetime.now(UTC).isoformat(), "signature": "AAAA"}).encode()
    conn = await aio_pika.connect(amqp_url)
    try:
        channel = await conn.channel()
        await channel.default_exchange.publish(aio_pika.Message(
            body, message_id="forged-1", headers=sign_headers(forger, "notifier", STREAM, "forged-1", body)), STREAM)
    finally:
        await conn.close()
    assert await audit_verify(settings, monkeypatch, capsys, "notifier") == (1, (
        f"notifier: FAILED at entry {seq + 1}: external checkpoint {seq + 1} has a bad signature (bad_signature)"))


async def test_two_replicas_signing_the_same_head_at_once_is_not_an_error(tmp_path, amqp_url, pg_url):
    from services.escalation import bootstrap
    from services.escalation.adapters import tables
    from shared.checkpointer import checkpoint_now

    settings = make_settings(tmp_path, amqp_url, pg_url)
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
