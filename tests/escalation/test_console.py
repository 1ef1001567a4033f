"""The control-room console in real headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright; `scripts/ensure-chromium.sh` installs it — no browser downloads)."""
from __future__ import annotations

import json

import aiohttp
import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import async_playwright, expect
from sqlalchemy import select

from services.escalation.adapters.tables import alerts
from tests.escalation.conftest import TOKEN
from tests.factories import london, referral_received

pytestmark = [pytest.mark.broker, pytest.mark.database, pytest.mark.slow]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
CANARY = "CANARY-Ottoline-Fairweather-4410"


async def _axe_violations(page) -> list[str]:
    results = await Axe().run(page, options={"runOnly": {"type": "tag", "values": [
        "wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]}})
    return [v["id"] for v in results.response["violations"]]


async def test_console_signs_in_shows_alerts_live_marks_immediate_safety_and_acknowledges_by_post(esc):
    async with esc.app() as server, async_playwright() as pw:
        base = str(server.make_url("/console")).rstrip("/")
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(f"{base}?force=dev-force")
            await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to the Dev Force console")
            assert await _axe_violations(page) == []
            await page.get_by_label("Console access code").fill("wrong-code-wrong-code")
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.locator(".error-summary")).to_be_visible()
            await page.get_by_label("Console access code").fill(TOKEN)
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.get_by_role("heading", level=1)).to_have_text("Open alerts for Dev Force")
            await expect(page.locator("#empty")).to_be_visible()

            concern = referral_received(london(2026, 11, 7, 9), contacts_sealed={"ciphertext": CANARY})
            urgent = referral_received(london(2026, 11, 7, 10), immediate_risk=True,
                                       contacts_sealed={"ciphertext": CANARY})
            await esc.publish(concern)
            await esc.publish(urgent)
            rows = page.locator("#alert-rows tr")
            await expect(rows).to_have_count(2, timeout=10_000)  # arrived over SSE, no reload
            assert await rows.nth(0).get_attribute("data-kind") == "immediate_safety"  # most urgent first
            assert "alert-immediate" in (await rows.nth(0).get_attribute("class"))
            await expect(rows.nth(0)).to_contain_text(urgent.reference)
            await expect(rows.nth(1)).to_contain_text(concern.reference)
            await expect(page.locator("#urgent-banner")).to_be_visible()
            assert (await page.title()).startswith("(!) ")
            html = await page.content()
            assert CANARY not in html
            assert await _axe_violations(page) == []

            async with aiohttp.ClientSession() as session:  # a GET never changes state
                [row] = await esc.rows(select(alerts).where(alerts.c.reference == urgent.reference))
                async with session.get(f"{base}/alerts/{row.alert_id}/acknowledgement") as resp:
                    assert resp.status == 405
                async with session.post(f"{base}/alerts/{row.alert_id}/acknowledgement",
                                        headers={"Origin": "https://evil.example"}) as resp:
                    assert resp.status == 403  # cross-site
                async with session.get(f"{base}/events?force=dev-force") as resp:
                    assert resp.status == 401  # no session cookie

            await rows.nth(0).get_by_role("button", name=f"Acknowledge alert for {urgent.reference}").click()
            await expect(rows).to_have_count(1, timeout=10_000)
            await expect(page.locator("#urgent-banner")).to_be_hidden()
            [row] = await esc.rows(select(alerts).where(alerts.c.reference == urgent.reference))
            assert (row.status, row.acknowledged_by) == ("acknowledged", "console:dev-force")
            await esc.settle()
            ops = [k for k, b in await esc.take_json("ops.events", timeout=2)]
            assert ops.count("alert.acknowledged") == 1
            assert json.dumps(ops)  # events are JSON, ids only
        finally:
            await browser.close()
