"""intake's pages in real headless Chromium (Debian's /usr/bin/chromium driven by Playwright),
signing in at the real development identity provider: a social worker follows the referral's
link, signs in, imports the team key file, reads the content decrypted in the browser,
acknowledges and decides; a CTP officer records checks and releases feedback keeping the
family-contact hold. axe finds nothing on any page or state, at full width and at 320 px. A
canary in the child's name, narrative and hold reason, and in the notes typed, is never in a
response intake sent, a log line or a row. `SAFEGUARD_SCREENSHOTS=1` saves docs/screenshots/."""
from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import expect

from services.intake.adapters import tables
from shared.web.identity import Person
from tests.factories import new_canary, referral
from tests.intake.test_sealing import _dump_database, log_stream  # noqa: F401  (fixture)
from tests.intake.test_submit import bind_events, drain
from tests.support.oidc import person

pytestmark = pytest.mark.slow
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SAM, DANA = person("social.worker"), person("ctp.officer")
WIDEST = """[...document.querySelectorAll("body *")].filter((e) => e.getBoundingClientRect().right > innerWidth)
  .slice(0, 5).map((e) => `${e.tagName}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`)"""


class Tab:
    """A page of the test's browser, keeping every same-origin response body and request body."""

    def __init__(self, page, origin: str) -> None:
        self.page, self.origin, self.bodies, self.sent = page, origin, [], []
        page.on("response", lambda r: self.bodies.append(asyncio.ensure_future(self._body(r))))
        page.on("request", lambda r: self.sent.append(r.post_data_buffer or b""))

    async def _body(self, response) -> bytes:
        if not response.url.startswith(self.origin) or 300 <= response.status < 400:
            return b""
        try:
            return await response.body()
        except Exception:  # noqa: BLE001  a body the browser no longer holds (the page moved on)
            return b""

    async def received(self) -> bytes:
        return b"\n".join(await asyncio.gather(*self.bodies))

    async def check(self, name: str | None = None) -> None:
        """axe at full width and at 320 px (and no sideways scrolling); a screenshot if asked."""
        for width in (1024, 320):
            await self.page.set_viewport_size({"width": width, "height": 800})
            results = await Axe().run(self.page, options={"runOnly": {"type": "tag", "values": [
                "wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]}})
            violations = results.response["violations"]
            assert [v["id"] for v in violations] == [], (self.page.url, width, [
                (v["id"], [(n["target"], n.get("failureSummary", "")[:200]) for n in v["nodes"][:3]]) for v in violations])
            assert await self.page.evaluate("document.documentElement.scrollWidth") <= width, (
                self.page.url, width, await self.page.evaluate(WIDEST))
        await self.page.set_viewport_size({"width": 1024, "height": 800})
        if name and os.environ.get("SAFEGUARD_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            await self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    async def sign_in(self, sub: str) -> None:
        """At the sign-in page: on to the provider, click through as `sub`, back to the page."""
        await self.page.get_by_role("button", name=re.compile("Sign in with")).click()
        await self.page.get_by_placeholder("sub").fill(sub)
        await self.page.get_by_role("button", name="Authorize").click()


def _person(pages, dev) -> Person:
    return Person(pages.settings.file.identity_providers[0].issuer, dev.sub, dev.name, dev.role, dev.organisation)


async def test_a_social_worker_signs_in_reads_the_referral_in_the_browser_acknowledges_and_decides(
        pages, browser, log_stream):  # noqa: F811
    canary, note = new_canary(), new_canary()
    doc = referral()
    doc["content"]["subject"]["family_name"] = canary
    doc["content"]["concerns"] = f"Fictional example narrative for development only. {canary}"
    doc["holding_instructions"]["reason"] = f"CTP checks pending {canary}"
    ref = (await (await pages.submit(doc)).json())["reference"]
    conn, queue = await bind_events(pages.settings)
    key_file = pages.dir / "keys" / "E99999999.x25519"
    try:
        tab = Tab(await browser.new_page(viewport={"width": 1024, "height": 800}), pages.url)
        page = tab.page
        await page.goto(f"{pages.url}/referrals/{ref}")  # the link in the MASH email
        await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
        await tab.check()
        await tab.sign_in(SAM.sub)
        await page.wait_for_url(f"{pages.url}/referrals/{ref}")
        await expect(page.get_by_role("heading", level=1)).to_have_text(f"Referral {ref}")
        await expect(page.locator("#details-import")).to_be_visible()
        await expect(page.locator("#details-import")).to_contain_text("E99999999-1.x25519")
        await expect(page.locator("#forget-key")).to_be_hidden()
        await tab.check("intake-referral-before-key")

        await page.locator("#key-file").set_input_files(str(key_file))
        await page.get_by_role("button", name="Import key").click()
        await expect(page.locator("#details-status")).to_have_text("Opened in this browser with your team's key.",
                                                                   timeout=20_000)
        await expect(page.locator("#details-content")).to_contain_text(canary)
        await expect(page.locator("#holding-reason")).to_have_text(f"CTP checks pending {canary}")
        await expect(page.locator("#forget-key")).to_be_visible()
        await tab.check("intake-referral-decrypted")

        await page.get_by_role("button", name="Acknowledge referral").click()
        await expect(page.locator(".govuk-notification-banner--success")).to_contain_text("Referral acknowledged")
        await expect(page.locator("#details-content")).to_contain_text(canary)  # the key stays in this browser
        await tab.check("intake-referral-acknowledged")

        await page.get_by_label("Rationale (optional)").fill(note)
        await page.get_by_role("button", name="Record decision").click()  # no pathway chosen
        await expect(page.locator(".govuk-error-summary")).to_contain_text("Select the next step for this referral")
        await tab.check()
        await page.get_by_label("Early help").check()
        await page.get_by_label("Rationale (optional)").fill(note)
        await page.get_by_role("button", name="Record decision").click()
        await expect(page.locator(".govuk-notification-banner--success")).to_contain_text("Next step: Early help.")

        await page.get_by_role("link", name="All referrals").click()
        await expect(page.locator(f'tr[data-reference="{ref}"]')).to_contain_text("Decided")
        await tab.check("intake-referrals-list")
        await page.get_by_role("link", name="Performance report").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Performance data")
        await tab.check()

        await page.goto(f"{pages.url}/referrals/{ref}")
        await page.get_by_role("button", name="Forget this key").click()
        await expect(page.locator("#details-import")).to_be_visible()
        await expect(page.locator("#details-content")).not_to_contain_text(canary)
        received, sent = await tab.received(), b"\n".join(tab.sent)
        events = [json.loads(m.body) for m in await drain(queue)]
    finally:
        await conn.close()

    sam = _person(pages, SAM)
    async with pages.engine.connect() as db:
        row = (await db.execute(sa.select(tables.referrals).where(tables.referrals.c.reference == ref))).one()
    assert (row.acknowledged_by, row.decided_by, row.pathway) == (sam.id, sam.id, "early_help")
    audit = {r.action: r for r in await pages.audit_rows() if r.actor == sam.id and r.outcome == "ok"}
    assert audit["referral.acknowledgement"].detail["person"]["name"] == "Sam Patel"
    assert audit["referral.decision"].detail["person"]["name"] == "Sam Patel"
    assert audit["referral.sealed_read"].detail["person"]["subject"] == SAM.sub
    assert {e["by"]["name"] for e in events if e.get("reference") == ref and e.get("by")} == {"Sam Patel"}
    assert b"content_sealed" in received and b"Referral acknowledged" in received  # the recording works
    secrets = [key_file.read_text().strip()]
    for text in (canary, note):
        assert text.encode() not in received, "a response from intake held content in clear"
        assert text not in log_stream.getvalue() and text not in await _dump_database(pages.engine)
    for secret in secrets:
        assert secret.encode() not in sent and secret.encode() not in received  # the key never left


async def test_a_ctp_officer_records_checks_and_releases_feedback_keeping_the_family_hold(pages, browser):
    ref = (await (await pages.submit(referral())).json())["reference"]
    tab = Tab(await browser.new_page(viewport={"width": 1024, "height": 800}), pages.url)
    page = tab.page
    await page.goto(f"{pages.url}/referrals")
    await tab.sign_in(DANA.sub)
    await page.wait_for_url(f"{pages.url}/referrals")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Referrals for Dev Force")
    await page.get_by_role("link", name=ref).click()
    await expect(page.locator("#details-import")).to_contain_text("dev-force-1.x25519")
    await tab.check()
    await page.get_by_label("Suitable for Prevent", exact=True).check()
    await page.get_by_label("Notes (optional)").fill("checked with the local team")
    await page.get_by_role("button", name="Record checks").click()
    await expect(page.locator(".govuk-notification-banner--success")).to_contain_text(
        "Outcome: Suitable for Prevent.")
    await page.get_by_label("Keep the family-contact hold").check()
    await tab.check()
    await page.get_by_role("button", name="Release feedback").click()
    banner = page.locator(".govuk-notification-banner--success")
    await expect(banner).to_contain_text("Feedback released")
    await expect(banner).to_contain_text("The family-contact hold is kept: guardians are not told.")
    await expect(page.locator("#holding")).to_be_visible()
    await expect(page.locator("dl").filter(has_text="No family contact")).to_contain_text("In place")
    await expect(page.locator("#timeline ~ .moj-timeline")).to_contain_text("CTP feedback released")
    await expect(page.locator("#timeline ~ .moj-timeline")).to_contain_text("by Dana Okafor (CTP Prevent, dev-force)")
    await tab.check()
    dana = _person(pages, DANA)
    async with pages.engine.connect() as db:
        row = (await db.execute(sa.select(tables.referrals).where(tables.referrals.c.reference == ref))).one()
    assert (row.checks_by, row.feedback_by, row.checks_outcome) == (dana.id, dana.id, "suitable_for_prevent")
    assert row.family_contact_hold and not row.family_contact_lifted and not row.no_further_sharing


async def test_the_referral_page_refuses_a_sealed_section_moved_to_another(pages, browser):
    """Issue 18 #10 in intake's own page: the contacts envelope stored as the content (a database
    writer, or a bug) is refused by the browser with a clear message and nothing is shown."""
    canary = new_canary()
    doc = referral()
    doc["content"]["subject"]["family_name"] = canary
    ref = (await (await pages.submit(doc)).json())["reference"]
    r = tables.referrals
    async with pages.engine.begin() as conn:
        row = (await conn.execute(sa.select(r).where(r.c.reference == ref))).one()
        await conn.execute(sa.update(r).where(r.c.id == row.id).values(
            content_sealed=row.contacts_sealed, contacts_sealed=row.content_sealed))
    tab = Tab(await browser.new_page(viewport={"width": 1024, "height": 800}), pages.url)
    page = tab.page
    await page.goto(f"{pages.url}/referrals/{ref}")
    await tab.sign_in(SAM.sub)
    await page.wait_for_url(f"{pages.url}/referrals/{ref}")
    await page.locator("#key-file").set_input_files(str(pages.dir / "keys" / "E99999999.x25519"))
    await page.get_by_role("button", name="Import key").click()
    await expect(page.locator("#details-error")).to_have_text(  # GOV.UK's visually hidden "Error: " first
        "Error: This envelope holds the contact details, not the referral details: it was moved, and was not opened.",
        timeout=20_000)
    await expect(page.locator("#details-status")).to_have_text("The referral details are not open.")
    assert await page.locator("#details-content").inner_html() == ""
    assert await page.locator("#details-contacts").inner_html() == ""
    assert canary not in await page.content() and doc["contacts"]["referrer"]["email"] not in await page.content()
    await tab.check()
