"""Bus test fixtures: service keys, a robust connection per test, the declared topology."""
from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aio_pika.abc import AbstractRobustConnection
from nacl.signing import SigningKey

from shared import bus
from tests.bus.helpers import robust_connection

SERVICES = ("intake", "escalation", "notifier")


@pytest.fixture
def signing_keys() -> dict[str, SigningKey]:
    return {name: SigningKey.generate() for name in SERVICES}


@pytest.fixture
def verify_keys(signing_keys):
    return {name: key.verify_key for name, key in signing_keys.items()}


@pytest.fixture
async def connection(amqp_url: str) -> AsyncIterator[AbstractRobustConnection]:
    async with robust_connection(amqp_url, "test-bus") as conn:
        yield conn


@pytest.fixture
async def topology(connection) -> None:
    async with connection.channel() as channel:
        await bus.declare_topology(channel, ["dev-force"])


@pytest.fixture
async def publisher(connection, topology, signing_keys) -> AsyncIterator[bus.Publisher]:
    pub = bus.Publisher(connection, producer="intake", signing_key=signing_keys["intake"])
    await pub.start()
    yield pub
    await pub.close()
