"""The welfare check on intake (DESIGN §3.7), signed in at the real development identity provider:
the force's control-room operator follows the console's link, reads the warning, gives a reason,
imports the force key file and sees the child's name and address, decrypted in real headless
Chromium — and nothing else of the referral (its narrative, the guardians' contacts). The step
and the read are audited naming the person; the grant is this session's, for 15 minutes; CSRF.
Who else may use these routes: tests/intake/test_pages_access.py."""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from playwright.async_api import expect

from services.intake.adapters import tables
from services.intake.entrypoints.http import CONTEXT
from shared.clock import ManualClock
from tests.factories import london, new_canary, postcode_of, referral
from tests.intake.conftest import csrf_of
from tests.intake.test_pages_browser import Tab, _person
from tests.intake.test_sealing import _dump_database, log_stream  # noqa: F401  (fixture)
from tests.support.oidc import person

LEE = person("control.room")
ALERT = "0b7c1d2e-3f40-4a5b-8c6d-7e8f9a0b1c2d"


def _referral() -> tuple[dict, dict[str, str]]:
    """A referral with a canary in the child's given names and postcode, the narrative and a
    guardian's email."""
    c = {k: new_canary() for k in ("name", "address", "narrative", "email")}
    doc = referral()
    doc["content"]["subject"]["given_names"] = c["name"]
    doc["content"]["subject"]["address"]["postcode"] = c["address"] = postcode_of(c["address"])
    doc["content"]["concerns"] = f"Fictional example narrative for tests only. {c['narrative']}"
    doc["contacts"]["guardians"][0]["email"] = c["email"] = f"{c['email']}@example.org"
    return doc, c


async def _audit(pages, action: str, outcome: str = "ok") -> list:
    return [r for r in await pages.audit_rows() if r.action == action and r.outcome == outcome]


@pytest.mark.slow
async def test_the_control_room_sees_only_the_childs_identity_and_address_in_the_browser(
        pages, browser, log_stream):  # noqa: F811
    doc, canary = _referral()
    ref = (await (await pages.submit(doc)).json())["reference"]
    key_file = pages.dir / "keys" / "dev-force.x25519"
    tab = Tab(await browser.new_page(viewport={"width": 1024, "height": 800}), pages.url)
    page = tab.page
    await page.goto(f"{pages.url}/referrals/{ref}/welfare-check?alert={ALERT}")  # the console's link
    await tab.sign_in(LEE.sub)
    await page.wait_for_url(f"{pages.url}/referrals/{ref}/welfare-check?alert={ALERT}")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Open for a welfare check")
    await expect(page.locator(".govuk-warning-text")).to_contain_text(
        "You are about to see the child's identity and address for a welfare check. This is recorded.")
    await tab.check("intake-welfare-warning")
    assert await _audit(pages, "referral.welfare_check_opened") == []  # the warning records nothing

    await page.get_by_role("button", name="Open the child's identity and address").click()  # no reason
    await expect(page.locator(".govuk-error-summary")).to_contain_text("Select why you need to see")
    assert (await page.title()).startswith("Error: ")
    await tab.check()
    await page.get_by_label("A missing person").check()
    await page.get_by_role("button", name="Open the child's identity and address").click()
    await page.wait_for_url(f"{pages.url}/referrals/{ref}/welfare-check/open")
    await expect(page.locator("#details-import")).to_contain_text("dev-force-1.x25519")
    await tab.check()

    await page.locator("#key-file").set_input_files(str(key_file))
    await page.get_by_role("button", name="Import key").click()
    await expect(page.locator("#details-status")).to_have_text("Opened in this browser with your force's key.",
                                                               timeout=20_000)
    identity = page.locator("#welfare-identity")
    for text in (canary["name"], "Example", canary["address"], "1 Example Street", "Date of birth"):
        await expect(identity).to_contain_text(text)
    html = await page.content()
    assert canary["narrative"] not in html and canary["email"] not in html  # never rendered
    assert "Alex Example" not in html and "Dev Borough Academy" not in html  # the guardian, the school
    await tab.check("intake-welfare-open")
    received, sent = await tab.received(), b"\n".join(tab.sent)

    lee = _person(pages, LEE)
    [opened] = await _audit(pages, "referral.welfare_check_opened")
    assert opened.actor == lee.id and opened.reference == ref and opened.detail["person"]["name"] == "Lee Morgan"
    assert (opened.detail["reason"], opened.detail["alert_id"]) == ("missing_person", ALERT)
    [read] = await _audit(pages, "referral.sealed_read")
    assert read.actor == lee.id and read.detail["purpose"] == "welfare_check"
    assert b"content_sealed" in received  # the recording works (the reply's fields: the test below)
    for text in canary.values():
        assert text.encode() not in received, "a response from intake held content in clear"
        assert text not in log_stream.getvalue() and text not in await _dump_database(pages.engine)
    assert key_file.read_text().strip().encode() not in sent  # the key never left the browser


@pytest.fixture
def clock(pages) -> ManualClock:
    clock = ManualClock(london(2026, 3, 2, 2, 30))  # a Monday night
    pages.app[CONTEXT].clock = clock
    return clock


async def test_the_grant_is_this_sessions_for_15_minutes_and_the_form_needs_its_token(pages, clock):
    ref = (await (await pages.submit(referral())).json())["reference"]
    base = f"{pages.url}/referrals/{ref}/welfare-check"
    async with pages.session() as http, pages.session() as other:
        token = csrf_of(await pages.signed_in(http, LEE.sub, f"/referrals/{ref}/welfare-check"))
        await pages.signed_in(other, LEE.sub, f"/referrals/{ref}/welfare-check")  # Lee in another browser

        async def get(client, path: str = "/sealed.json") -> tuple[int, str]:
            async with client.get(base + path, allow_redirects=False) as resp:
                return resp.status, resp.headers.get("Location", "")

        async def post(headers: dict, **form: str) -> int:
            async with http.post(base, data=form, headers=headers, allow_redirects=False) as resp:
                return resp.status

        assert await get(http) == (403, "")  # no welfare check opened
        assert await get(http, "/open") == (303, f"/referrals/{ref}/welfare-check")
        origin = {"Origin": pages.url}
        assert await post(origin, reason="welfare_check") == 403  # no CSRF token
        assert await post(origin, csrf_token="x" * 43, reason="welfare_check") == 403
        assert await post({"Origin": "https://evil.example"}, csrf_token=token, reason="welfare_check") == 403
        assert await post(origin, csrf_token=token, reason="curiosity") == 422
        assert await _audit(pages, "referral.welfare_check_opened") == []

        assert await post(origin, csrf_token=token, reason="risk_to_life", alert="<script>") == 303
        assert (await get(http, "/open"))[0] == 200
        async with http.get(base + "/sealed.json") as resp:
            assert resp.headers["Cache-Control"] == "no-store"
            assert set(await resp.json()) == {"referral_id", "reference", "content_sealed"}
        assert await get(other) == (403, "")  # the grant is the session's, not the person's
        clock.advance(timedelta(minutes=14, seconds=59))
        assert (await get(http))[0] == 200
        clock.advance(timedelta(seconds=1))  # 15 minutes: over
        assert await get(http) == (403, "")
        assert await get(http, "/open") == (303, f"/referrals/{ref}/welfare-check")

        assert await post(origin, csrf_token=token, reason="welfare_check") == 303  # opened again: audited again
        async with http.post(f"{pages.url}/sign-out", data={"csrf_token": token}, headers=origin) as resp:
            assert resp.status == 200
    async with pages.engine.connect() as conn:  # signing out drops the session's grants with it
        assert await conn.scalar(sa.select(sa.func.count()).select_from(tables.welfare_grants)) == 0
    opened = await _audit(pages, "referral.welfare_check_opened")
    assert [(r.detail["reason"], "alert_id" in r.detail) for r in opened] == [
        ("risk_to_life", False), ("welfare_check", False)]  # a malformed alert id is not recorded
    refused = await _audit(pages, "referral.sealed_read", "rejected")
    assert [r.detail["reason"] for r in refused] == ["no_welfare_grant"] * 3
