"""The pages' common machinery: `Web` (one per app, `WEB`), rendering with the GOV.UK layout
and security headers, the signed-in guard and the form check (CSRF token + same origin).

A service calls `setup(app, WebConfig(...))` after its runtime context; its views use
`@signed_in(roles)` and `render(request, "page.html", ...)`, and check every POST with
`await form_of(request)`. Services' templates come first, then `shared/web/templates`, then
the GOV.UK Frontend macros (`govuk_frontend_jinja`).
"""
from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from aiohttp import web
from multidict import MultiDictProxy
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.config import Settings
from shared.web.identity import Person
from shared.web.sessions import Session, SessionStore

HERE = Path(__file__).parent
SESSION = web.RequestKey("web_session", Session)
FORM = web.RequestKey("web_form", MultiDictProxy)
View = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class WebConfig:
    service: str  # "intake" | "escalation": the cookie's and the audit's name
    settings: Settings
    base_url: str  # this service's public origin: the OIDC redirect URI is `{base_url}/auth/callback`
    home: str  # where a sign-in lands when it was not started from a page
    service_name: str  # in the header
    templates: Path  # the service's own templates
    sessions: Table
    audit: Table
    clock: Callable[[], datetime]
    navigation: tuple[tuple[str, str, Collection[str]], ...] = ()  # (label, href, roles that see it)
    env: Mapping[str, str] | None = None
    engine: AsyncEngine | None = None  # default: the service runtime's


@dataclass
class Web:
    config: WebConfig
    store: SessionStore
    templates: jinja2.Environment
    providers: dict[str, Any] = field(default_factory=dict)  # id -> oidc.Provider

    @property
    def cookie(self) -> str:
        return f"sg_{self.config.service}_session"


WEB = web.AppKey("web", Web)


def environment(own: Path) -> jinja2.Environment:
    loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(own), jinja2.FileSystemLoader(HERE / "templates"),
                                  jinja2.PrefixLoader({"govuk_frontend_jinja": jinja2.PackageLoader("govuk_frontend_jinja")})])
    return jinja2.Environment(loader=loader, autoescape=True, trim_blocks=True, lstrip_blocks=True)


def headers(nonce: str, form_targets: Collection[str] = ()) -> dict[str, str]:
    """Security headers of every page: a strict CSP (the GOV.UK template's one inline script by
    nonce; WebAssembly for libsodium), no caching, no framing, no referrer off-site."""
    forms = " ".join(["'self'", *sorted(form_targets)])
    return {
        "Content-Security-Policy": (
            f"default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; style-src 'self'; "
            f"img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; "
            f"frame-ancestors 'none'; form-action {forms}; base-uri 'none'"),
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
        "X-Frame-Options": "DENY", "Cross-Origin-Opener-Policy": "same-origin",
    }


def session_of(request: web.Request) -> Session | None:
    return request.get(SESSION)


def person_of(request: web.Request) -> Person | None:
    session = session_of(request)
    return session.person if session else None


def render(request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
    w = request.app[WEB]
    session = session_of(request)
    person = session.person if session else None
    nonce = secrets.token_urlsafe(16)
    nav = [{"text": label, "href": href, "active": request.path.startswith(href)}
           for label, href, roles in w.config.navigation if person and person.role in roles]
    html = w.templates.get_template(template).render(
        person=person, csrf_token=session.csrf_token if session and person else "", cspNonce=nonce,
        service_name=w.config.service_name, home=w.config.home, navigation=nav, request_path=request.path_qs,
        **values)
    origins = {_origin(p.config.issuer) for p in w.providers.values()}
    return web.Response(text=html, content_type="text/html", status=status, headers=headers(nonce, origins))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


_LOCAL_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9/_.~%?=&+,;:@!$'()*-]*")


def safe_next(value: str | None, default: str) -> str:
    """A local path to return to after sign-in (never another site): `/` then only path and
    query characters — no second slash or backslash at the start, no whitespace or control
    characters a browser would strip (`/\t/evil.example` is `//evil.example` to it)."""
    if not value or not _LOCAL_PATH.fullmatch(value) or "/\\" in value:
        return default
    return value


async def load_session(request: web.Request) -> Session | None:
    w = request.app[WEB]
    session = await w.store.get(request.cookies.get(w.cookie), w.config.clock())
    if session is not None and session.person is not None:
        request[SESSION] = session
        return session
    return None


def signed_in(roles: Collection[str] | None = None) -> Callable[[View], View]:
    """The view needs a signed-in person (of one of `roles`): otherwise a GET is sent to sign in
    and back, anything else gets 401; a person of another role gets a 403 page. Anything but a
    GET must also pass `form_of` (else the 403 "form has expired" page); the view then reads the
    checked form with `await form_of(request)`."""
    def wrap(view: View) -> View:
        @functools.wraps(view)
        async def guarded(request: web.Request) -> web.StreamResponse:
            session = await load_session(request)
            if session is None:
                if request.method == "GET":
                    raise web.HTTPSeeOther(f"/sign-in?next={quote(request.path_qs, safe='')}")
                return render(request, "message.html", 401, title="Your session has ended",
                              body="Sign in again to continue.", sign_in=True)
            assert session.person is not None
            if roles is not None and session.person.role not in roles:
                return render(request, "message.html", 403, title="You cannot use this page",
                              body="Your role does not give access to this page.")
            if request.method != "GET":  # every form: its CSRF token and the same origin, here, once
                try:
                    await form_of(request)
                except FormRefused:
                    return refused_form(request)
            return await view(request)
        return guarded
    return wrap


def same_origin(request: web.Request) -> bool:
    """A POST from this site: `Sec-Fetch-Site` when the browser sends it, else `Origin` against
    the request's own origin (its forwarded scheme and host behind a trusted proxy)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    return origin is None or origin == f"{request.scheme}://{request.host}"


class FormRefused(Exception):
    pass


async def form_of(request: web.Request) -> MultiDictProxy[str]:
    """The posted form of a signed-in person, after the same-origin and CSRF checks
    (`FormRefused` otherwise: render a 403)."""
    if FORM in request:  # checked already (by @signed_in)
        return request[FORM]
    session = session_of(request)
    form = await request.post()
    token = str(form.get("csrf_token", ""))
    if session is None or not same_origin(request) or not secrets.compare_digest(token, session.csrf_token):
        raise FormRefused()
    request[FORM] = form
    return form  # type: ignore[return-value]


def refused_form(request: web.Request) -> web.Response:
    return render(request, "message.html", 403, title="This form has expired",
                  body="Go back, reload the page and try again.")
