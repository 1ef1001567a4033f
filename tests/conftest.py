"""Fixtures for the real servers on this machine.

Every broker test runs in its own RabbitMQ virtual host and every database test in
its own PostgreSQL database, created here and removed afterwards, so runs never see
each other's queues or rows. A server that does not answer fails the test loudly:
`make test` starts them first (scripts/ensure-services.sh); nothing is skipped.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote

import pytest

from tests.reliability import (  # noqa: F401  docs/reliability.md from the tests' own results
    pytest_deselected, pytest_runtest_logreport, pytest_sessionfinish, reliability,
)

AMQP_HOST = os.environ.get("SAFEGUARD_TEST_AMQP_HOST", "127.0.0.1")
PG_ADMIN_DSN = os.environ.get("SAFEGUARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _rabbitmqctl(*args: str) -> str:
    proc = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


class VhostPool:
    """Fresh RabbitMQ vhosts for tests, made in batches.

    Each `rabbitmqctl` call boots an Erlang VM (~0.7 s), so vhosts are created
    16 at a time with one `import_definitions`, and used ones are deleted a few
    at a time in a background thread (quorum queues of finished tests must not
    pile up on the node). Names carry the pid, so concurrent test sessions never
    touch each other's vhosts; leftovers of dead sessions are removed at start.
    """

    BATCH = 16
    RELEASE_BATCH = 4

    def __init__(self) -> None:
        self.prefix = f"sg-test-{os.getpid()}-"
        self.free: list[str] = []
        self.made: list[str] = []
        self.used: list[str] = []
        self.deleters: list[threading.Thread] = []

    def release(self, name: str) -> None:
        self.used.append(name)
        if len(self.used) >= self.RELEASE_BATCH:
            batch, self.used = self.used, []
            t = threading.Thread(target=self.delete, args=(batch,), daemon=True)
            t.start()
            self.deleters.append(t)

    def take(self) -> str:
        if not self.free:
            self._create()
        return self.free.pop(0)

    def _create(self) -> None:
        start = len(self.made)
        names = [f"{self.prefix}{i}" for i in range(start, start + self.BATCH)]
        defs = {
            "vhosts": [{"name": n} for n in names],
            "permissions": [
                {"user": "guest", "vhost": n, "configure": ".*", "write": ".*", "read": ".*"} for n in names
            ],
        }
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(defs, f)
        os.chmod(f.name, 0o644)  # read by the broker node, which runs as another user
        try:
            _rabbitmqctl("import_definitions", f.name)
            for _ in range(50):  # the import is asynchronous: wait for the permissions too
                if set(names) <= _guest_vhosts():
                    break
                time.sleep(0.2)
            else:
                raise RuntimeError("rabbitmqctl import_definitions did not create the test vhosts")
        finally:
            os.unlink(f.name)
        self.made += names
        self.free += names

    @staticmethod
    def delete(names: list[str]) -> None:
        if not names:
            return
        erl = ",".join(f'<<"{n}">>' for n in names)
        try:
            _rabbitmqctl("eval", f'[rabbit_vhost:delete(V, <<"tests">>) || V <- [{erl}]].')
        except RuntimeError:
            for n in names:
                subprocess.run(["rabbitmqctl", "delete_vhost", n], capture_output=True, timeout=60)

    def close(self) -> None:
        for t in self.deleters:
            t.join(timeout=120)
        self.delete(self.used + self.free)

    @staticmethod
    def remove_stale() -> None:
        stale = []
        for name in _vhosts():
            m = re.fullmatch(r"sg-test-(\d+)-\d+", name)
            if m and not _pid_alive(int(m.group(1))):
                stale.append(name)
        VhostPool.delete(stale)


def _vhosts() -> set[str]:
    return {v["name"] for v in json.loads(_rabbitmqctl("list_vhosts", "--formatter", "json"))}


def _guest_vhosts() -> set[str]:
    out = _rabbitmqctl("list_user_permissions", "guest", "--formatter", "json")
    return {p["vhost"] for p in json.loads(out)}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="session")
def vhost_pool() -> Iterator[VhostPool]:
    VhostPool.remove_stale()
    pool = VhostPool()
    yield pool
    pool.close()


@pytest.fixture
def amqp_vhost(vhost_pool: VhostPool) -> Iterator[str]:
    """A fresh RabbitMQ vhost of this test's own, deleted soon after the test."""
    name = vhost_pool.take()
    yield name
    vhost_pool.release(name)


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
async def service_databases() -> AsyncIterator[dict[str, str]]:
    """One fresh PostgreSQL database per service, as in production (the multi-process runs)."""
    async with contextlib.AsyncExitStack() as stack:
        yield {svc: await stack.enter_async_context(fresh_pg_database())
               for svc in ("intake", "escalation", "notifier")}


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


def deselect_unless_marked(config, items, directory: Path, marker: str) -> None:
    """Leave out the tests under `directory` unless the run selects them with `-m MARKER`
    (the long multi-process runs: `make test-cluster`, `make test-faults`)."""
    if marker in (config.option.markexpr or ""):
        return
    mine = [item for item in items if directory in Path(item.path).parents]
    if mine:
        config.hook.pytest_deselected(items=mine)
        items[:] = [item for item in items if item not in mine]


def mark_directory(items, directory: Path, *markers: str) -> None:
    """Give every test under `directory` these markers (e.g. broker, database)."""
    for item in items:
        if directory in Path(item.path).parents:
            for marker in markers:
                item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture
async def browser():
    """A real headless Chromium (tests/support/browser.py), closed after the test."""
    from tests.support.browser import chromium

    async with chromium() as launched:
        yield launched
