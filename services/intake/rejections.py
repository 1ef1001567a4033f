"""Refusals before authentication, counted rather than written one by one (issue 18 #7).

A flood of unsigned or badly signed requests must not become a flood of audit entries, each
taking the audit chain's head lock ahead of legitimate writes. Such refusals are counted in
memory by (action, reason, claimed key id, via) and written as one audit entry per key each
minute (`count` in the detail) and at shutdown. The key id such a request claims is
unverified: it goes in the detail as `claimed_keyid`, never as the entry's actor. Refusals of
an authenticated client stay one entry each (they come after its rate limit).
"""
from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from services.intake.adapters import tables
from shared import audit
from shared.logging import get_logger

log = get_logger(__name__)

ACTOR = "unauthenticated"
FLUSH_EVERY_S = 60.0


class RejectionTally:
    """`known` tells a configured client id from any other text: an unknown claimed id is
    counted as "unknown", so invented ids cannot each become an entry of their own."""

    def __init__(self, known: Callable[[str], bool] = lambda _id: True) -> None:
        self.counts: Counter[tuple[str, str, str, str]] = Counter()
        self.known = known

    def add(self, *, action: str, reason: str, claimed: str | None, via: str) -> None:
        name = (claimed if self.known(claimed) else "unknown") if claimed else ""
        self.counts[(action, reason, name, via)] += 1

    async def flush(self, engine: AsyncEngine, now: datetime) -> int:
        """Write the counts so far (one audit entry per key, in one transaction); how many keys."""
        counts, self.counts = self.counts, Counter()
        if not counts:
            return 0
        try:
            async with engine.begin() as conn, audit.batched(conn, tables.audit):
                for (action, reason, claimed, via), n in sorted(counts.items()):
                    detail = {"reason": reason, "via": via, "count": n,
                              **({"claimed_keyid": claimed} if claimed else {})}
                    await audit.record(conn, tables.audit, actor=ACTOR, action=action, outcome="rejected",
                                       detail=detail, at=now)
        except Exception:  # the database is away: keep the counts for the next minute
            self.counts.update(counts)
            raise
        return len(counts)


def flusher_ctx(tally: Callable[[web.Application], RejectionTally], engine: Callable[[web.Application], AsyncEngine],
                clock: Callable[[web.Application], datetime]):
    """A cleanup context: flush every minute, and once more at shutdown."""
    async def run(app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(FLUSH_EVERY_S)
                try:
                    await tally(app).flush(engine(app), clock(app))
                except Exception as exc:  # kept; tried again next minute
                    log.warning("rejection_tally_flush_failed", error=type(exc).__name__)

        task = asyncio.create_task(loop())
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        try:
            await tally(app).flush(engine(app), clock(app))
        except Exception as exc:
            log.warning("rejection_tally_flush_failed", error=type(exc).__name__)
    return run
