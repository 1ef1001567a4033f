"""The control-room console (DESIGN §3.7): the signed-in operator's force's alerts, live over
Server-Sent Events. The force is the person's organisation (a `?force=` is ignored).

- `GET /console` — open alerts (most urgent first) and those acknowledged but still awaiting
  an outcome, with who acknowledged and when; a success banner after an action.
- `GET /console/events` — the same list as JSON events whenever it changes. The stream ends
  (an `end` event) when the session would idle out or expire: live updates do not keep a
  session alive; the page then asks for a reload. A closed tab is a normal end (issue 19): it is
  noticed within a poll interval (the connection is checked each second, not only when a write
  fails), logged at info as `console.stream.closed` with how it ended, never as an error, and
  counted (`safeguard_console_streams`, `safeguard_console_streams_closed_total{how}`).

The actions (acknowledge, outcome, welfare check) are in `console_actions.py`. Pages show
references, kinds, councils, levels, times and staff names — nothing about the child.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from services.escalation import metrics
from services.escalation.adapters import people
from services.escalation.adapters import repository as repo
from services.escalation.domain import console as shown
from services.escalation.entrypoints.http import CONTEXT
from shared.logging import get_logger
from shared.runtime import RUNTIME
from shared.web.pages import person_of, render, session_of, signed_in
from shared.web.sessions import IDLE



@dataclass
class Streams:
    """The live streams this process serves (a test waits for `open` to fall back to 0)."""
    open: int = 0


CLOSING = web.AppKey("console_closing", asyncio.Event)
STREAMS = web.AppKey("console_streams", Streams)
log = get_logger(__name__)
SSE_POLL_S = 1.0
HEARTBEAT_S = 15.0
BANNERS = {"acknowledged": "Alert acknowledged", "recorded": "Outcome recorded"}


def force_of(request: web.Request) -> str | None:
    """The signed-in person's force, if it is one this service knows."""
    person = person_of(request)
    org = person.organisation if person else None
    return org if org and request.app[CONTEXT].settings.force(org) else None


def council(request: web.Request, la_code: str) -> str:
    la = request.app[CONTEXT].settings.local_authority(la_code)
    return la.name if la else la_code


async def alerts_view(request: web.Request, force: str) -> dict[str, Any]:
    ctx = request.app[CONTEXT]
    async with request.app[RUNTIME].engine.connect() as conn:
        rows = [dict(r._mapping) for r in await people.console_alerts(conn, force)]
        names = await people.names_of(conn, [r["acknowledged_by"] for r in rows])
    now = ctx.clock()
    return {"now": now.isoformat(), "alerts": [shown.item(a, now, lambda c: council(request, c), names)
                                              for a in shown.ordered(rows)]}


async def _banner(request: web.Request, force: str) -> dict[str, str] | None:
    """The success banner after an action (`?done=acknowledged|recorded&alert=…`)."""
    done, alert_id = request.query.get("done", ""), request.query.get("alert", "")
    if done not in BANNERS or not alert_id:
        return None
    async with request.app[RUNTIME].engine.connect() as conn:
        alert = await repo.get_alert(conn, alert_id[:64])
    if alert is None or alert.force != force:
        return None
    what = shown.OUTCOME_LABELS.get(alert.outcome_action or "", "") if done == "recorded" else ""
    return {"title": BANNERS[done], "reference": alert.reference, "what": what}


@signed_in({"control_room", "ops"})
async def console_page(request: web.Request) -> web.StreamResponse:
    person = person_of(request)
    assert person is not None
    if person.role == "ops":
        raise web.HTTPSeeOther("/ops")
    force = force_of(request)
    if force is None:
        return render(request, "message.html", 403, title="You cannot use this page",
                      body="Your organisation has no control-room console here.")
    return render(request, "console.html", title="Alerts", force_name=request.app[CONTEXT].settings.force(force).name,
                  view=await alerts_view(request, force), banner=await _banner(request, force))


@signed_in({"control_room"})
async def events(request: web.Request) -> web.StreamResponse:
    force, session = force_of(request), session_of(request)
    if force is None or session is None:
        raise web.HTTPForbidden()
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no", "X-Content-Type-Options": "nosniff"})
    await response.prepare(request)
    streams, started, how = request.app[STREAMS], time.monotonic(), "failed"
    streams.open += 1
    metrics.CONSOLE_STREAMS.inc()
    try:
        how = await _stream(request, response, force, min(session.expires_at, session.last_seen_at + IDLE))
    except ConnectionError:  # the tab closed while a write was on its way (reset, broken pipe)
        how = "client_closed"
    except asyncio.CancelledError:  # a server cancelling handlers on disconnect: the same closed tab
        how = "client_closed" if _gone(request) else "cancelled"
        raise
    finally:  # "failed": an unexpected error, which the problem middleware logs as one
        streams.open -= 1
        metrics.CONSOLE_STREAMS.dec()
        metrics.CONSOLE_STREAMS_CLOSED.labels(how=how).inc()
        log.info("console.stream.closed", how=how, seconds=round(time.monotonic() - started, 1))
    return response


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _stream(request: web.Request, response: web.StreamResponse, force: str, ends: datetime) -> str:
    """Send the alerts whenever they change until the session's time is up ("ended"), the
    service stops ("shutdown") or the browser goes away ("client_closed")."""
    closing, clock, last, quiet = request.app[CLOSING], request.app[CONTEXT].clock, None, 0.0
    while not closing.is_set():
        if _gone(request):
            return "client_closed"
        if clock() >= ends:
            await response.write(b"event: end\ndata: {}\n\n")
            return "ended"
        # Shielded: a handler cancelled mid-query (the tab closed) still returns its database
        # connection cleanly, rather than leaving the pool to log a broken one.
        view = await asyncio.shield(alerts_view(request, force))
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
    return "shutdown"


async def _closing(app: web.Application) -> None:
    app[CLOSING].set()


def add_routes(app: web.Application) -> None:
    app[CLOSING] = asyncio.Event()
    app[STREAMS] = Streams()
    app.on_shutdown.append(_closing)
    app.router.add_get("/console", console_page)
    app.router.add_get("/console/events", events)
