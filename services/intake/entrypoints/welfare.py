"""The welfare check on intake (DESIGN §3.7), for the control room of a referral's force only:

- `GET /referrals/{reference}/welfare-check[?alert=…]` — the warning and the reason form;
- `POST` the same path (CSRF, same origin) — audited `referral.welfare_check_opened`, a
  15-minute grant for this session (adapters/welfare.py), then 303 to …
- `GET …/welfare-check/open` — the page whose script (static/welfare.js) fetches
  `GET …/welfare-check/sealed.json` (a live grant only, else 403; audited `referral.sealed_read`
  for the purpose `welfare_check`), opens it with the force's key and shows only the child's
  name, date of birth and address. Without a live grant the page sends back to the warning.

Other roles get the 403 page; an absent referral and another force's get the same 404 page.
The server renders references and times only: nothing about the child."""
from __future__ import annotations

import re

from aiohttp import web

from services.intake.adapters import welfare
from services.intake.domain.errors import Forbidden, Gone, IntakeError, NotFound
from services.intake.domain.labels import WELFARE_REASON, WELFARE_ROLES
from services.intake.entrypoints.pages import common, me, not_found, reference_of, refused
from shared.http import problem
from shared.web.pages import form_of, render, session_of, signed_in

control_room = signed_in(WELFARE_ROLES)
ALERT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
REASON_ERROR = [{"text": "Select why you need to see the child's identity and address", "href": "#reason"}]
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _alert(value: object) -> str | None:
    """The control room's alert id from escalation's link (kept for the audit when well-formed)."""
    text = str(value or "")
    return text if ALERT_ID.match(text) else None


def _session_id(request: web.Request) -> str:
    session = session_of(request)
    assert session is not None  # @signed_in
    return session.id


def _warning(request: web.Request, row, alert: str | None, status: int = 200, errors=None) -> web.Response:
    ctx, _ = me(request)
    return render(request, "welfare.html", status, title="Open for a welfare check", ref=row.reference, m=row,
                  alert=alert, reasons=WELFARE_REASON, error_summary=errors,
                  console_url=ctx.settings.file.system.console_base_url.rstrip("/") + "/console", **common(ctx))


@control_room
async def warning(request: web.Request) -> web.StreamResponse:
    ctx, person = me(request)
    try:
        row = await welfare.referral_for(ctx, person, reference_of(request))
    except (Forbidden, NotFound) as err:
        await refused(request, ctx, person, "referral.welfare_check", err)
        return not_found(request)
    return _warning(request, row, _alert(request.query.get("alert")))


@control_room
async def open_check(request: web.Request) -> web.StreamResponse:
    ctx, person = me(request)
    form = await form_of(request)  # checked by @control_room
    reason, alert = str(form.get("reason", "")), _alert(form.get("alert"))
    try:
        ref = reference_of(request)
        if reason not in WELFARE_REASON:
            row = await welfare.referral_for(ctx, person, ref)
            return _warning(request, row, alert, 422, REASON_ERROR)
        await welfare.open_check(ctx, person, _session_id(request), ref, reason, alert)
    except (Forbidden, NotFound) as err:
        await refused(request, ctx, person, "referral.welfare_check_opened", err)
        return not_found(request)
    raise web.HTTPSeeOther(f"/referrals/{ref}/welfare-check/open")


@control_room
async def opened(request: web.Request) -> web.StreamResponse:
    ctx, person = me(request)
    try:
        ref = reference_of(request)
        row, ends = await welfare.granted(ctx, person, _session_id(request), ref)
    except (Forbidden, NotFound) as err:
        await refused(request, ctx, person, "referral.welfare_check", err)
        return not_found(request)
    if ends is None:  # never opened in this session, or its 15 minutes are over
        raise web.HTTPSeeOther(f"/referrals/{ref}/welfare-check")
    force = ctx.settings.force(row.force)
    return render(request, "welfare_open.html", title="The child's identity and address", ref=ref, m=row,
                  ends=ends, key_ids=[k.key_id for k in force.active_keys] if force else [], **common(ctx))


@control_room
async def sealed_json(request: web.Request) -> web.StreamResponse:
    ctx, person = me(request)
    try:
        reply = await welfare.sealed(ctx, person, _session_id(request), reference_of(request))
    except IntakeError as err:
        await refused(request, ctx, person, "referral.sealed_read", err)
        status = 410 if isinstance(err, Gone) else 403 if err.reason == "no_welfare_grant" else 404
        return problem(status, headers=NO_STORE)
    return web.json_response(reply, headers=NO_STORE)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/referrals/{reference}/welfare-check", warning)
    app.router.add_post("/referrals/{reference}/welfare-check", open_check)
    app.router.add_get("/referrals/{reference}/welfare-check/open", opened)
    app.router.add_get("/referrals/{reference}/welfare-check/sealed.json", sealed_json)
