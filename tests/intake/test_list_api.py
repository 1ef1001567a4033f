"""GET /v1/referrals (DESIGN §3.3): the calling team's organisation's referrals, metadata only,
newest first, in keyset pages — none skipped or repeated while referrals arrive between two
pages, older and newer; the filters (status, overdue, updated_since) agree with what each item
says; other organisations' referrals never listed; wrong roles 403; bad parameters 422 naming
the parameter, never echoing its value; one audit entry per call."""
from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from services.intake.entrypoints.http import CONTEXT
from tests.factories import referral
from tests.intake.conftest import OTHER_LA


class Clock:
    """A clock a test sets anywhere, backwards too (to receive an older referral late)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock(intake) -> Clock:
    c = Clock(datetime.now(UTC).replace(microsecond=0) - timedelta(days=3))
    intake.app[CONTEXT].clock = c
    return c


async def submit_at(intake, clock: Clock, at: datetime, **overrides) -> str:
    clock.at = at
    resp = await intake.submit(referral(**overrides))
    assert resp.status == 202, await resp.text()
    return (await resp.json())["reference"]


async def page(intake, client_id: str = "dev-social-care", query: str = "", status: int = 200) -> dict:
    resp = await intake.call("GET", "/v1/referrals", client_id, query=query)
    assert resp.status == status, await resp.text()
    return await resp.json()


async def traverse(intake, query: str, between=None) -> list[str]:
    """Every page of one traversal; `between(n)` runs after page n, when another follows."""
    refs, cursor, n = [], None, 0
    while True:
        got = await page(intake, query=query + (f"&cursor={cursor}" if cursor else ""))
        refs += [i["reference"] for i in got["items"]]
        n += 1
        cursor = got["next_cursor"]
        if cursor is None:
            return refs
        if between:
            await between(n)


async def test_no_referral_skipped_or_repeated_while_others_arrive_between_pages(intake, clock):
    t0 = clock.at
    existing = [await submit_at(intake, clock, t0 + timedelta(minutes=10 * i)) for i in range(8)]
    received: dict[str, str] = {}

    async def between(n: int) -> None:  # after each page: one newer, one older, one at a page's edge
        newer = await submit_at(intake, clock, t0 + timedelta(hours=5, minutes=n))
        older = await submit_at(intake, clock, t0 - timedelta(hours=n))
        received.update({newer: "newer", older: "older"})
        if n == 1:  # the same received_at as the last item of page 1 (the id breaks the tie)
            received[await submit_at(intake, clock, t0 + timedelta(minutes=50))] = "tie"

    refs = await traverse(intake, "limit=3", between)
    assert len(refs) == len(set(refs)), "a referral repeated across pages"
    assert set(existing) <= set(refs), "a referral that existed before the traversal was skipped"
    assert not {r for r, kind in received.items() if kind == "newer"} & set(refs)  # after page 1: not in it
    assert {r for r, kind in received.items() if kind == "older"} <= set(refs)  # older: still ahead
    assert [r for r in refs if r in existing] == existing[::-1]  # newest first
    everything = await traverse(intake, "limit=200")
    assert len(everything) == len(existing) + len(received) and len(set(everything)) == len(everything)


async def test_pages_read_while_referrals_are_submitted_concurrently(intake, clock):
    t0 = clock.at
    existing = [await submit_at(intake, clock, t0 + timedelta(minutes=i)) for i in range(6)]

    async def submitting() -> None:
        for i in range(8):  # alternately far older and far newer than every existing referral
            await submit_at(intake, clock, t0 + timedelta(hours=(-1) ** i * (i + 2)))

    refs, _ = await asyncio.gather(traverse(intake, "limit=2"), submitting())
    assert len(refs) == len(set(refs)) and set(existing) <= set(refs)


async def test_filters_agree_with_each_item(intake, clock):
    t0 = clock.at
    plain = await submit_at(intake, clock, t0)
    risky = await submit_at(intake, clock, t0 + timedelta(minutes=1), immediate_risk=True)
    acked = await submit_at(intake, clock, t0 + timedelta(minutes=2))
    decided = await submit_at(intake, clock, t0 + timedelta(minutes=3))
    clock.at = t0 + timedelta(minutes=10)
    for ref in (acked, decided):
        assert (await intake.call("POST", f"/v1/referrals/{ref}/acknowledgement", "dev-social-care")).status == 200
    decision = {"pathway": "early_help"}
    assert (await intake.call("POST", f"/v1/referrals/{decided}/decision", "dev-social-care", decision)).status == 200
    for ref in (acked, decided):  # CTP done too: nothing of theirs runs past the LA's clocks
        assert (await intake.call("POST", f"/v1/referrals/{ref}/checks", "dev-prevent",
                                  {"outcome": "not_suitable"})).status == 200

    assert {i["reference"] for i in (await page(intake, query="status=acknowledged"))["items"]} == {acked}
    assert {i["reference"] for i in (await page(intake, query="status=decided"))["items"]} == {decided}
    assert {i["reference"] for i in (await page(intake, query="status=closed"))["items"]} == set()

    clock.at = t0 + timedelta(minutes=90)  # the strategy discussion's 60 minutes are past; nothing else
    assert {i["reference"] for i in (await page(intake, query="overdue=true"))["items"]} == {risky}
    clock.at = t0 + timedelta(days=10)  # every acknowledge-by and checks-due-by is past
    items = (await page(intake))["items"]
    overdue = {i["reference"] for i in (await page(intake, query="overdue=true"))["items"]}
    assert overdue == {i["reference"] for i in items if i["overdue"]} == {plain, risky, acked}
    item = next(i for i in items if i["reference"] == acked)
    states = {c["clock"]: c["state"] for c in item["clocks"]}
    assert states == {"acknowledge_by": "met", "decide_by": "overdue", "checks_due_by": "met"}
    assert item["tracks"] == {"la": {"status": "acknowledged", "closed_at": None},
                              "ctp": {"status": "checks_completed", "closed_at": None}}
    assert item["holding"]["no_family_contact"] is True and "timeline" not in item
    assert not {"content_sealed", "contacts_sealed", "content"} & set(item)

    since = clock.at
    assert (await intake.call("POST", f"/v1/referrals/{plain}/close", "dev-social-care")).status == 200
    for text in (since.isoformat().replace("+", "%2B"), since.isoformat().replace("+00:00", "Z")):
        got = (await page(intake, query=f"updated_since={text}"))["items"]
        assert [i["reference"] for i in got] == [plain], text
        assert got[0]["updated_at"] and got[0]["tracks"]["la"]["status"] == "closed"
    month_ago = (since - timedelta(days=30)).isoformat().replace("+", "%2B")
    assert len((await page(intake, query=f"updated_since={month_ago}"))["items"]) == 4


async def test_only_the_callers_organisation_and_only_recipient_teams(intake, clock):
    ref = await submit_at(intake, clock, clock.at)
    assert [i["reference"] for i in (await page(intake, "dev-social-care"))["items"]] == [ref]
    assert [i["reference"] for i in (await page(intake, "dev-prevent"))["items"]] == [ref]
    assert (await page(intake, "other-social-care")) == {"items": [], "next_cursor": None}
    for client_id in ("dev-mash", "dev-control-room", "dev-ops"):
        problem = await page(intake, client_id, query="limit=oops", status=403)  # the role before the query
        assert problem["reason"] == "wrong_role"
    resp = await intake.client.get("/v1/referrals")
    assert resp.status == 401 and (await resp.json())["reason"] == "missing_signature"
    assert OTHER_LA not in {i["la_code"] for i in (await page(intake, "dev-prevent"))["items"]}


BAD = [("limit=0", "limit"), ("limit=201", "limit"), ("limit=CANARY9", "limit"), ("status=CANARY9", "status"),
       ("overdue=CANARY9", "overdue"), ("updated_since=2026-01-01T10:00:00", "updated_since"),
       ("updated_since=CANARY9", "updated_since"), ("cursor=CANARY9", "cursor"),
       ("status=received&status=closed", "status"), ("CANARY9=1", "(unknown parameter #1)")]


@pytest.mark.parametrize(("query", "name"), BAD)
async def test_bad_parameters_are_named_never_echoed(intake, query, name):
    resp = await intake.call("GET", "/v1/referrals", "dev-social-care", query=query)
    text = await resp.text()
    assert resp.status == 422 and resp.content_type == "application/problem+json"
    problem = json.loads(text)
    assert problem["errors"][0]["loc"] == name and name in problem["detail"]
    assert "CANARY9" not in text and "2026-01-01T10" not in text


async def test_a_cursor_keeps_its_filters_and_every_call_is_audited_once(intake, clock):
    for i in range(3):
        await submit_at(intake, clock, clock.at + timedelta(minutes=i))
    before = len(await intake.audit_rows())
    first = await page(intake, query="limit=2&status=received")
    assert len(first["items"]) == 2 and first["next_cursor"]
    problem = await page(intake, query=f"limit=2&cursor={first['next_cursor']}", status=422)
    assert problem["errors"][0] == {"loc": "cursor", "type": "cursor_mismatch",
                                    "msg": "This cursor was made for other filters: keep them for every page"}
    last = await page(intake, query=f"limit=2&status=received&cursor={first['next_cursor']}")
    assert len(last["items"]) == 1 and last["next_cursor"] is None
    lists = [r for r in (await intake.audit_rows())[before:] if r.action == "referral.list"]
    assert [(r.actor, r.outcome) for r in lists] == [("dev-social-care", o) for o in ("ok", "rejected", "ok")]
    assert lists[1].detail["fields"] == ["cursor"]
    assert lists[0].detail == {"filters": {"status": "received", "overdue": False, "updated_since": None},
                               "cursor": False, "limit": 2, "count": 2, "via": "api"}
    assert lists[2].detail["cursor"] is True and lists[2].detail["count"] == 1
