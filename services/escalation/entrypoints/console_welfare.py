"""The console's audited "open for a welfare check" step (DESIGN §3.7): `GET
/console/alerts/{id}/welfare-check` warns that opening is recorded with the person's name;
the `POST` (CSRF, same origin) audits `alert.welfare_check_opened` naming the person, then
shows what the console can give for the check.

Escalation holds no referral content: the child's identity and address are sealed in intake
(to the council's and the force's team keys), and intake's sealed read is open to social care
and CTP Prevent only. So the page says plainly that the details are not available here and
how to get them; no plaintext path exists and none is invented.
"""
from __future__ import annotations

from aiohttp import web

from services.escalation.adapters.effects import audit
from services.escalation.entrypoints.console_actions import ALERT, alert_of, page, control_room, missing
from services.escalation.entrypoints.http import CONTEXT
from shared.logging import get_logger
from shared.runtime import RUNTIME
from shared.web.pages import FormRefused, form_of, person_of, refused_form

log = get_logger(__name__)
TITLE = "Open for a welfare check"


@control_room
async def welfare_warning(request: web.Request) -> web.StreamResponse:
    alert, a = await alert_of(request)
    if alert is None:
        return await missing(request)
    return page(request, "welfare.html", a, title=TITLE, opened=False)


@control_room
async def open_for_welfare_check(request: web.Request) -> web.StreamResponse:
    try:
        await form_of(request)
    except FormRefused:
        return refused_form(request)
    alert, a = await alert_of(request)
    person = person_of(request)
    if alert is None or person is None:
        return await missing(request, "alert.welfare_check_opened")
    now = request.app[CONTEXT].clock()
    async with request.app[RUNTIME].engine.begin() as conn:
        await audit(conn, "alert.welfare_check_opened", alert.reference, now, actor=person.id,
                    detail={"alert_id": alert.alert_id, "kind": alert.kind, "person": person.as_dict()})
    log.info("welfare_check_opened", alert_id=alert.alert_id, force=alert.force)
    return page(request, "welfare.html", a, title=TITLE, opened=True)


def add_routes(app: web.Application) -> None:
    app.router.add_get(ALERT + "/welfare-check", welfare_warning)
    app.router.add_post(ALERT + "/welfare-check", open_for_welfare_check)
