"""The front-end assets the pages serve themselves, under /assets/ (DESIGN §3.7; no CDN).

From node_modules/ (package.json, locked by package-lock.json; `make install` or
`make assets` runs `npm ci`) and from shared/web/static/ (our own scripts):

  /assets/govuk-frontend.min.css, .min.js    GOV.UK Frontend (the JS is an ES module)
  /assets/fonts/…, /assets/images/…,         GOV.UK Frontend's dist/govuk/assets/, the folder
  /assets/manifest.json                      its CSS and template.html (assetPath "/assets") ask
                                             for; /assets/images/ also holds MOJ Frontend's icons
  /assets/moj/moj-frontend.min.css, .min.js  MOJ Frontend (its CSS asks for /assets/images/icon-*.svg)
  /assets/libsodium/libsodium-wrappers.mjs   libsodium-wrappers' ES module; it imports
                                             ./libsodium.mjs, served beside it (and the UMD
                                             libsodium.js + libsodium-wrappers.js for <script>)
  /assets/app/sealed.js                      shared/web/static/: sealed content opened in the browser
  /assets/app/api-docs.js                    shared/web/static/: intake's /docs/api initializer
  /assets/swagger-ui/…                       swagger-ui-dist (intake's /docs/api; optional: the page
                                             answers 503 without it, the other pages work on)

libsodium runs WebAssembly: a page that loads it needs `script-src 'self' 'wasm-unsafe-eval'`
(CSP_SCRIPT_SRC) in its Content-Security-Policy. Only the file types below are served.
"""
from __future__ import annotations

import os
from pathlib import Path

from aiohttp import web

ASSETS_ENV = "SAFEGUARD_ASSETS_DIR"
ASSET_PATH = "/assets"
CSP_SCRIPT_SRC = "'self' 'wasm-unsafe-eval'"
STATIC = Path(__file__).resolve().parent / "static"
MAX_AGE = 3600  # the names are not fingerprinted: revalidate (ETag → 304) after an hour
TYPES = {
    ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8", ".json": "application/json", ".map": "application/json",
    ".woff2": "font/woff2", ".woff": "font/woff", ".svg": "image/svg+xml", ".png": "image/png",
    ".ico": "image/x-icon",
}
# (URL prefix under /assets/, folders looked in, in order); the first matching prefix decides
MOUNTS = (
    ("app/", ("@app",)),
    ("moj/", ("@ministryofjustice/frontend/moj",)),
    ("swagger-ui/", ("swagger-ui-dist",)),
    ("libsodium/", ("libsodium-wrappers/dist/modules-esm", "libsodium/dist/modules-esm",
                    "libsodium-wrappers/dist/modules", "libsodium/dist/modules")),
    ("", ("govuk-frontend/dist/govuk/assets", "@ministryofjustice/frontend/moj/assets",
          "govuk-frontend/dist/govuk")),
)
REQUIRED = ("govuk-frontend.min.css", "govuk-frontend.min.js", "fonts/bold-b542beb274-v2.woff2",
            "moj/moj-frontend.min.css", "moj/moj-frontend.min.js", "libsodium/libsodium-wrappers.mjs",
            "libsodium/libsodium.mjs", "app/sealed.js")


def node_modules() -> Path:
    """`$SAFEGUARD_ASSETS_DIR`, else the repository's node_modules/; RuntimeError when missing."""
    configured = os.environ.get(ASSETS_ENV)
    root = Path(configured) if configured else Path(__file__).resolve().parents[2] / "node_modules"
    if not root.is_dir():
        raise RuntimeError(f"front-end assets not found at {root}: run `make install` (or `make assets`, "
                           f"which runs `npm ci`), or set {ASSETS_ENV} to a node_modules directory")
    return root.resolve()


def _mounts(root: Path) -> list[tuple[str, tuple[Path, ...]]]:
    return [(prefix, tuple(STATIC if d == "@app" else (root / d).resolve() for d in dirs))
            for prefix, dirs in MOUNTS]


def _find(mounts: list[tuple[str, tuple[Path, ...]]], path: str) -> Path | None:
    if Path(path).suffix not in TYPES:
        return None
    for prefix, dirs in mounts:
        if path.startswith(prefix):
            for folder in dirs:
                candidate = (folder / path[len(prefix):]).resolve()
                if candidate.is_relative_to(folder) and candidate.is_file():
                    return candidate
            return None
    return None


def add_asset_routes(app: web.Application) -> None:
    """GET (and HEAD) /assets/{path}: the files above, with ETag/304 and Cache-Control."""
    root = node_modules()
    mounts = _mounts(root)
    missing = [name for name in REQUIRED if _find(mounts, name) is None]
    if missing:
        raise RuntimeError(f"front-end assets incomplete in {root} (no {', '.join(missing)}): run "
                           "`make install` (or `make assets`) to reinstall them from package-lock.json")

    async def asset(request: web.Request) -> web.StreamResponse:
        file = _find(mounts, request.match_info["path"])
        if file is None:
            raise web.HTTPNotFound()
        return web.FileResponse(file, headers={
            "Content-Type": TYPES[file.suffix], "Cache-Control": f"public, max-age={MAX_AGE}",
            "X-Content-Type-Options": "nosniff"})

    app.router.add_get(ASSET_PATH + "/{path:.+}", asset, name="assets")
