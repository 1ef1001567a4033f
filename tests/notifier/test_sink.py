"""`safeguard sink`: takes mail over SMTP and Teams posts over HTTP, and shows them as their
recipients see them — the email's HTML in a sandbox where no script runs, the card drawn as
HTML — with their links to the intake workspace page as real links."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.message import EmailMessage
from html.parser import HTMLParser

import aiohttp
import aiosmtplib
import pytest
from aiohttp import web

from safeguard.sink import card_text, render_card, run_sink
from services.notifier.adapters.channels.email import EmailChannel
from services.notifier.adapters.channels.teams import TeamsChannel
from services.notifier.adapters.rendering import Renderer
from services.notifier.domain.lifecycle import Outcome
from tests.support.processes import free_port
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS

WORKSPACE = "http://127.0.0.1:8080/referrals/PRV-2026-000042"


class Sink:
    def __init__(self, smtp_port: int, http_port: int, session: aiohttp.ClientSession) -> None:
        self.smtp_port, self.http_port, self.session = smtp_port, http_port, session
        self.base = f"http://127.0.0.1:{http_port}"

    async def get(self, path: str) -> tuple[aiohttp.ClientResponse, str]:
        async with self.session.get(self.base + path) as resp:
            return resp, await resp.text()


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    smtp_port, http_port = free_port(), free_port()
    task = asyncio.create_task(run_sink("127.0.0.1", smtp_port, http_port))
    try:
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(10):
                while True:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.get(f"http://127.0.0.1:{http_port}/messages") as resp:
                            if resp.status == 200:
                                break
                    await asyncio.sleep(0.05)
            yield Sink(smtp_port, http_port, session)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Tags(HTMLParser):
    """Every start tag of a page, with its attributes."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def all(self, name: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == name]


async def test_sink_accepts_mail_and_cards_and_lists_them_escaped(sink):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "relay@x.example", "mash@x.example", "Referral <SR-1>"
    msg.set_content("Acknowledge by Tuesday")
    await aiosmtplib.send(msg, hostname="127.0.0.1", port=sink.smtp_port)
    card = {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
            "content": {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": "Hi"}]}}]}
    async with sink.session.post(f"{sink.base}/teams/mash-team", json=card) as resp:
        assert resp.status == 202
    async with sink.session.post(f"{sink.base}/teams/x", data=b"not json") as resp:
        assert resp.status == 400
    resp, _ = await sink.get("/messages")
    items = await resp.json()
    assert [(i["kind"], i["to"]) for i in items] == [("teams", "mash-team"), ("email", "mash@x.example")]
    assert (items[1]["text"].strip(), items[1]["html"]) == ("Acknowledge by Tuesday", None)
    _, page = await sink.get("/")
    assert "Referral &lt;SR-1&gt;" in page and "Acknowledge by Tuesday" in page and "<SR-1>" not in page
    assert Tags(page).all("iframe") == []  # a text-only email is shown as text


async def test_the_page_shows_the_email_and_the_card_as_sent_with_working_links_and_no_scripts(sink):
    """A real notifier email (text and HTML) and card, and a hostile email: the page frames
    each HTML part in a sandbox without scripts (and the part's own URL forbids them by CSP),
    and every link to the workspace is a real link that leaves the sandbox."""
    rendered = Renderer(public_base_url="http://127.0.0.1:8080").render(
        template="receipt", kind="team", reference="PRV-2026-000042",
        times={"acknowledge_by": datetime(2026, 12, 29, 15, tzinfo=UTC)})
    email_channel, teams_channel = EmailChannel(f"smtp://127.0.0.1:{sink.smtp_port}"), TeamsChannel()
    try:
        assert (await email_channel.send(rendered, "mash@x.example", "m-1")).outcome == Outcome.DELIVERED
        assert (await teams_channel.send(rendered, f"{sink.base}/teams/mash-team", "m-2")).outcome == Outcome.DELIVERED
    finally:
        await email_channel.close()
        await teams_channel.close()
    hostile = EmailMessage()
    hostile["From"], hostile["To"], hostile["Subject"] = "x@x.example", "mash@x.example", "hostile"
    hostile.set_content("plain part")
    hostile.add_alternative('<p>hi</p><script>document.title = "ran"</script>'
                            '<img src=x onerror="document.title=1">', subtype="html")
    await aiosmtplib.send(hostile, hostname="127.0.0.1", port=sink.smtp_port)

    resp, page = await sink.get("/")
    assert resp.status == 200
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp  # the page runs no script
    assert "<script" not in page.lower() and "onerror" not in page  # nor does any mail's inside it
    tags = Tags(page)
    frames = tags.all("iframe")
    assert len(frames) == 2
    for frame in frames:
        sandbox = set((frame["sandbox"] or "").split())
        assert {"allow-popups", "allow-popups-to-escape-sandbox"} <= sandbox
        assert not sandbox & {"allow-scripts", "allow-same-origin", "allow-forms"}
    hostile_src, notifier_src = (f["src"] for f in frames)  # newest first

    # the card, drawn: title, facts, text and its Action.OpenUrl as a real link to the workspace
    [card_link] = [a for a in tags.all("a") if a.get("href") == WORKSPACE]
    assert card_link["target"] == "_blank" and "noopener" in (card_link["rel"] or "")
    assert "New Prevent referral PRV-2026-000042" in page and "<dt>Acknowledge by</dt>" in page
    assert "<dd>Tuesday 29 December 2026 at 3:00pm</dd>" in page and ">Open the referral</a>" in page

    # the notifier's HTML part as sent, its link opening outside the frame
    resp, html = await sink.get(notifier_src)
    assert resp.headers["Content-Type"].startswith("text/html")
    email_csp = resp.headers["Content-Security-Policy"]
    assert email_csp.startswith("sandbox ") and "allow-scripts" not in email_csp
    assert "default-src 'none'" in email_csp and "script-src" not in email_csp
    parsed = Tags(html)
    assert parsed.all("base") == [{"target": "_blank"}]
    assert [a["href"] for a in parsed.all("a")] == [WORKSPACE]
    assert rendered.html.split("<html", 1)[1].strip() in html.replace("\r\n", "\n")  # otherwise as sent
    resp, text = await sink.get(notifier_src.replace(".html", ".txt"))
    assert f"Open the referral: {WORKSPACE}" in text and resp.headers["Content-Type"].startswith("text/plain")
    assert f"Open the referral: {WORKSPACE}" in page  # the text part, under the frame

    # the hostile HTML part is served as sent, but its scripts cannot run: the CSP sandboxes it
    resp, html = await sink.get(hostile_src)
    assert "<script>" in html and "allow-scripts" not in resp.headers["Content-Security-Policy"]
    resp, _ = await sink.get("/messages/999999.html")
    assert resp.status == 404

    resp, _ = await sink.get("/messages")
    items = await resp.json()
    assert [(i["kind"], i["subject"]) for i in items] == [
        ("email", "hostile"), ("teams", ""), ("email", rendered.subject)]
    assert items[1]["card"] == rendered.card and WORKSPACE in items[1]["text"]


def test_card_rendering_links_http_only_and_survives_odd_json():
    card = {"body": [{"type": "TextBlock", "text": "T", "weight": "Bolder", "color": "Attention"},
                     {"type": "Container", "items": [{"type": "FactSet", "facts": [{"title": "A", "value": 1}, 7]}]},
                     {"type": "Image", "url": "http://x/i.png"}, 5,
                     {"type": "ActionSet", "actions": [{"type": "Action.OpenUrl", "title": "J",
                                                         "url": "javascript:alert(1)"}]}],
            "actions": [{"type": "Action.OpenUrl", "title": "Go", "url": WORKSPACE},
                        {"type": "Action.Submit", "title": "Do"}]}
    out = render_card(card)
    assert out["blocks"][0] == {"kind": "text", "text": "T", "title": True, "attention": True}
    assert out["blocks"][1] == {"kind": "facts", "facts": [("A", "1"), ("", "")]}
    assert [a["url"] for a in out["actions"]] == [None, WORKSPACE, None]  # javascript: is no link
    nested: dict = {"type": "Container", "items": []}
    for _ in range(100):
        nested = {"type": "Container", "items": [nested]}
    assert render_card({"body": [nested]})["blocks"] == [{"kind": "unsupported", "text": "nested too deep"}]
    for odd in (None, [], "x", {"attachments": "x"}, {"attachments": [{"content": {"body": [1, "x"]}}]}):
        assert isinstance(card_text(odd), str)


@pytest.mark.slow
async def test_in_a_real_browser_the_email_script_does_not_run_and_the_links_open_the_workspace(sink):
    """Headless Chromium (Debian's /usr/bin/chromium, as tests/escalation/test_console.py):
    the email's own script does not run in its frame, and both the link in the email and the
    card's Action.OpenUrl open the workspace page in a new tab."""
    from playwright.async_api import async_playwright

    seen: list[str] = []

    async def workspace_page(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(text="<title>workspace</title>", content_type="text/html")

    workspace = web.Application()
    workspace.router.add_get("/referrals/{reference}", workspace_page)
    runner = web.AppRunner(workspace, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}/referrals/PRV-2026-000042"
    try:
        rendered = Renderer(public_base_url=f"http://127.0.0.1:{port}/").render(
            template="receipt", kind="team", reference="PRV-2026-000042",
            times={"acknowledge_by": datetime(2026, 12, 29, 15, tzinfo=UTC)})
        hostile = EmailMessage()
        hostile["From"], hostile["To"], hostile["Subject"] = "x@x.example", "mash@x.example", "hostile"
        hostile.set_content("plain part")
        hostile.add_alternative(rendered.html.replace(
            "</body>", '<script>document.body.append("SCRIPT RAN")</script></body>'), subtype="html")
        await aiosmtplib.send(hostile, hostname="127.0.0.1", port=sink.smtp_port)
        async with sink.session.post(f"{sink.base}/teams/mash-team", json=rendered.card) as resp:
            assert resp.status == 202
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                await page.goto(sink.base + "/")
                frame = page.frame_locator("iframe").first
                await frame.get_by_role("link", name="Open the referral").wait_for()
                assert "SCRIPT RAN" not in await frame.locator("body").inner_text()
                async with page.expect_popup() as popup:
                    await frame.get_by_role("link", name="Open the referral").click()
                tab = await popup.value
                await tab.wait_for_load_state()
                assert (tab.url, await tab.title()) == (url, "workspace")
                async with page.expect_popup() as popup:
                    await page.locator(".card").get_by_role("link", name="Open the referral").click()
                tab = await popup.value
                await tab.wait_for_load_state()
                assert tab.url == url
                assert page.url == sink.base + "/"  # the sink page itself stayed put
            finally:
                await browser.close()
    finally:
        await runner.cleanup()
    assert seen == ["/referrals/PRV-2026-000042"] * 2
