"""The control-room console in real headless Chromium, signed in at the real development
identity provider, against the real broker and PostgreSQL: alerts arrive live, named plainly;
acknowledge with confirmation; an outcome; the audited welfare-check step and its link on to
intake's welfare check; WCAG 2.2 AA (axe) at full width and 320 px; only the operator's force's
alerts."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from playwright.async_api import async_playwright, expect
from sqlalchemy import select

from services.escalation.adapters.tables import alerts, audit
from shared.web.identity import Person
from tests.escalation.browser import axe_violations, narrow, screenshot, sign_in
from tests.escalation.conftest import OTHER
from tests.factories import london, referral_received
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.broker, pytest.mark.database, pytest.mark.slow]
CANARY = "CANARY-Ottoline-Fairweather-4410"
SUB = "control.room@dev-force.example"


async def _audit(esc, action: str) -> list:
    return await esc.rows(select(audit).where(audit.c.action == action))


async def test_operator_sees_alerts_live_acknowledges_records_an_outcome_and_opens_a_welfare_check(esc_web, idp_url):
    esc = esc_web
    lee = Person(issuer=idp_url, subject=SUB, name="Lee Morgan", role="control_room", organisation="dev-force")
    async with esc.app() as server, async_playwright() as pw:
        base = str(server.make_url("")).rstrip("/")
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1024, "height": 900})
            await sign_in(page, base, SUB, "/console?force=other-force")  # another force's: ignored
            await expect(page.get_by_role("heading", level=1)).to_have_text("Alerts for Dev Force")
            await expect(page.locator("#empty")).to_be_visible()
            await expect(page.locator(".moj-identity-bar")).to_contain_text("Lee Morgan")
            assert await axe_violations(page) == []

            concern = referral_received(london(2026, 11, 7, 9), contacts_sealed={"ciphertext": CANARY})
            urgent = referral_received(london(2026, 11, 7, 10), immediate_risk=True)
            theirs = referral_received(london(2026, 11, 7, 10), immediate_risk=True, force=OTHER)
            for ev in (concern, urgent, theirs):
                await esc.publish(ev)
            cards = page.locator("#alerts .sg-alert")
            await expect(cards).to_have_count(2, timeout=10_000)  # arrived over SSE, no reload
            first = cards.nth(0)
            assert await first.get_attribute("data-kind") == "immediate_safety"  # most urgent first
            await expect(first.locator(".govuk-tag--red")).to_have_text("Immediate safety concern")
            for text in (urgent.reference, "Dev Borough", "Control room", "10:00, 0 min ago", "Not acknowledged"):
                await expect(first).to_contain_text(text)
            await expect(page.locator("#urgent-banner")).to_be_visible()
            await expect(cards.nth(1)).to_contain_text("Out-of-hours concern")
            html = await page.content()
            assert CANARY not in html and theirs.reference not in html and "E99999999" not in html
            assert await axe_violations(page) == []
            assert await narrow(page) == (320, [])
            await screenshot(page, "console-alerts")

            await first.get_by_role("link", name=f"Acknowledge alert for {urgent.reference}").click()
            await expect(page.get_by_role("heading", level=1)).to_have_text("Acknowledge this alert?")
            assert await axe_violations(page) == []
            assert await narrow(page) == (320, [])
            await screenshot(page, "console-acknowledge")
            await page.get_by_role("button", name="Yes, acknowledge the alert").click()
            banner = page.locator(".govuk-notification-banner--success")
            await expect(banner).to_contain_text(f"Alert acknowledged for referral {urgent.reference}")
            first = cards.filter(has_text=urgent.reference)  # acknowledged: after the open ones
            await expect(first).to_contain_text("Acknowledged by Lee Morgan at 10:00. Outcome not recorded yet.")
            await expect(page.locator("#urgent-banner")).to_be_hidden()
            assert await axe_violations(page) == []
            [row] = await esc.rows(select(alerts).where(alerts.c.reference == urgent.reference))
            assert (row.status, row.acknowledged_by) == ("acknowledged", lee.id)
            [entry] = await _audit(esc, "alert.acknowledged")
            assert entry.actor == lee.id and entry.detail["person"]["name"] == "Lee Morgan"
            await esc.settle()
            events = {k: b for k, b in await esc.take_json("ops.events", timeout=2)}
            assert events["alert.acknowledged"]["by"]["name"] == "Lee Morgan"

            await first.get_by_role("link", name=f"Record outcome for {urgent.reference}").click()
            await page.get_by_role("button", name="Save outcome").click()  # nothing chosen
            await expect(page.locator(".govuk-error-summary")).to_contain_text("Select what the control room did")
            assert (await page.title()).startswith("Error: ")
            assert await axe_violations(page) == []
            await page.get_by_label("Welfare check completed").check()
            await page.get_by_label("Notes (optional)").fill(f"Visited; {CANARY} safe")
            await page.get_by_role("button", name="Save outcome").click()
            await expect(banner).to_contain_text(f"Outcome recorded for referral {urgent.reference}: Welfare check")
            await expect(cards).to_have_count(1)  # dealt with: off the list
            [row] = await esc.rows(select(alerts).where(alerts.c.reference == urgent.reference))
            assert (row.outcome_action, row.outcome_by) == ("welfare_check_completed", lee.id)
            assert row.outcome_notes_sealed and CANARY not in json.dumps(row.outcome_notes_sealed)
            [entry] = await _audit(esc, "alert.outcome_recorded")
            assert entry.detail["person"]["subject"] == SUB and CANARY not in json.dumps(entry.detail)

            await cards.nth(0).get_by_role("link", name=f"Open for a welfare check ({concern.reference})").click()
            await expect(page.locator(".govuk-warning-text")).to_contain_text("recorded with your name")
            assert await _audit(esc, "alert.welfare_check_opened") == []  # the warning page records nothing
            await page.get_by_role("button", name="Open for a welfare check").click()
            link = page.get_by_role("link", name="Open the child's identity and address (signs you in to "
                                                 "Safeguard Relay referrals)")
            [entry] = await _audit(esc, "alert.welfare_check_opened")
            assert entry.reference == concern.reference and entry.detail["person"]["name"] == "Lee Morgan"
            intake = esc.settings.file.system.public_base_url.rstrip("/")  # intake's own audited step
            await expect(link).to_have_attribute(
                "href", f"{intake}/referrals/{concern.reference}/welfare-check?alert={entry.detail['alert_id']}")
            assert await axe_violations(page) == []
            assert CANARY not in await page.content()

            await page.goto(base + "/console")
            await expect(cards).to_have_count(1)
            esc.clock.advance(timedelta(minutes=31))  # the session idles out: the live stream stops
            await expect(page.locator("#live-ended")).to_be_visible(timeout=10_000)
        finally:
            await browser.close()
