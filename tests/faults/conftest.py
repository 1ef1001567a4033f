"""Fault injection under load (issue 8). Minutes long, so `make test` leaves it out: the
tests here are marked `faults` and deselected unless the run asks for them with
`-m faults` (`make test-faults` does)."""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import deselect_unless_marked, fresh_pg_database

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    deselect_unless_marked(config, items, HERE, "faults")


@pytest.fixture
async def service_databases() -> AsyncIterator[dict[str, str]]:
    """One fresh PostgreSQL database per service, as in production."""
    async with contextlib.AsyncExitStack() as stack:
        yield {svc: await stack.enter_async_context(fresh_pg_database())
               for svc in ("intake", "escalation", "notifier")}
