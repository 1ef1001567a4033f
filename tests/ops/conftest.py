"""Ops test fixtures: a dev set-up (`safeguard keys init`) pointed at this test's vhost."""
from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aio_pika.abc import AbstractRobustConnection

from safeguard import keys
from shared import bus
from shared.config import Settings, load_settings
from shared.runtime import service_signing_key, service_verify_keys
from tests.bus.helpers import robust_connection


@pytest.fixture
def config_path(tmp_path):
    return keys.init(tmp_path / "var")


@pytest.fixture
def ops_env(config_path, amqp_url) -> dict[str, str]:
    return {"SAFEGUARD_CONFIG": str(config_path), "SAFEGUARD_AMQP_URL": amqp_url,
            "SAFEGUARD_DATA_DIR": str(config_path.parent), "SAFEGUARD_LOG_FORMAT": "json"}


@pytest.fixture
def settings(ops_env) -> Settings:
    return load_settings(ops_env)


@pytest.fixture
async def connection(amqp_url: str) -> AsyncIterator[AbstractRobustConnection]:
    async with robust_connection(amqp_url, "test-ops") as conn:
        yield conn


@pytest.fixture
async def topology(connection, settings) -> None:
    async with connection.channel() as channel:
        await bus.declare_topology(channel, [f.slug for f in settings.file.forces])


@pytest.fixture
def verify_keys(settings):
    return service_verify_keys(settings)


@pytest.fixture
async def publisher(connection, topology, settings) -> AsyncIterator[bus.Publisher]:
    """Publishes as intake, with the config's intake key (what escalation verifies)."""
    pub = bus.Publisher(connection, producer="intake", signing_key=service_signing_key(settings, "intake"))
    await pub.start()
    yield pub
    await pub.close()
