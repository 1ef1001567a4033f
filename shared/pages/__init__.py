"""What the services' HTML pages share (intake's report; escalation's console and ops dashboard).

- `templates/layout.html`: the page (skip link, header, main, footer; GOV.UK Design System
  patterns). A service's own `base.html` extends it, naming its title, stylesheet URL,
  service name and footer.
- `templates/signin_page.html`: the one-access-code sign-in form, extending the service's
  `base.html`; the service's sign-in pages fill in its heading, action, label and hint.
- `static/layout.css`: the rules every page uses. `stylesheet` serves it followed by the
  service's own rules as one stylesheet, at the URL the service's pages link to.

A service's own templates come first (`templates`), so it can replace any shared one.
"""
from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import jinja2
from aiohttp import web

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
LAYOUT_CSS = HERE / "static" / "layout.css"

__all__ = ["LAYOUT_CSS", "TEMPLATES", "stylesheet", "templates"]


def templates(own: Path) -> jinja2.Environment:
    """An autoescaping Jinja environment: the service's templates in `own`, then the shared ones."""
    loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(own), jinja2.FileSystemLoader(TEMPLATES)])
    return jinja2.Environment(loader=loader, autoescape=True)


def stylesheet(own: Path, headers: Mapping[str, str] | None = None
               ) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A GET handler for `layout.css` followed by the service's `own` rules (read once, here),
    with an ETag so that a browser revalidates it with a 304."""
    body = LAYOUT_CSS.read_bytes() + own.read_bytes()
    etag = hashlib.sha256(body).hexdigest()[:32]

    async def handler(request: web.Request) -> web.Response:
        if any(tag.value == etag for tag in request.if_none_match or ()):
            response = web.Response(status=304)
        else:
            response = web.Response(body=body, content_type="text/css")
        response.etag = etag
        response.headers.update(headers or {})
        return response

    return handler
