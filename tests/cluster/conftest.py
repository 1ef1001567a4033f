"""The multi-node run: a 3-node RabbitMQ cluster of its own, fresh PostgreSQL databases
(`service_databases`, tests/conftest.py) and an aiosmtpd sink. Minutes long, so `make test`
leaves it out: the tests here are marked `cluster` and deselected unless the run asks for
them with `-m cluster` (`make test-cluster` does)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.rabbit import RabbitCluster
from tests.conftest import deselect_unless_marked
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
def smtp_sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink
