"""shared/web/assets.py over real HTTP: the locally served front-end assets (DESIGN §3.7)."""
from __future__ import annotations

import re

import pytest
from aiohttp import web
from yarl import URL

from shared.web import assets
from shared.web.assets import add_asset_routes

JS = "text/javascript; charset=utf-8"
EXPECTED = {
    "/assets/govuk-frontend.min.css": "text/css; charset=utf-8",
    "/assets/govuk-frontend.min.js": JS,
    "/assets/fonts/bold-b542beb274-v2.woff2": "font/woff2",
    "/assets/fonts/light-f591b13f7d-v2.woff": "font/woff",
    "/assets/images/govuk-crest.svg": "image/svg+xml",
    "/assets/images/favicon.ico": "image/x-icon",
    "/assets/images/govuk-icon-180.png": "image/png",
    "/assets/manifest.json": "application/json",
    "/assets/images/icon-document.svg": "image/svg+xml",  # MOJ Frontend's, in the same folder
    "/assets/moj/moj-frontend.min.css": "text/css; charset=utf-8",
    "/assets/moj/moj-frontend.min.js": JS,
    "/assets/libsodium/libsodium-wrappers.mjs": JS,
    "/assets/libsodium/libsodium.mjs": JS,
    "/assets/libsodium/libsodium-wrappers.js": JS,
    "/assets/libsodium/libsodium.js": JS,
    "/assets/app/sealed.js": JS,
}


@pytest.fixture
async def client(aiohttp_client):
    app = web.Application()
    add_asset_routes(app)
    return await aiohttp_client(app)


@pytest.mark.parametrize("path", sorted(EXPECTED))
async def test_asset_is_served_with_type_caching_and_nosniff(client, path):
    resp = await client.get(path)
    assert resp.status == 200, path
    assert resp.headers["Content-Type"] == EXPECTED[path]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert re.fullmatch(r"public, max-age=\d+", resp.headers["Cache-Control"])
    assert resp.headers["ETag"]
    assert len(await resp.read()) > 0


async def test_etag_gives_304_and_head_works(client):
    first = await client.get("/assets/app/sealed.js")
    etag = first.headers["ETag"]
    again = await client.get("/assets/app/sealed.js", headers={"If-None-Match": etag})
    assert again.status == 304
    assert await again.read() == b""
    assert again.headers["Cache-Control"] == first.headers["Cache-Control"]
    head = await client.head("/assets/govuk-frontend.min.css")
    assert head.status == 200 and head.headers["Content-Type"].startswith("text/css")


async def test_every_url_the_css_asks_for_resolves(client):
    for sheet in ("/assets/govuk-frontend.min.css", "/assets/moj/moj-frontend.min.css"):
        css = await (await client.get(sheet)).text()
        urls = set(re.findall(r"url\(([^)]+)\)", css))
        assert urls, sheet
        for url in urls:
            url = url.strip("'\"")
            assert url.startswith("/assets/"), url
            resp = await client.get(url)
            assert resp.status == 200, f"{sheet} asks for {url}: {resp.status}"
        fonts = [u for u in urls if u.endswith(".woff2")]
        if sheet.endswith("govuk-frontend.min.css"):
            assert fonts
            for url in fonts:
                assert (await client.get(url)).headers["Content-Type"] == "font/woff2"


async def test_the_manifest_icons_resolve(client):
    manifest = await (await client.get("/assets/manifest.json")).json()
    for icon in manifest["icons"]:
        assert (await client.get(f"/assets/{icon['src']}")).status == 200, icon["src"]


@pytest.mark.parametrize("raw", [
    "/assets/app/..%2f..%2fcrypto.py", "/assets/app/%2e%2e/%2e%2e/crypto.py", "/assets/%2fetc%2fpasswd.js",
    "/assets/app/..%2f..%2f..%2fpackage.json", "/assets/moj/all.scss", "/assets/moj/template.njk",
    "/assets/libsodium/libsodium-wrappers.d.ts", "/assets/app/missing.js", "/assets/fonts/",
])
async def test_outside_files_and_other_types_are_not_served(client, raw):
    resp = await client.get(URL(raw, encoded=True))
    assert resp.status == 404, raw


def test_missing_node_modules_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.ASSETS_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(RuntimeError, match="make install"):
        add_asset_routes(web.Application())
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(assets.ASSETS_ENV, str(tmp_path / "empty"))
    with pytest.raises(RuntimeError, match=r"make install.*package-lock\.json"):
        add_asset_routes(web.Application())


def test_assets_dir_from_the_environment(monkeypatch):
    monkeypatch.delenv(assets.ASSETS_ENV, raising=False)
    default = assets.node_modules()
    monkeypatch.setenv(assets.ASSETS_ENV, str(default))
    assert assets.node_modules() == default
    app = web.Application()
    add_asset_routes(app)
    assert app.router["assets"].url_for(path="app/sealed.js") == URL("/assets/app/sealed.js")
