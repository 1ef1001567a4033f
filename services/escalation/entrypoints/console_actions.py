"""The console's actions on one alert of the operator's force, each a page then a POST (CSRF
token and same origin checked; the person recorded as the actor, named in the audit and events):

- `/console/alerts/{id}/acknowledge` (GET: the confirmation) → `POST …/acknowledgement`
- `/console/alerts/{id}/outcome` (GET: the form, DESIGN §3.5 actions + optional notes, sealed
  by the same handler as the signed API's) → `POST` the same path

The "open for a welfare check" step is in `console_welfare.py`.

An alert of another force is refused exactly as an absent one (404), and the attempt audited.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import Row

from services.escalation import handlers, metrics
from services.escalation.adapters import people
from services.escalation.adapters import repository as repo
from services.escalation.adapters.effects import audit
from services.escalation.domain import console as shown
from services.escalation.domain.outcomes import OutcomeRefused
from services.escalation.entrypoints.console import council, force_of
from services.escalation.entrypoints.http import CONTEXT
from shared.logging import sensitive_scope
from shared.runtime import RUNTIME
from shared.web.pages import form_of, person_of, render, signed_in

ALERT = "/console/alerts/{alert_id}"
NOTES_MAX = 10000
control_room = signed_in({"control_room"})


async def alert_of(request: web.Request) -> tuple[Row[Any] | None, dict[str, Any] | None]:
    """The alert (and how the page shows it) when it is the person's force's; else (None, None)."""
    async with request.app[RUNTIME].engine.connect() as conn:
        alert = await repo.get_alert(conn, request.match_info["alert_id"][:64])
        if alert is None or alert.force != force_of(request):
            return None, None
        names = await people.names_of(conn, [alert.acknowledged_by])
    return alert, shown.item(dict(alert._mapping), request.app[CONTEXT].clock(), lambda c: council(request, c), names)


async def refusal(request: web.Request, action: str, outcome: str, reference: str | None = None) -> None:
    """Audit a refused POST, naming the person."""
    person = person_of(request)
    assert person is not None
    async with request.app[RUNTIME].engine.begin() as conn:
        await audit(conn, action, reference, request.app[CONTEXT].clock(), actor=person.id, outcome=outcome,
                    detail={"alert_id": request.match_info["alert_id"][:64], "person": person.as_dict()})


async def missing(request: web.Request, action: str | None = None) -> web.Response:
    if action:  # a POST at an absent alert or another force's
        await refusal(request, action, "not_found")
    return render(request, "message.html", 404, title="Alert not found",
                  body="There is no such alert for your force. Go back to the alerts list.")


def page(request: web.Request, template: str, shown_alert: dict, status: int = 200, **values: Any) -> web.Response:
    values.setdefault("errors", {})
    return render(request, template, status, title=values.pop("title"), alert=shown_alert,
                  outcomes=shown.OUTCOME_LABELS, error_summary=bool(values["errors"]), **values)


@control_room
async def confirm_acknowledge(request: web.Request) -> web.StreamResponse:
    alert, a = await alert_of(request)
    if alert is None:
        return await missing(request)
    return page(request, "acknowledge.html", a, title="Acknowledge this alert?")


@control_room
async def acknowledge(request: web.Request) -> web.StreamResponse:
    alert, _ = await alert_of(request)  # the form was checked by @control_room
    person = person_of(request)
    if alert is None or person is None:
        return await missing(request, "alert.acknowledge")
    rt = request.app[RUNTIME]
    async with rt.engine.begin() as conn:
        acknowledged = alert.status == "open"
        await handlers.acknowledge_alert(conn, alert.alert_id, person.id, request.app[CONTEXT].clock(), person=person)
    if acknowledged:
        metrics.ALERTS_ACKNOWLEDGED.labels(via="console").inc()
        rt.relay.notify()
    raise web.HTTPSeeOther(f"/console?done=acknowledged&alert={alert.alert_id}")


@control_room
async def outcome_form(request: web.Request) -> web.StreamResponse:
    alert, a = await alert_of(request)
    if alert is None:
        return await missing(request)
    return page(request, "outcome.html", a, title="Record what the control room did", recorded=alert.outcome_action)


@control_room
async def record_outcome(request: web.Request) -> web.StreamResponse:
    form = await form_of(request)  # checked by @control_room
    alert, a = await alert_of(request)
    person = person_of(request)
    if alert is None or person is None:
        return await missing(request, "alert.outcome")
    action, notes = str(form.get("action", "")), str(form.get("notes", "")).strip()
    with sensitive_scope([notes] if notes else []):  # the notes reach no log line, and are never echoed
        errors = {**({"action": "Select what the control room did"} if action not in shown.OUTCOME_LABELS else {}),
                  **({"notes": f"Notes must be {NOTES_MAX:,} characters or fewer"} if len(notes) > NOTES_MAX else {})}
        if errors:
            return page(request, "outcome.html", a, 400, title="Record what the control room did",
                         errors=errors, chosen=action, recorded=alert.outcome_action, notes_dropped=bool(notes))
        rt, ctx = request.app[RUNTIME], request.app[CONTEXT]
        try:
            async with rt.engine.begin() as conn:
                _, new, acknowledged = await handlers.record_outcome(
                    conn, ctx, alert.alert_id, action, notes or None, person.id, ctx.clock(), person=person)
        except OutcomeRefused as err:
            await refusal(request, "alert.outcome", err.reason, alert.reference)
            return page(request, "outcome.html", a, 409, title="Record what the control room did",
                         errors={"action": "A different outcome is already recorded for this alert"},
                         chosen=action, recorded=alert.outcome_action, notes_dropped=bool(notes))
    if acknowledged:
        metrics.ALERTS_ACKNOWLEDGED.labels(via="outcome").inc()
    if new:
        rt.relay.notify()
    raise web.HTTPSeeOther(f"/console?done=recorded&alert={alert.alert_id}")


def add_routes(app: web.Application) -> None:
    app.router.add_get(ALERT + "/acknowledge", confirm_acknowledge)
    app.router.add_post(ALERT + "/acknowledgement", acknowledge)
    app.router.add_get(ALERT + "/outcome", outcome_form)
    app.router.add_post(ALERT + "/outcome", record_outcome)
