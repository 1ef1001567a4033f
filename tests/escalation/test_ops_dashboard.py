"""The ops dashboard (`GET /ops`) in real headless Chromium against the real broker and
PostgreSQL, signed in as the dev ops person at the real development identity provider: counts
only, the right numbers, WCAG 2.2 AA at full width and 320 px, auto-refresh, no content."""
from __future__ import annotations

import asyncio
import struct
import uuid

import aiohttp
import pytest
from playwright.async_api import async_playwright, expect
from sqlalchemy import func, select

from services.escalation.adapters import ops_queries
from services.escalation.adapters.tables import timers
from shared import bus
from shared.messages import ReferralAcknowledged
from tests.escalation.browser import axe_violations, narrow, screenshot, sign_in
from tests.escalation.conftest import OTHER
from tests.factories import london, referral_event, referral_received
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS

CANARY = "CANARY-Perpetua-Oakenshaw-7731"


async def _ready(esc, queue: str) -> int:
    async with esc.connection.channel() as channel:
        return (await channel.declare_queue(queue, passive=True)).declaration_result.message_count


async def _wait_ready(esc, queue: str, n: int) -> None:
    async with asyncio.timeout(10):
        while await _ready(esc, queue) != n:
            await asyncio.sleep(0.05)


async def _seed(esc) -> list[str]:
    """Three alerts (2 dev-force, 1 other-force), an acknowledge deadline due later today,
    one breached, one met; three submissions nobody consumes; one parked message."""
    urgent = referral_received(london(2026, 11, 7, 9), immediate_risk=True, contacts_sealed={"ciphertext": CANARY})
    concern = referral_received(london(2026, 11, 7, 9, 30))
    other = referral_received(london(2026, 11, 7, 9, 45), force=OTHER)
    due_today = referral_received(london(2026, 11, 6, 15), acknowledge_by=london(2026, 11, 7, 16))
    late, met = referral_received(london(2026, 11, 2, 10)), referral_received(london(2026, 11, 2, 11))
    for ev in (urgent, concern, other, due_today, late, met):
        await esc.wait_processed(await esc.publish(ev))
    await esc.wait_processed(await esc.publish(referral_event(ReferralAcknowledged, met, london(2026, 11, 2, 12),
                                                              client_id="dev-social-care")))
    await esc.publish(urgent, body=b'{"referral_id": "x", "name": "' + CANARY.encode() + b'"}')
    for _ in range(3):
        await esc.publisher.publish(bus.SUBMISSIONS, "referral", b"{}", message_id=uuid.uuid4().hex)
    await _wait_ready(esc, "escalation.events.parked", 1)
    return [ev.reference for ev in (urgent, concern, other, due_today, late, met)]


@pytest.mark.broker
@pytest.mark.database
@pytest.mark.slow
async def test_ops_dashboard_shows_queue_alert_deadline_and_parked_counts_and_never_content(esc_web, tmp_path):
    esc = esc_web
    async with esc.app() as server, async_playwright() as pw:
        references = await _seed(esc)
        await esc.fire(server)  # the past-due steps of `late` fire now, not during the checks
        await _wait_ready(esc, "control-room.dev-force", 2)
        await _wait_ready(esc, f"control-room.{OTHER}", 1)
        await esc.settle()
        counts = await ops_queries.queue_counts(esc.connection, ["no.such.queue", "intake.submissions"])
        assert [(c.name, c.messages, c.consumers) for c in counts] == [  # a missing queue closes the
            ("no.such.queue", None, None), ("intake.submissions", 3, 0)]  # channel: the next gets a new one
        root = str(server.make_url("")).rstrip("/")
        base = root + "/ops"
        async with aiohttp.ClientSession() as session:
            async with session.get(base, allow_redirects=False) as resp:  # not signed in: to the sign-in page
                assert resp.status == 303 and resp.headers["Location"] == "/sign-in?next=/ops"

        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1024, "height": 900})
            await sign_in(page, root, "ops@safeguard.example", "/ops")
            await expect(page.get_by_role("heading", level=1)).to_have_text("Operations dashboard")

            def cell(table: str, row: str, column: str):
                return page.locator(f"#{table} tr[{row}] td.{column}")

            await expect(cell("queue-table", 'data-queue="intake.submissions"', "messages")).to_have_text("3")
            await expect(cell("queue-table", 'data-queue="intake.submissions"', "consumers")).to_have_text("0")
            await expect(cell("queue-table", 'data-queue="escalation.events"', "messages")).to_have_text("0")
            await expect(cell("queue-table", 'data-queue="escalation.events"', "consumers")).to_have_text("1")
            await expect(cell("queue-table", 'data-queue="control-room.dev-force"', "messages")).to_have_text("2")
            await expect(cell("queue-table", f'data-queue="control-room.{OTHER}"', "messages")).to_have_text("1")
            await expect(page.locator("#queue-table tbody tr")).to_have_count(7)  # 5 service queues + 2 forces
            await expect(cell("parked-table", 'data-queue="escalation.events.parked"', "messages")).to_have_text("1")
            await expect(cell("parked-table", 'data-queue="intake.submissions.parked"', "messages")).to_have_text("0")
            await expect(page.locator("#sum-parked")).to_have_text("1")
            await expect(page.locator('#alert-table tr[data-force="dev-force"] td[data-level="control_room"]'))\
                .to_have_text("2")
            await expect(page.locator(f'#alert-table tr[data-force="{OTHER}"] td.total')).to_have_text("1")
            await expect(page.locator("#sum-alerts")).to_have_text("3")
            await expect(cell("deadline-table", 'data-clock="acknowledge"', "due-today")).to_have_text("1")
            await expect(cell("deadline-table", 'data-clock="acknowledge"', "breached")).to_have_text("1")
            await expect(cell("deadline-table", 'data-clock="checks"', "breached")).to_have_text("0")
            await expect(page.locator("#outbox-backlog")).to_have_text("0")
            pending = dict(await esc.rows(select(timers.c.kind, func.count()).where(timers.c.status == "pending")
                                          .group_by(timers.c.kind)))
            assert pending["alert_reescalate"] == 3
            for kind, n in pending.items():
                await expect(cell("timer-table", f'data-kind="{kind}"', "pending")).to_have_text(str(n))
            await expect(page.locator('#queue-chart g[data-label="intake.submissions"]')).to_have_attribute(
                "data-value", "3")
            await expect(page.locator("#alert-chart g.bar")).to_have_count(2)
            await expect(page.locator("#report-link")).to_have_attribute("href", "http://127.0.0.1:8080/report")

            html = await page.content()
            assert CANARY not in html
            assert not [r for r in references if r in html]
            assert await axe_violations(page) == []
            assert await narrow(page) == (320, [])
            shot = tmp_path / "ops-dashboard.png"
            await page.screenshot(path=str(shot), full_page=True)
            data = shot.read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
            width, height = struct.unpack(">II", data[16:24])
            assert width > 0 and height > 600 and len(data) > 10_000
            await screenshot(page, "ops-dashboard")

            await page.goto(base + "?refresh=2")  # reloads by itself, and can be paused
            await expect(page.locator("#refresh-status")).to_have_text("Refreshes every 2 seconds.")
            await esc.publisher.publish(bus.SUBMISSIONS, "referral", b"{}", message_id=uuid.uuid4().hex)
            await expect(cell("queue-table", 'data-queue="intake.submissions"', "messages")).to_have_text(
                "4", timeout=8_000)
            await page.get_by_role("button", name="Pause auto-refresh").click()
            await expect(page.locator("#refresh-status")).to_have_text("Auto-refresh is paused.")
        finally:
            await browser.close()

