"""What the escalation browser tests share: real headless Chromium (Debian's /usr/bin/chromium
driven by Playwright; `scripts/ensure-chromium.sh` installs it — no browser downloads), signing
in at the development identity provider, axe (WCAG 2.2 AA), the 320 px check and screenshots
(kept in docs/screenshots/ only when SAFEGUARD_SCREENSHOTS=1)."""
from __future__ import annotations

import os
import re
from pathlib import Path

from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Page

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


async def sign_in(page: Page, base: str, sub: str, path: str) -> None:
    """Open `path`, sign in as `sub` at the development identity provider, land back on it."""
    await page.goto(base + path)
    await page.get_by_role("button", name=re.compile("^Sign in with")).click()
    await page.locator(f'button[name="sub"][value="{sub}"]').click()
    await page.wait_for_url(re.compile("^" + re.escape(base + path)))


async def axe_violations(page: Page) -> list[str]:
    results = await Axe().run(page, options={"runOnly": {"type": "tag", "values": WCAG}})
    return [f"{v['id']}: {[n['target'] for n in v['nodes']][:3]}" for v in results.response["violations"]]


async def narrow(page: Page) -> tuple[int, list[str]]:
    """At 320 px wide: the page's scroll width and its axe violations (then back to 1024)."""
    await page.set_viewport_size({"width": 320, "height": 900})
    width = await page.evaluate("document.documentElement.scrollWidth")
    violations = await axe_violations(page)
    await page.set_viewport_size({"width": 1024, "height": 900})
    return width, violations


async def screenshot(page: Page, name: str) -> None:
    if os.environ.get("SAFEGUARD_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
