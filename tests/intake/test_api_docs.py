"""intake's OpenAPI viewer, /docs/api: Swagger UI served by intake itself (no CDN) under a strict
Content-Security-Policy. Over HTTP: the page and every asset it names answer 200. In headless
Chromium: it renders the document's operations with no CSP violation and no request to any other
origin, and offers no "Try it out"."""
from __future__ import annotations

import re

import pytest
from playwright.async_api import async_playwright, expect

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS

TYPES = {".css": "text/css", ".js": "text/javascript"}


async def test_the_page_and_its_assets_answer(intake):
    resp = await intake.client.get("/docs/api")
    html = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/html"
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assets = re.findall(r'(?:href|src)="(/assets/[^"]+)"', html)
    assert len(assets) == 3 and not re.search(r'(?:href|src)="(?:https?:)?//', html)
    for path in assets:
        asset = await intake.client.get(path)
        assert asset.status == 200 and asset.content_type == TYPES[path[path.rindex("."):]], path
        assert len(await asset.read()) > 100


@pytest.mark.slow
async def test_swagger_ui_renders_the_document_under_the_csp(intake):
    base = str(intake.client.make_url("/")).rstrip("/")
    problems, elsewhere = [], []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.on("request", lambda r: None if r.url.startswith((base, "data:")) else elsewhere.append(r.url))
            await page.goto(f"{base}/docs/api")
            await expect(page.locator(".swagger-ui .info .title")).to_contain_text("Safeguard Relay intake")
            await expect(page.locator(".opblock-summary-path", has_text="/v1/referrals/{reference}/decision")
                         ).to_be_visible()
            await page.locator(".opblock-summary", has_text="/v1/referrals/{reference}/decision").first.click()
            await expect(page.locator(".opblock-body").first).to_be_visible()
            assert await page.locator(".try-out__btn").count() == 0
        finally:
            await browser.close()
    assert not problems, problems  # a CSP refusal is a console error
    assert not elsewhere, elsewhere
