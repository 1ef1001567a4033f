"""shared/web/static/sealed.js in real headless Chromium (Debian's /usr/bin/chromium driven by
Playwright; `scripts/ensure-chromium.sh` installs it): sealed content opened in the browser with
the team key file `safeguard keys init` writes, under a strict Content-Security-Policy.

The page and its module script (tests/web/pages/) are the test's own, not shipped."""
from __future__ import annotations

import json
import tomllib
import uuid
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import expect

from safeguard.keys import init as keys_init
from services.intake.adapters.effects import seal_json
from shared.crypto import generate_sealing_key, public_key_from_b64, read_private_key, write_private_key
from shared.web.assets import CSP_SCRIPT_SRC, add_asset_routes

PAGES = Path(__file__).parent / "pages"
CANARY = "CANARY-Ottoline-Fairweather-4410"
CONTACT_CANARY = "canary.guardian@dev-borough.example"
REFERENCE = "PRV-2026-000001"
CSP = (f"default-src 'none'; script-src {CSP_SCRIPT_SRC}; style-src 'self'; font-src 'self'; img-src 'self'; "
       "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


class Setup:
    """A `keys init` set-up: the force's key file and an envelope pair sealed to its key id."""

    def __init__(self, directory: Path) -> None:
        config = tomllib.loads(keys_init(directory).read_text())
        (force,) = config["forces"]
        (la,) = config["local_authorities"]
        recipients = {k["key_id"]: public_key_from_b64(k["public_key"])
                      for k in (*force["sealing_keys"], *la["sealing_keys"])}
        assert set(recipients) == {"dev-force-1", "E99999999-1"}
        self.key_file = directory / "keys" / "dev-force.x25519"  # key id dev-force-1
        self.referral_id = str(uuid.uuid4())
        content = {"subject": {"given_names": "Sam", "family_name": CANARY, "date_of_birth": "2013-09-01",
                               "address": {"lines": ["1 Example Street", "Dev Borough"], "postcode": "ZZ1 1ZZ"}},
                   "parents_guardians": [{"name": "Alex Example", "parental_responsibility": True}],
                   "concerns": "First line.\nSecond line <b>not markup</b>.",
                   "vulnerabilities": ["fictional example"], "holding_reason": "CTP checks pending"}
        self.recipients = recipients
        self.reply = {"referral_id": self.referral_id, "reference": REFERENCE,
                      "content_sealed": seal_json(content, self.referral_id, recipients, reference=REFERENCE,
                                                  column="content_sealed"),
                      "contacts_sealed": seal_json({"guardians": [{"email": CONTACT_CANARY}]},
                                                   self.referral_id, recipients, reference=REFERENCE,
                                                   column="contacts_sealed")}
        self.secrets = [self.key_file.read_text().strip(), read_private_key(self.key_file)]


@pytest.fixture
def setup(tmp_path) -> Setup:
    return Setup(tmp_path / "var")


@pytest.fixture
async def base_url(aiohttp_server, setup):
    @web.middleware
    async def csp(request, handler):
        resp = await handler(request)
        resp.headers["Content-Security-Policy"] = CSP
        return resp

    async def page(_request):
        return web.FileResponse(PAGES / "sealed.html", headers={"Content-Type": "text/html; charset=utf-8"})

    async def script(_request):
        return web.FileResponse(PAGES / "sealed-page.mjs", headers={"Content-Type": "text/javascript"})

    async def sealed(_request):
        return web.json_response(setup.reply)

    app = web.Application(middlewares=[csp])
    add_asset_routes(app)
    app.router.add_get("/test/page", page)
    app.router.add_get("/test/sealed-page.mjs", script)
    app.router.add_get("/test/sealed", sealed)
    server = await aiohttp_server(app)
    return str(server.make_url("/test/page").with_query(reference=REFERENCE))


class Page:
    """The test page, recording every request it makes."""

    def __init__(self, page, url: str) -> None:
        self.page, self.url, self.requests = page, url, []
        page.on("request", lambda req: self.requests.append(req))

    async def load(self) -> None:
        await self.page.goto(self.url)
        await expect(self.page.locator("body")).to_have_attribute("data-ready", "1")

    async def click(self, button: str) -> None:
        before = int(await self.page.locator("body").get_attribute("data-done") or 0)
        await self.page.locator(f"#{button}").click()
        await expect(self.page.locator("body")).to_have_attribute("data-done", str(before + 1), timeout=20_000)

    async def import_key(self, path: Path, passphrase: str = "") -> None:
        await self.page.locator("#keyfile").set_input_files(str(path))
        await self.page.locator("#passphrase").fill(passphrase)
        await self.click("import")

    async def error(self) -> tuple[str | None, str]:
        err = self.page.locator("#error")
        return await err.get_attribute("data-code"), await err.text_content()

    async def assert_nothing_leaked(self, secrets: list) -> None:
        assert self.requests
        for req in self.requests:
            assert req.url.startswith(self.url.split("/test/")[0]), req.url
            assert req.method == "GET", (req.method, req.url)
            body = req.post_data_buffer or b""
            for secret in secrets:
                raw = secret if isinstance(secret, bytes) else secret.encode()
                assert raw not in body and raw not in req.url.encode(), req.url
            for name, value in (await req.all_headers()).items():
                assert not any(s in value for s in secrets if isinstance(s, str)), name
        assert await self.page.locator("body").get_attribute("data-csp-violation") is None


async def new_page(browser, url: str) -> Page:
    context = await browser.new_context()  # its own IndexedDB
    return Page(await context.new_page(), url)


async def test_the_team_key_file_opens_the_content_in_the_browser_and_never_leaves_it(browser, base_url, setup):
    p = await new_page(browser, base_url)
    await p.load()
    await p.import_key(setup.key_file)
    await expect(p.page.locator("#status")).to_have_text("imported dev-force-1")
    await expect(p.page.locator("#keys li")).to_have_text(["dev-force-1 plain unlocked"])
    await p.click("open")
    assert await p.error() == ("", "")
    content = p.page.locator("#content")
    await expect(content).to_contain_text(CANARY)
    await expect(p.page.locator("#contacts")).to_contain_text(CONTACT_CANARY)
    # GOV.UK summary lists with readable labels, text only
    await expect(content.locator("dl.govuk-summary-list > .govuk-summary-list__row > dt").first).to_have_text("Subject")
    keys = await content.locator("dt.govuk-summary-list__key").all_text_contents()
    assert {"Given names", "Date of birth", "Parents and guardians", "Parental responsibility",
            "Reason for the holding instructions", "Postcode"} <= set(keys)
    await expect(content.locator("dd", has_text="Parental responsibility")).to_have_count(1)
    assert await content.locator("b").count() == 0
    await expect(content).to_contain_text("Second line <b>not markup</b>.")
    assert await content.locator("br").count() == 1
    await expect(content.locator("ul.govuk-list--bullet li")).to_have_text(["1 Example Street", "Dev Borough", "fictional example"])

    # still there after a reload: IndexedDB, opened without asking again
    await p.load()
    await expect(p.page.locator("#keys li")).to_have_text(["dev-force-1 plain locked"])
    await p.click("open")
    await expect(p.page.locator("#content")).to_contain_text(CANARY)
    await p.assert_nothing_leaked(setup.secrets)
    assert not any(CANARY in req.url for req in p.requests)


async def test_the_wrong_key_is_refused_with_a_clear_message_and_shows_nothing(browser, base_url, setup, tmp_path):
    wrong = tmp_path / "other" / "dev-force.x25519"  # same name and key id, another key
    write_private_key(wrong, bytes(generate_sealing_key()))
    p = await new_page(browser, base_url)
    await p.load()
    await p.import_key(wrong)
    await p.click("open")
    code, message = await p.error()
    assert code == "not-recipient"
    assert "cannot open this content" in message and "dev-force-1" in message
    assert await p.page.locator("#content").inner_html() == ""
    assert CANARY not in await p.page.content()

    # a signing key or any other file is not a team key
    signing = setup.key_file.parent / "dev-mash.ed25519"
    await p.import_key(signing)
    assert await p.error() == ("bad-key-file", "This is not a team key file: it is a signing key (.ed25519); "
                                               "choose your team's .x25519 file")
    await p.import_key(setup.key_file.parent.parent / "safeguard.toml")
    assert (await p.error())[0] == "bad-key-file"
    await p.assert_nothing_leaked([*setup.secrets, wrong.read_text().strip()])


async def test_a_passphrase_protected_key_needs_its_passphrase_and_can_be_forgotten(browser, base_url, setup):
    p = await new_page(browser, base_url)
    await p.load()
    await p.import_key(setup.key_file, passphrase="correct horse battery staple")
    await expect(p.page.locator("#keys li")).to_have_text(["dev-force-1 protected unlocked"])
    stored = await p.page.evaluate("""() => new Promise((resolve) => {
        const open = indexedDB.open("safeguard-relay");
        open.onsuccess = () => open.result.transaction("team-keys").objectStore("team-keys").getAll().onsuccess =
            (e) => resolve(JSON.stringify(e.target.result.map((r) => ({...r, wrapped: r.wrapped && {
                ...r.wrapped, box: btoa(String.fromCharCode(...r.wrapped.box))}}))));
    })""")
    assert setup.secrets[0] not in stored and '"key"' not in stored  # only the wrapped key is kept
    assert json.loads(stored)[0]["wrapped"]["kdf"] == "PBKDF2-SHA-256"

    await p.load()  # a new page holds nothing unlocked
    await expect(p.page.locator("#keys li")).to_have_text(["dev-force-1 protected locked"])
    await p.click("open")
    assert (await p.error())[0] == "locked"
    assert await p.page.locator("#content").inner_html() == ""
    await p.page.locator("#passphrase").fill("wrong horse battery staple")
    await p.click("unlock")
    assert await p.error() == ("wrong-passphrase", "That passphrase does not unlock the key dev-force-1")
    await p.click("open")
    assert (await p.error())[0] == "locked"
    await p.page.locator("#passphrase").fill("correct horse battery staple")
    await p.click("unlock")
    await expect(p.page.locator("#status")).to_have_text("unlocked dev-force-1")
    await p.click("open")
    await expect(p.page.locator("#content")).to_contain_text(CANARY)

    await p.click("forget")
    await expect(p.page.locator("#keys li")).to_have_count(0)
    await p.load()
    await expect(p.page.locator("#keys li")).to_have_count(0)
    await p.click("open")
    assert await p.error() == ("no-key", "Import your team's key file (.x25519) to open this content")
    await p.assert_nothing_leaked([*setup.secrets, "correct horse battery staple"])


async def test_govuk_frontend_css_and_its_fonts_load_under_the_csp(browser, base_url):
    p = await new_page(browser, base_url)
    responses = []
    p.page.on("response", lambda resp: responses.append(resp))
    await p.load()
    await p.page.evaluate("document.fonts.ready")
    family = await p.page.locator("h1").evaluate("(h) => getComputedStyle(h).fontFamily")
    assert family.startswith('"GDS Transport"')
    loaded = await p.page.evaluate("[...document.fonts].filter((f) => f.status === 'loaded').map((f) => f.family)")
    assert '"GDS Transport"' in loaded or "GDS Transport" in loaded
    fonts = [r for r in responses if "/assets/fonts/" in r.url]
    assert fonts and all(r.status == 200 and r.headers["content-type"] == "font/woff2" for r in fonts)
    sheets = {r.url.rsplit("/", 1)[-1]: r.status for r in responses if r.url.endswith(".css")}
    assert sheets == {"govuk-frontend.min.css": 200, "moj-frontend.min.css": 200}
    assert await p.page.locator("body").get_attribute("data-csp-violation") is None


async def test_an_envelope_moved_to_another_section_or_referral_does_not_open_and_says_why(
        browser, base_url, setup, reliability):
    """Issue 18 #10: the contacts envelope served as the content (and the content as the
    contacts), or another referral's reply, opened before; now each is refused with a clear
    message and nothing is rendered."""
    p = await new_page(browser, base_url)
    await p.load()
    await p.import_key(setup.key_file)
    original = dict(setup.reply)

    setup.reply.update(content_sealed=original["contacts_sealed"], contacts_sealed=original["content_sealed"])
    await p.click("open")
    code, message = await p.error()
    assert (code, message) == ("wrong-section", "This envelope holds the contact details, not the referral "
                                                "details: it was moved, and was not opened.")
    assert await p.page.locator("#content").inner_html() == "" and await p.page.locator("#contacts").inner_html() == ""

    # the clear label changed to match: the associated data binds the section, so it fails authentication
    setup.reply.update(content_sealed={**original["contacts_sealed"], "section": "content"},
                       contacts_sealed=original["contacts_sealed"])
    await p.click("open")
    assert (await p.error())[0] == "failed"

    # the same section of another referral (its id and reference), under this referral's page
    other_id = str(uuid.uuid4())
    theirs = seal_json({"subject": {"family_name": "Other"}}, other_id, setup.recipients,
                       reference="PRV-2026-000002", column="content_sealed")
    setup.reply.update(referral_id=other_id, reference="PRV-2026-000002", content_sealed=theirs,
                       contacts_sealed=original["contacts_sealed"])
    await p.click("open")
    assert await p.error() == ("wrong-referral", "The details sent are for referral PRV-2026-000002, not "
                                                 "PRV-2026-000001: they were not opened.")
    setup.reply.update(referral_id=setup.referral_id, reference=REFERENCE)  # the reply relabelled: the envelope
    setup.reply["content_sealed"] = theirs                                  # still names its own referral
    await p.click("open")
    assert await p.error() == ("wrong-referral", "These sealed details belong to referral PRV-2026-000002, "
                                                 "not PRV-2026-000001: they were not opened.")
    assert await p.page.locator("#content").inner_html() == ""
    assert CANARY not in await p.page.content() and CONTACT_CANARY not in await p.page.content()

    setup.reply.update(original)
    await p.click("open")
    await expect(p.page.locator("#content")).to_contain_text(CANARY)
    await p.assert_nothing_leaked(setup.secrets)
    reliability.row("attacks", finding="#10", attack="browser: a referral's contacts envelope served as its content "
                    "(and the reverse), relabelled, or another referral's reply or content envelope (sealed.js)",
                    before="opened: the contacts shown as the referral details (the AD bound only the referral id "
                    "and key version)", after="refused before decrypting: wrong-section / wrong-referral with a "
                    "clear message; relabelled: failed authentication; nothing rendered")
