"""Issue 18 ("Also"): the per-client rate limit is shared by every replica (DESIGN §5). Before,
each replica kept its own token bucket in memory, so N replicas gave N× the limit. Two intake
apps on one PostgreSQL database, each a real aiohttp server, stand for two replicas."""
from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import event

from services.intake.auth import RateLimiter
from services.intake.bootstrap import create_app
from services.intake.domain.errors import RateLimited
from services.intake.entrypoints.http import CONTEXT
from services.intake.ratelimit import SharedRateLimiter
from shared.http import PROBLEM_CONTENT_TYPE
from tests.factories import referral
from tests.intake.conftest import Intake, make_settings

pytestmark = [pytest.mark.broker, pytest.mark.database]
N = 10


class _PerReplica:
    """The limiter before the fix: a token bucket in each replica's own memory."""

    def __init__(self, per_minute: int) -> None:
        self.bucket = RateLimiter(per_minute)

    async def take_in(self, conn, client_id: str) -> RateLimited | None:
        try:
            self.bucket.take(client_id)
        except RateLimited as refusal:
            return refusal
        return None


class _Clock:
    """The limiters' real time, shifted so the test runs from the 20th second of a minute (a
    burst does not straddle two minutes), and moved on by `advance`."""

    def __init__(self) -> None:
        self.shift = (time.time() - 20) % 60

    def __call__(self) -> float:
        return time.time() - self.shift

    def advance(self, seconds: float) -> None:
        self.shift -= seconds


def _statements(replicas: list[Intake]) -> list[str]:
    """The statements that touch the rate-limit table, on both replicas' engines."""
    seen: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        if "intake_rate_limits" in statement:
            seen.append(statement)
    for r in replicas:
        event.listen(r.engine.sync_engine, "before_cursor_execute", record)
    return seen


def _span(values: list[int]) -> str:
    return f"{min(values)}" if min(values) == max(values) else f"{min(values)}–{max(values)}"


async def _burst(replicas: list[Intake], count: int, tag: str) -> list:
    return await asyncio.gather(*(replicas[i % 2].submit(referral(client_reference=f"{tag}{i}"))
                                  for i in range(count)))


async def test_a_client_gets_its_limit_across_two_replicas_not_twice_it(tmp_path, amqp_url, pg_url, aiohttp_client,
                                                                        reliability):
    settings = make_settings(tmp_path, amqp_url, pg_url, rate_limit_per_minute=N)
    replicas = [Intake(await aiohttp_client(create_app(settings)), settings, tmp_path) for _ in range(2)]
    clock = _Clock()
    shared = [r.app[CONTEXT].limiter for r in replicas]
    assert all(isinstance(s, SharedRateLimiter) for s in shared)
    for s in shared:
        s.now = clock  # type: ignore[union-attr]

    for r in replicas:  # before: each replica its own bucket
        r.app[CONTEXT].limiter = _PerReplica(N)  # type: ignore[assignment]
    before = sum(resp.status == 202 for resp in await _burst(replicas, 3 * N, "B"))
    assert before >= 2 * N

    for r, s in zip(replicas, shared):
        r.app[CONTEXT].limiter = s
    statements = _statements(replicas)
    # Pairs in turn, one request to each replica at once: a replica's group commit takes a
    # whole concurrent burst's claims together, and this checks that each replica admits
    # while the budget lasts and refuses after (not that one replica wins a race).
    replies = [resp for i in range(0, 3 * N, 2)
               for resp in await _burst(replicas, 2, f"A{i}-")]
    statuses = [resp.status for resp in replies]
    assert statuses.count(202) == N and statuses.count(429) == 2 * N
    assert 202 in statuses[0::2] and 202 in statuses[1::2]  # both replicas admitted some
    limited = [resp for resp in replies if resp.status == 429]
    waits = [int(resp.headers["Retry-After"]) for resp in limited]
    assert min(waits) >= 1 and max(waits) <= 2 * 60
    for resp in limited:
        assert resp.content_type == PROBLEM_CONTENT_TYPE
        assert (await resp.json())["reason"] == "rate_limited"
    burst_statements = len(statements)
    assert burst_statements <= 3 * N  # at most one per authenticated request

    statements.clear()  # a refused client is refused from memory until its Retry-After
    for r in replicas:
        assert (await r.submit(referral(client_reference="again"))).status == 429
    assert statements == []

    clock.advance(max(waits))
    ok = await replicas[1].submit(referral(client_reference="later"))
    assert ok.status == 202 and len(statements) == 1
    reliability.row("attacks", finding="shared rate limit", attack=f"one client limited to {N}/minute sends "
                    f"{3 * N} referrals, two at a time (one to each of two intake replicas on one database)",
                    before=f"each replica its own in-memory bucket: {before} accepted ({before / N:.1f}× the limit)",
                    after=f"{statuses.count(202)} accepted, {statuses.count(429)} refused 429 with Retry-After "
                          f"{_span(waits)} s; {burst_statements} rate-limit statements for {3 * N} requests "
                          "(one upsert each at most; none while a refusal lasts); admitted again after Retry-After")
