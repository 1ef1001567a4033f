"""Sign-in and sign-out routes, and `setup(app, config)` that wires the web package into a
service: `GET /sign-in` (the providers), `POST /sign-in` (start: a pending session, then the
provider), `GET /auth/callback` (verify, then a new session and back to the page), `POST
/sign-out`. Starts and callbacks are throttled per address; every sign-in, refusal and
sign-out is audited (a throttled address once per window, not once per attempt)."""
from __future__ import annotations

import ipaddress
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from aiohttp_remotes import XForwardedFiltered

from shared import audit
from shared.logging import get_logger
from shared.runtime import RUNTIME
from shared.web import assets
from shared.web.oidc import Provider, SignInRefused
from shared.web.pages import (
    WEB, FormRefused, Web, WebConfig, environment, form_of, load_session, refused_form, render, safe_next,
    same_origin,
)
from shared.web.sessions import SessionStore

log = get_logger(__name__)
THROTTLE_LIMIT, THROTTLE_WINDOW_S = 20, 60.0


class Throttle:
    """At most `limit` attempts per key in a sliding `window` (per process)."""

    def __init__(self, limit: int = THROTTLE_LIMIT, window: float = THROTTLE_WINDOW_S) -> None:
        self.limit, self.window = limit, window
        self.seen: dict[str, deque[float]] = defaultdict(deque)

    def allow(self, key: str) -> tuple[bool, bool]:
        """(allowed, first refusal in this window)."""
        now, times = time.monotonic(), self.seen[key]
        while times and now - times[0] > self.window:
            times.popleft()
        times.append(now)
        return len(times) <= self.limit, len(times) == self.limit + 1


THROTTLE = web.AppKey("web_throttle", Throttle)


async def _audit(request: web.Request, *, actor: str, action: str, outcome: str = "ok", **detail: object) -> None:
    w = request.app[WEB]
    async with w.store.engine.begin() as conn:
        await audit.record(conn, w.config.audit, actor=actor[:100], action=action, outcome=outcome,
                           detail={k: v for k, v in detail.items() if v is not None} or None, at=w.config.clock())


async def _throttled(request: web.Request) -> web.Response | None:
    allowed, first = request.app[THROTTLE].allow(request.remote or "unknown")
    if allowed:
        return None
    if first:
        await _audit(request, actor="sign-in", action="web.sign_in", outcome="throttled")
    log.info("sign_in_throttled")
    response = render(request, "message.html", 429, title="Too many sign-in attempts",
                      body="Wait a minute, then try again.")
    response.headers["Retry-After"] = str(int(THROTTLE_WINDOW_S))
    return response


def _redirect_uri(w: Web) -> str:
    return w.config.base_url.rstrip("/") + "/auth/callback"


def _set_cookie(request: web.Request, response: web.StreamResponse, w: Web, value: str, max_age: int) -> None:
    secure = request.scheme == "https" or w.config.base_url.startswith("https://")  # never dropped in production
    response.set_cookie(w.cookie, value, max_age=max_age, path="/", httponly=True, samesite="Lax", secure=secure)


async def sign_in_page(request: web.Request) -> web.StreamResponse:
    w = request.app[WEB]
    nxt = safe_next(request.query.get("next"), w.config.home)
    if await load_session(request) is not None:
        raise web.HTTPSeeOther(nxt)
    return render(request, "signin.html", title="Sign in", providers=[p.config for p in w.providers.values()],
                  next=nxt)


async def start_sign_in(request: web.Request) -> web.StreamResponse:
    if (refusal := await _throttled(request)) is not None:
        return refusal
    w = request.app[WEB]
    if not same_origin(request):  # another site may not start (and so replace) a sign-in
        return render(request, "message.html", 403, title="Start signing in from this site",
                      body="Open the page you want and sign in from there.", sign_in=True)
    form = await request.post()
    provider = w.providers.get(str(form.get("provider", "")))
    if provider is None:
        return render(request, "message.html", 400, title="Choose how to sign in",
                      body="That way of signing in is not set up.", sign_in=True)
    try:
        url, pending = await provider.authorisation_url(_redirect_uri(w))
    except SignInRefused as err:
        return await _refused(request, provider.config.id, err.reason)
    pending["next"] = safe_next(str(form.get("next", "")), w.config.home)
    session = await w.store.begin_sign_in(w.config.clock(), pending)
    response = web.Response(status=303, headers={"Location": url})
    _set_cookie(request, response, w, session.id, max_age=600)
    return response


async def _refused(request: web.Request, provider: str, reason: str) -> web.Response:
    await _audit(request, actor=f"sign-in:{provider}", action="web.sign_in", outcome="refused",
                 reason=reason, provider=provider)
    log.info("sign_in_refused", reason=reason, provider=provider)
    body = ("Your account is signed in at your organisation but has no role in Safeguard Relay. "
            "Ask your administrator to add you to the right group." if reason == "no_role"
            else "Signing in did not work. Try again; if it keeps failing, contact your service desk.")
    return render(request, "message.html", 403 if reason == "no_role" else 401, title="You are not signed in",
                  body=body, sign_in=True)


async def callback(request: web.Request) -> web.StreamResponse:
    if (refusal := await _throttled(request)) is not None:
        return refusal
    w = request.app[WEB]
    now = w.config.clock()
    pending_session = await w.store.get(request.cookies.get(w.cookie), now)
    pending = pending_session.pending if pending_session else None
    if pending is not None:  # one callback per sign-in, whatever it says (a signed-in session stays)
        await w.store.end(pending_session.id)
    provider = w.providers.get(pending["provider"]) if pending else None
    if pending is None or provider is None or request.query.get("state") != pending["state"]:
        return await _refused(request, provider.config.id if provider else "unknown", "state_mismatch")
    if "error" in request.query or not request.query.get("code"):
        return await _refused(request, provider.config.id, "provider_declined")
    try:
        person = await provider.complete(request.query["code"], _redirect_uri(w), pending)
    except SignInRefused as err:
        return await _refused(request, provider.config.id, err.reason)
    session = await w.store.signed_in(now, person)
    await _audit(request, actor=person.id, action="web.sign_in", person=person.as_dict(), provider=provider.config.id)
    log.info("signed_in", role=person.role, organisation=person.organisation)
    response = web.Response(status=303, headers={"Location": pending["next"]})
    _set_cookie(request, response, w, session.id, max_age=12 * 3600)
    return response


async def sign_out(request: web.Request) -> web.StreamResponse:
    w = request.app[WEB]
    session = await load_session(request)
    if session is not None:
        try:
            await form_of(request)
        except FormRefused:
            return refused_form(request)
        await w.store.end(session.id)
        assert session.person is not None
        await _audit(request, actor=session.person.id, action="web.sign_out")
    response = render(request, "message.html", title="You have signed out",
                      body="Close the browser window if you are on a shared computer.", sign_in=True, signed_out=True)
    response.del_cookie(w.cookie, path="/")
    return response


def _trusted_proxies(app: web.Application, trusted: tuple[str, ...]) -> None:
    """Forwarded scheme, host and client address only from a configured proxy's connection."""
    if not trusted:
        return
    networks = [ipaddress.ip_network(t, strict=False) for t in trusted]
    # The right-most address not of a trusted proxy is the client (a council's own proxy may
    # have added hops before ours); the headers count only when our proxy is the peer.
    filtered = XForwardedFiltered(set(networks))

    @web.middleware
    async def forwarded(request: web.Request, handler):
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer and any(ipaddress.ip_address(peer[0]) in n for n in networks):
            return await filtered.middleware(request, handler)
        return await handler(request)

    app.middlewares.insert(0, forwarded)


def setup(app: web.Application, config: WebConfig) -> None:
    """Routes, assets and the context (sessions, identity providers) of the pages."""
    _trusted_proxies(app, config.settings.file.system.trusted_proxies)
    app[THROTTLE] = Throttle()

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as http:
            w = Web(config, SessionStore(config.engine or app[RUNTIME].engine, config.sessions), environment(config.templates))
            w.providers = {p.id: Provider(p, http, config.env) for p in config.settings.file.identity_providers}
            app[WEB] = w
            yield

    app.cleanup_ctx.append(ctx)
    app.router.add_get("/sign-in", sign_in_page)
    app.router.add_post("/sign-in", start_sign_in)
    app.router.add_get("/auth/callback", callback)
    app.router.add_post("/sign-out", sign_out)
    assets.add_asset_routes(app)
