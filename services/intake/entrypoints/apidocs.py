"""`GET /docs/api`: the OpenAPI document (`/openapi.json`) in Swagger UI, served by intake itself —
swagger-ui-dist from the project's npm lock file under /assets/swagger-ui/, our initializer at
/assets/app/api-docs.js — so nothing loads from a CDN. Reading only: "Try it out" is off (a
request needs an RFC 9421 signature, docs/integration.md) and so is the online validator.

The page has its own strict Content-Security-Policy (scripts and styles from this origin only,
no inline script or style element, no eval); Swagger UI runs under it. Without the npm package
(`make assets` not run) the page says so with a 503."""
from __future__ import annotations

from aiohttp import web

from shared.web.assets import node_modules

BUNDLE = "swagger-ui-dist/swagger-ui-bundle.js"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
           "X-Frame-Options": "DENY", "Cache-Control": "no-cache"}
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Safeguard Relay intake API</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/assets/swagger-ui/swagger-ui.css">
</head>
<body>
  <main id="swagger-ui" data-openapi-url="/openapi.json"></main>
  <noscript>The API reference needs JavaScript; the document itself is at <a href="/openapi.json">/openapi.json</a>.
  </noscript>
  <script src="/assets/swagger-ui/swagger-ui-bundle.js"></script>
  <script src="/assets/app/api-docs.js"></script>
</body>
</html>
"""


def add_routes(app: web.Application) -> None:
    installed = (node_modules() / BUNDLE).is_file()

    async def page(_request: web.Request) -> web.Response:
        if not installed:
            return web.Response(status=503, text="The API viewer's assets are not installed: run `make assets`. "
                                                 "The document is at /openapi.json.\n", headers=HEADERS)
        return web.Response(text=PAGE, content_type="text/html", headers=HEADERS)

    app.router.add_get("/docs/api", page)
