"""Fuzzing fixtures: the real intake (RabbitMQ vhost + PostgreSQL database) with the rate
limit lifted, so generated requests reach validation instead of a 429."""
from __future__ import annotations

from pathlib import Path

import pytest

from services.intake.bootstrap import create_app
from tests.conftest import mark_directory
from tests.escalation.conftest import esc  # noqa: F401  the escalation world (fixture)
from tests.intake.conftest import Intake, make_settings
from tests.notifier.conftest import world  # noqa: F401  the notifier world (fixture)


def pytest_collection_modifyitems(config, items):
    mark_directory(items, Path(__file__).parent, "broker", "database")


@pytest.fixture
async def fuzz_intake(tmp_path, amqp_url, pg_url, aiohttp_client) -> Intake:
    settings = make_settings(tmp_path, amqp_url, pg_url, rate_limit_per_minute=1_000_000)
    client = await aiohttp_client(create_app(settings))
    return Intake(client, settings, tmp_path)
