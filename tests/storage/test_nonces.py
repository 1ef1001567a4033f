"""Intake's nonce claim (replay protection for signed requests) on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from services.intake.adapters.repository import claim_nonce

from .conftest import T0

WINDOW = timedelta(seconds=600)


async def test_a_nonce_is_claimed_once_within_its_window_then_again_after_it(engine: AsyncEngine) -> None:
    assert await claim_nonce(engine, "mash-a", "n-1", T0, WINDOW) is True
    assert await claim_nonce(engine, "mash-a", "n-1", T0 + timedelta(seconds=599), WINDOW) is False
    assert await claim_nonce(engine, "mash-b", "n-1", T0, WINDOW) is True  # per client
    assert await claim_nonce(engine, "mash-a", "n-1", T0 + timedelta(seconds=600), WINDOW) is True  # expired
    # the takeover started a new window: a replay inside it is refused again
    assert await claim_nonce(engine, "mash-a", "n-1", T0 + timedelta(seconds=900), WINDOW) is False
