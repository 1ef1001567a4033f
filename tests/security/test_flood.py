"""Issue 18 #7: a flood of unauthenticated requests. Before the fix every one wrote an audit
entry under the chain's head lock (1,000 unsigned POSTs → 1,000 rows, the claimed `keyid` as
the actor, legitimate writes queued behind them). Now: a limit per address before any
signature work, and refusals before authentication counted and audited as aggregates."""
from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import REGISTRY

from services.intake.bootstrap import create_app
from services.intake.entrypoints.http import CONTEXT
from tests.factories import referral
from tests.intake.conftest import Intake, make_settings

pytestmark = [pytest.mark.broker, pytest.mark.database]


def _rejected(reason: str) -> float:
    labels = {"action": "referral.submit", "reason": reason, "via": "http"}
    return REGISTRY.get_sample_value("safeguard_intake_rejected_total", labels) or 0.0


async def test_a_flood_of_unsigned_and_forged_requests_writes_aggregates_not_rows(intake, reliability):
    before_rows, before_metric = len(await intake.audit_rows()), _rejected("missing_signature")
    forged = {**intake.signed("POST", "/v1/referrals", "dev-mash", b"{}", key_as="dev-prevent"),
              "Content-Type": "application/json"}
    started = time.monotonic()
    sem = asyncio.Semaphore(50)

    async def post(i: int) -> int:
        async with sem:
            headers = forged if i % 2 else {"Content-Type": "application/json"}
            async with intake.client.post("/v1/referrals", data=b"{}", headers=headers) as resp:
                return resp.status

    statuses = await asyncio.gather(*(post(i) for i in range(500)))
    flood_s = time.monotonic() - started
    assert set(statuses) == {401}
    ok = await intake.submit(referral())  # a legitimate write is not queued behind 500 audit rows
    assert ok.status == 202
    assert len(await intake.audit_rows()) == before_rows + 1  # only the accepted referral, so far
    assert _rejected("missing_signature") - before_metric == 250
    ctx = intake.app[CONTEXT]
    assert await ctx.rejections.flush(intake.engine, ctx.clock()) == 2
    aggregates = [r for r in await intake.audit_rows() if r.actor == "unauthenticated"]
    assert sorted((r.detail["reason"], r.detail["count"], r.detail.get("claimed_keyid")) for r in aggregates) == [
        ("bad_signature", 250, "dev-mash"), ("missing_signature", 250, None)]
    assert all(r.actor != "dev-mash" for r in await intake.audit_rows() if r.outcome == "rejected")
    reliability.row("attacks", finding="#7", attack="500 unauthenticated POSTs (half unsigned, half signed "
                    "with another client's key claiming dev-mash), 50 at a time",
                    before="1,000 POSTs → 1,000 audit rows under the head lock, the claimed keyid as actor",
                    after=f"2 aggregate audit entries (actor 'unauthenticated', counts 250 + 250, the claimed "
                          f"keyid in the detail); metrics count each; flood took {flood_s:.1f} s; a signed "
                          "referral right after: 202")


async def test_one_address_is_limited_before_any_signature_work(tmp_path, amqp_url, pg_url, aiohttp_client):
    settings = make_settings(tmp_path, amqp_url, pg_url, rate_limit_per_address_per_minute=20)
    intake = Intake(await aiohttp_client(create_app(settings)), settings, tmp_path)
    statuses = [(await intake.client.post("/v1/referrals", data=b"{}")).status for _ in range(25)]
    assert statuses[:20] == [401] * 20 and statuses[20:] == [429] * 5
    resp = await intake.client.post("/v1/referrals", data=b"{}")
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
    ctx = intake.app[CONTEXT]
    await ctx.rejections.flush(intake.engine, ctx.clock())
    limited = [r for r in await intake.audit_rows() if r.detail and r.detail.get("reason") == "rate_limited"]
    assert [(r.actor, r.detail["count"], r.detail.get("claimed_keyid")) for r in limited] == [
        ("unauthenticated", 6, None)]


async def test_invented_key_ids_do_not_each_become_an_audit_entry(intake):
    """Review finding: random claimed key ids each made an aggregate entry of their own."""
    import uuid
    for _ in range(40):
        headers = {**intake.signed("POST", "/v1/referrals", f"x{uuid.uuid4().hex[:12]}", b"{}", key_as="dev-mash"),
                   "Content-Type": "application/json"}
        assert (await intake.client.post("/v1/referrals", data=b"{}", headers=headers)).status == 401
    ctx = intake.app[CONTEXT]
    assert await ctx.rejections.flush(intake.engine, ctx.clock()) == 1
    [entry] = [r for r in await intake.audit_rows() if r.actor == "unauthenticated"]
    assert (entry.detail["claimed_keyid"], entry.detail["count"]) == ("unknown", 40)
