"""The performance report over HTTP: stable URLs for people and machines.

- `GET /v1/report?from=&to=` — the report JSON; a signed request (RFC 9421) with the same
  roles as `/v1/stats`: `ops` sees every organisation, a staff client only its own.
- `GET /report?from=&to=` — the page (GOV.UK tables + inline SVG charts) and
  `GET /report/report.csv` — for a signed-in person (OpenID Connect, shared/web): `ops` sees
  every organisation, any staff role only its own (as `performance_scope`). Every read is
  audited with the person.
"""
from __future__ import annotations

from datetime import date
from typing import Any

from aiohttp import web

from services.intake.adapters import queries
from services.intake.context import Context
from services.intake.domain.access import performance_scope
from services.intake.domain.errors import IntakeError
from services.intake.domain.labels import REPORT_ROLES
from services.intake.domain.parsing import period
from services.intake.entrypoints import export
from services.intake.entrypoints.http import CONTEXT, guarded, problem_response, today
from services.intake.entrypoints.pages import common, me
from services.intake.entrypoints.svgchart import TABLE_TITLES, report_charts
from shared.config import Client
from shared.web.pages import render, signed_in


def _range(request: web.Request) -> tuple[date, date]:
    return period(request.query, today(request.app[CONTEXT]), days_back=364)


@guarded("report.read")
async def report_json(request: web.Request, ctx: Context, client: Client, _b: bytes, _c: str) -> web.Response:
    start, end = _range(request)
    org = performance_scope(ctx.settings.client(client.id))
    return web.json_response(await queries.report(ctx, client.id, start, end, org=org))


async def _person_report(request: web.Request) -> dict[str, Any]:
    ctx, person = me(request)
    start, end = _range(request)
    org = performance_scope(person)  # type: ignore[arg-type]  # a Person has role and organisation
    return await queries.report(ctx, person.id, start, end, org=org, via="page", person=person)


@signed_in(REPORT_ROLES)
async def report_page(request: web.Request) -> web.Response:
    ctx, _person = me(request)
    try:
        report = await _person_report(request)
    except IntakeError as err:
        return render(request, "message.html", err.status, title="Check the dates",
                      body="Enter the dates as YYYY-MM-DD, the first on or before the second.")
    return render(request, "report.html", title="Performance data", report=report, charts=report_charts(report),
                  titles=TABLE_TITLES, measures=export.MEASURE_TITLES, hidden=export.SUPPRESSED, **common(ctx))


@signed_in(REPORT_ROLES)
async def report_csv(request: web.Request) -> web.Response:
    try:
        report = await _person_report(request)
    except IntakeError as err:
        return problem_response(err)
    name = f"safeguard-report-{report['from']}-{report['to']}.csv"
    return web.Response(text=export.to_csv(report), content_type="text/csv", headers={
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
        "Content-Disposition": f'attachment; filename="{name}"'})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/report", report_json)
    app.router.add_get("/report", report_page)
    app.router.add_get("/report/report.csv", report_csv)
