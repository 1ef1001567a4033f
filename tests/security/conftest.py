"""Security tests reuse the intake and escalation worlds (real RabbitMQ and PostgreSQL)."""
from __future__ import annotations

from pathlib import Path

from tests.conftest import mark_directory
from tests.escalation.conftest import esc  # noqa: F401
from tests.intake.conftest import intake, intake_settings  # noqa: F401


def pytest_collection_modifyitems(config, items):
    mark_directory(items, Path(__file__).parent, "broker", "database")
