"""Fixtures for the real servers on this machine.

Every broker test runs in its own RabbitMQ virtual host and every database test in
its own PostgreSQL database, created here and removed afterwards, so runs never see
each other's queues or rows. A server that does not answer fails the test loudly:
`make test` starts them first (scripts/ensure-services.sh); nothing is skipped.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote

import pytest

AMQP_HOST = os.environ.get("SAFEGUARD_TEST_AMQP_HOST", "127.0.0.1")
PG_ADMIN_DSN = os.environ.get("SAFEGUARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _rabbitmqctl(*args: str) -> str:
    proc = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


@pytest.fixture
def amqp_vhost() -> Iterator[str]:
    """A fresh RabbitMQ vhost, deleted after the test."""
    vhost = f"sg-test-{uuid.uuid4().hex[:12]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield vhost
    finally:
        try:
            _rabbitmqctl("delete_vhost", vhost)
        except RuntimeError:
            pass


@pytest.fixture
def amqp_url(amqp_vhost: str) -> str:
    return f"amqp://guest:guest@{AMQP_HOST}:5672/{quote(amqp_vhost, safe='')}"


@pytest.fixture
def rabbitmqctl():
    """Run rabbitmqctl against the local node (e.g. close_all_connections)."""
    return _rabbitmqctl


@contextlib.asynccontextmanager
async def fresh_pg_database() -> AsyncIterator[str]:
    """Create a PostgreSQL database; yield its SQLAlchemy asyncpg URL; drop it."""
    import asyncpg

    name = f"sg_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database (SQLAlchemy asyncpg URL), dropped afterwards."""
    async with fresh_pg_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/test.db"


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request, tmp_path) -> AsyncIterator[str]:
    """Run a storage test on both the embedded SQLite and the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/test.db"
    else:
        async with fresh_pg_database() as url:
            yield url
