"""Security tests reuse the intake and escalation worlds (real RabbitMQ and PostgreSQL)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.escalation.conftest import esc  # noqa: F401
from tests.intake.conftest import intake, intake_settings  # noqa: F401


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.broker)
            item.add_marker(pytest.mark.database)
