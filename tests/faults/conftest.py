"""Fault injection under load (issue 8). Minutes long, so `make test` leaves it out: the
tests here are marked `faults` and deselected unless the run asks for them with
`-m faults` (`make test-faults` does). Its databases: `service_databases` (tests/conftest.py)."""
from __future__ import annotations

from pathlib import Path

from tests.conftest import deselect_unless_marked

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    deselect_unless_marked(config, items, HERE, "faults")
