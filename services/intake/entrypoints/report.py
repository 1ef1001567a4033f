"""The performance report over HTTP: stable URLs for people and machines.

- `GET /v1/report?from=&to=` — the report JSON; a signed request (RFC 9421) with the same
  roles as `/v1/stats`: `ops` sees every organisation, a staff client only its own.
- `GET /report?from=&to=` — the page (tables + inline SVG charts, no JavaScript) and
  `GET /report/report.csv` — for a signed-in browser, with the all-organisations (ops) view.
  Browsers cannot sign RFC 9421 requests, so, like escalation's console, staff sign in
  once with the ops report access code (`SAFEGUARD_REPORT_CODE`, else the generated file
  `<data dir>/report/ops.token`, mode 0600); the cookie (HttpOnly, SameSite=Strict, path
  `/report`) holds an HMAC of the code, never the code. Every read is audited.
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from aiohttp import web

from services.intake.adapters import queries
from services.intake.context import Context
from services.intake.domain.access import performance_scope
from services.intake.domain.errors import Forbidden, IntakeError
from services.intake.domain.parsing import period
from services.intake.entrypoints import export
from services.intake.entrypoints.http import CONTEXT, guarded, problem_response, today
from services.intake.entrypoints.svgchart import TABLE_TITLES, report_charts
from shared import accesscodes, pages
from shared.config import Client, Settings
from shared.http import problem

CODE_ENV = "SAFEGUARD_REPORT_CODE"
COOKIE = "sg_report"
ACTOR = "report-page"
REPORT_CODE = web.AppKey("report_code", str)
HERE = Path(__file__).parent
_env = pages.templates(HERE / "templates")
HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                                      "frame-ancestors 'none'; base-uri 'none'",
           "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}


def access_code(settings: Settings, env: Mapping[str, str] | None = None) -> str:
    """The ops report access code: `SAFEGUARD_REPORT_CODE`, else a generated file (0600)."""
    return accesscodes.access_code(settings, os.environ if env is None else env, CODE_ENV, "report/ops.token")


def _session(code: str) -> str:
    return hmac.new(code.encode(), b"safeguard-report-session-v1", hashlib.sha256).hexdigest()


def _signed_in(request: web.Request) -> bool:
    return hmac.compare_digest(request.cookies.get(COOKIE, "").encode(), _session(request.app[REPORT_CODE]).encode())


def _range(request: web.Request) -> tuple[date, date]:
    return period(request.query, today(request.app[CONTEXT]), days_back=364)


def _page(template: str, status: int = 200, **values) -> web.Response:
    html = _env.get_template(template).render(**values)
    return web.Response(text=html, content_type="text/html", status=status, headers=HEADERS)


@guarded("report.read")
async def report_json(request: web.Request, ctx: Context, client: Client, _b: bytes, _c: str) -> web.Response:
    start, end = _range(request)
    org = performance_scope(ctx.settings.client(client.id))
    return web.json_response(await queries.report(ctx, client.id, start, end, org=org))


async def _browser_report(request: web.Request) -> dict[str, Any]:
    start, end = _range(request)
    return await queries.report(request.app[CONTEXT], ACTOR, start, end, via="page")


async def report_page(request: web.Request) -> web.Response:
    if not _signed_in(request):
        return _page("signin.html", 401, error=None, query=request.query_string)
    try:
        report = await _browser_report(request)
    except IntakeError as err:
        return problem_response(err)
    return _page("report.html", report=report, charts=report_charts(report), titles=TABLE_TITLES,
                 measures=export.MEASURE_TITLES, hidden=export.SUPPRESSED, query=request.query_string)


async def report_csv(request: web.Request) -> web.Response:
    if not _signed_in(request):
        return problem(401, detail="sign in to the report first")
    try:
        report = await _browser_report(request)
    except IntakeError as err:
        return problem_response(err)
    name = f"safeguard-report-{report['from']}-{report['to']}.csv"
    return web.Response(text=export.to_csv(report), content_type="text/csv", headers={
        **HEADERS, "Content-Disposition": f'attachment; filename="{name}"'})


def _dates_only(query: str) -> str:
    """The `from`/`to` of a query string, if they are dates (the redirect carries nothing else)."""
    kept = {}
    for name, values in parse_qs(query).items():
        with contextlib.suppress(ValueError):
            if name in ("from", "to"):
                kept[name] = date.fromisoformat(values[0]).isoformat()
    return f"?{urlencode(kept)}" if kept else ""


def _same_origin(request: web.Request) -> bool:
    site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    return (site is None or site in ("same-origin", "none")) and (
        origin is None or origin == f"{request.scheme}://{request.host}")


async def sign_in(request: web.Request) -> web.Response:
    if not _same_origin(request):
        return problem_response(Forbidden("cross-site request refused", reason="cross_site"))
    form = await request.post()
    code, query = str(form.get("code", "")), str(form.get("query", ""))
    if not hmac.compare_digest(code.encode(), request.app[REPORT_CODE].encode()):
        return _page("signin.html", 401, error="The access code is not right.", query=query)
    response = web.Response(status=303, headers={"Location": "/report" + _dates_only(query),
                                                 **HEADERS})
    response.set_cookie(COOKIE, _session(request.app[REPORT_CODE]), httponly=True, samesite="Strict",
                        path="/report", secure=request.secure)
    return response


def add_routes(app: web.Application, settings: Settings, code: str | None = None) -> None:
    app[REPORT_CODE] = code or access_code(settings)
    app.router.add_get("/v1/report", report_json)
    app.router.add_get("/report", report_page)
    app.router.add_get("/report/report.csv", report_csv)
    app.router.add_post("/report/session", sign_in)
    app.router.add_get("/report/report.css",
                       pages.stylesheet(HERE / "templates" / "report.css", {"Cache-Control": "max-age=3600"}))
