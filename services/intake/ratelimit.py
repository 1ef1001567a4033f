"""The per-client rate limit, shared by every replica (DESIGN §5, issue 18).

Each authenticated request costs one database statement (adapters/ratelimits.take_in): the
shared counts decide, so N replicas give the configured limit, not N times it. A refusal
also tells this replica until when the client stays refused whatever the other replicas do
(refused requests add nothing to the counts, so the estimate only falls), and until then
this replica refuses that client without asking the database: a client hammering past its
limit costs no statements.

The limit per client address, before authentication, stays per replica
(`auth.RateLimiter`, in memory): it guards each replica's own CPU against signature work,
and sharing it would turn a flood of unauthenticated requests, from addresses the sender
chooses, into database writes.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.intake.adapters import ratelimits
from services.intake.domain import ratelimit
from services.intake.domain.errors import RateLimited


class SharedRateLimiter:
    """`now` is real time (seconds since the epoch), not the service's clock a test may stop
    or move: the limit is on how fast requests really arrive."""

    def __init__(self, engine: AsyncEngine, per_minute: int, now: Callable[[], float] = time.time) -> None:
        self.engine, self.limit, self.now = engine, per_minute, now
        self._refused_until: dict[str, float] = {}  # client → wall-clock time

    async def take_in(self, conn: AsyncConnection, client_id: str) -> RateLimited | None:
        """Count one request of `client_id` in the caller's transaction (the one that claims
        the request's nonce): None when admitted, else the `RateLimited` (with the seconds to
        wait) to raise once that has committed, so the request's nonce stays claimed."""
        now = self.now()
        until = self._refused_until.get(client_id)
        if until is not None:
            if now < until:
                return RateLimited(max(1, math.ceil(until - now)), actor=client_id)
            del self._refused_until[client_id]
        at = ratelimit.position(now)
        counts = await ratelimits.take_in(conn, client_id, self.limit, at)
        if counts.admitted:
            return None
        wait = ratelimit.retry_after(self.limit, counts.current, counts.previous, at)
        self._refused_until[client_id] = now + wait
        return RateLimited(wait, actor=client_id)

    async def purge(self) -> int:
        """Drop the rows of clients idle for two minutes (their counts no longer matter)."""
        return await ratelimits.purge(self.engine, ratelimit.position(self.now()))
