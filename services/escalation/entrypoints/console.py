"""The control-room console: open alerts for one force, live over Server-Sent Events.

Staff authentication is deliberately simple: each force has a console access code
(`SAFEGUARD_CONSOLE_TOKENS="force=code;..."` or a generated file
`<data dir>/console/<force>.token`). Signing in posts the code once; the browser then
holds it in an HttpOnly, SameSite=Strict cookie scoped to `/console`. The page, the
event stream and the acknowledge action all need that cookie for the force in the
URL. Acknowledging is a same-origin POST (Origin / Sec-Fetch-Site checked), never a
GET. Pages show references, kinds, LA codes, levels and times only — no personal data.
"""
from __future__ import annotations

import asyncio
import hmac
import json
from datetime import datetime
from pathlib import Path

from aiohttp import web

from services.escalation import handlers, metrics
from services.escalation.adapters import repository as repo
from services.escalation.domain.alerts import KIND_LABELS, console_order
from services.escalation.entrypoints.http import CONTEXT
from shared import pages
from shared.http import problem
from shared.runtime import RUNTIME

HERE = Path(__file__).parent
COOKIE = "sg_console"
CONSOLE_TOKENS = web.AppKey("console_tokens", dict)
CLOSING = web.AppKey("console_closing", asyncio.Event)
SSE_POLL_S = 1.0
HEARTBEAT_S = 15.0
TEMPLATES = pages.templates(HERE / "templates")
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
}


def _force(request: web.Request) -> str | None:
    slug = request.query.get("force", "")
    return slug if request.app[CONTEXT].settings.force(slug) else None


def _signed_in(request: web.Request, force: str) -> bool:
    expected = request.app[CONSOLE_TOKENS].get(force)
    value = request.cookies.get(COOKIE, "")
    who, _, token = value.partition(":")
    return bool(expected) and who == force and hmac.compare_digest(token.encode(), expected.encode())


def same_origin(request: web.Request) -> bool:
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    return origin is None or origin == f"{request.scheme}://{request.host}"


async def open_alerts_view(request: web.Request, force: str) -> dict:
    rt, ctx = request.app[RUNTIME], request.app[CONTEXT]
    async with rt.engine.connect() as conn:
        rows = await repo.open_alerts(conn, force=force)
    items = sorted(({**row._mapping} for row in rows), key=console_order)
    return {"now": ctx.clock().isoformat(), "alerts": [{
        "alert_id": a["alert_id"], "kind": a["kind"], "kind_label": KIND_LABELS.get(a["kind"], a["kind"]),
        "level": a["level"], "level_index": a["level_index"], "reference": a["reference"],
        "la_code": a["la_code"], "raised_at": a["raised_at"].isoformat(),
        "last_raised_at": a["last_raised_at"].isoformat()} for a in items]}


def _age(now: str, then: str) -> str:
    minutes = int((datetime.fromisoformat(now) - datetime.fromisoformat(then)).total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{max(minutes, 0)} min"


def _page(template: str, status: int = 200, **values) -> web.Response:
    html = TEMPLATES.get_template(template).render(kinds=KIND_LABELS, age=_age, **values)
    return web.Response(text=html, content_type="text/html", status=status, headers=HEADERS)


async def console_page(request: web.Request) -> web.StreamResponse:
    force = _force(request)
    if force is None:
        return _page("unknown.html", 404)
    name = request.app[CONTEXT].settings.force(force).name
    if not _signed_in(request, force):
        return _page("signin.html", force=force, force_name=name, error=None)
    return _page("console.html", force=force, force_name=name, view=await open_alerts_view(request, force))


async def sign_in(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    force, code = str(form.get("force", "")), str(form.get("code", ""))
    expected = request.app[CONSOLE_TOKENS].get(force)
    if not same_origin(request):
        return problem(403, detail="cross-site request refused")
    if request.app[CONTEXT].settings.force(force) is None:
        return _page("unknown.html", 404)
    if not expected or not hmac.compare_digest(code.encode(), expected.encode()):
        name = request.app[CONTEXT].settings.force(force).name
        return _page("signin.html", 401, force=force, force_name=name, error="The access code is not right.")
    response = web.Response(status=303, headers={"Location": f"/console?force={force}", **HEADERS})
    response.set_cookie(COOKIE, f"{force}:{code}", httponly=True, samesite="Strict", path="/console",
                        secure=request.secure)
    return response


async def events(request: web.Request) -> web.StreamResponse:
    force = _force(request)
    if force is None or not _signed_in(request, force):
        return problem(401, detail="sign in to the console first")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    closing, last, quiet = request.app[CLOSING], None, 0.0
    while not closing.is_set():
        view = await open_alerts_view(request, force)
        payload = json.dumps(view["alerts"])
        if payload != last:
            await response.write(f"event: alerts\ndata: {json.dumps(view)}\n\n".encode())
            last, quiet = payload, 0.0
        elif quiet >= HEARTBEAT_S:
            await response.write(b": keep-alive\n\n")
            quiet = 0.0
        try:
            await asyncio.wait_for(closing.wait(), SSE_POLL_S)
        except TimeoutError:
            quiet += SSE_POLL_S
    return response


async def acknowledge(request: web.Request) -> web.StreamResponse:
    if not same_origin(request):
        return problem(403, detail="cross-site request refused")
    rt, ctx = request.app[RUNTIME], request.app[CONTEXT]
    alert_id = request.match_info["alert_id"]
    async with rt.engine.begin() as conn:
        alert = await repo.get_alert(conn, alert_id)
        if alert is None or not _signed_in(request, alert.force):
            return problem(403 if alert else 404)
        was_open = alert.status == "open"
        await handlers.acknowledge_alert(conn, alert_id, f"console:{alert.force}", ctx.clock())
    if was_open:
        metrics.ALERTS_ACKNOWLEDGED.labels(via="console").inc()
        rt.relay.notify()
    if request.headers.get("Accept", "").startswith("application/json"):
        return web.json_response({"alert_id": alert_id, "status": "acknowledged"})
    raise web.HTTPSeeOther(f"/console?force={alert.force}")


async def _closing(app: web.Application) -> None:
    app[CLOSING].set()


def add_routes(app: web.Application, tokens: dict[str, str]) -> None:
    app[CONSOLE_TOKENS] = dict(tokens)
    app[CLOSING] = asyncio.Event()
    app.on_shutdown.append(_closing)
    app.router.add_get("/console", console_page)
    app.router.add_post("/console/session", sign_in)
    app.router.add_get("/console/events", events)
    app.router.add_post("/console/alerts/{alert_id}/acknowledgement", acknowledge)
    app.router.add_get("/console/static/console.css", pages.stylesheet(HERE / "templates" / "console.css"))
    app.router.add_static("/console/static", HERE / "static", append_version=False)
