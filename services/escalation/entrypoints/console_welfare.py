"""The console's audited "open for a welfare check" step (DESIGN §3.7): `GET
/console/alerts/{id}/welfare-check` warns that opening is recorded with the person's name;
the `POST` (CSRF, same origin) audits `alert.welfare_check_opened` naming the person, then
links the operator on to intake.

Escalation holds no referral content: the child's identity and address are sealed in intake
to the council's and the force's keys. So the page links to intake's own welfare check,
`{public_base_url}/referrals/{reference}/welfare-check?alert={id}` (signing the operator in
there), which asks the reason, audits the opening again in intake and opens the child's name,
date of birth and address in the browser with the force key. Nothing about the child passes
through escalation.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web
from sqlalchemy import Row

from services.escalation.adapters.effects import audit
from services.escalation.entrypoints.console_actions import ALERT, alert_of, page, control_room, missing
from services.escalation.entrypoints.http import CONTEXT
from shared.logging import get_logger
from shared.runtime import RUNTIME
from shared.web.pages import person_of

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
    alert, a = await alert_of(request)  # the form was checked by @control_room
    person = person_of(request)
    if alert is None or person is None:
        return await missing(request, "alert.welfare_check_opened")
    now = request.app[CONTEXT].clock()
    async with request.app[RUNTIME].engine.begin() as conn:
        await audit(conn, "alert.welfare_check_opened", alert.reference, now, actor=person.id,
                    detail={"alert_id": alert.alert_id, "kind": alert.kind, "person": person.as_dict()})
    log.info("welfare_check_opened", alert_id=alert.alert_id, force=alert.force)
    return page(request, "welfare.html", a, title=TITLE, opened=True, intake_url=intake_url(request, alert))


def intake_url(request: web.Request, alert: Row[Any]) -> str:
    """intake's welfare check for the alert's referral (the alert id goes into intake's audit)."""
    base = request.app[CONTEXT].settings.file.system.public_base_url.rstrip("/")
    return f"{base}/referrals/{quote(alert.reference)}/welfare-check?alert={quote(alert.alert_id)}"


def add_routes(app: web.Application) -> None:
    app.router.add_get(ALERT + "/welfare-check", welfare_warning)
    app.router.add_post(ALERT + "/welfare-check", open_for_welfare_check)
