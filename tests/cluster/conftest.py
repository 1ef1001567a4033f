"""The multi-node run: a 3-node RabbitMQ cluster of its own, fresh PostgreSQL databases
and an aiosmtpd sink. Minutes long, so `make test` leaves it out: the tests here are
marked `cluster` and deselected unless the run asks for them with `-m cluster`
(`make test-cluster` does)."""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.cluster.rabbit import RabbitCluster
from tests.conftest import deselect_unless_marked, fresh_pg_database
from tests.notifier.servers import SmtpSink

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    deselect_unless_marked(config, items, HERE, "cluster")


@pytest.fixture
def rabbit_cluster(tmp_path) -> Iterator[RabbitCluster]:
    """Three local nodes clustered with `rabbitmqctl join_cluster`; stopped afterwards, always."""
    cluster = RabbitCluster(tmp_path / "rabbit")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
async def service_databases() -> AsyncIterator[dict[str, str]]:
    """One fresh PostgreSQL database per service, as in production."""
    async with contextlib.AsyncExitStack() as stack:
        yield {svc: await stack.enter_async_context(fresh_pg_database())
               for svc in ("intake", "escalation", "notifier")}


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()
