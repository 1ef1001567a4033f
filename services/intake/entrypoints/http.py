"""Thin aiohttp views: read the body (size limit), authenticate (RFC 9421), rate-limit,
call a handler, and turn an `IntakeError` into an RFC 9457 problem document after
auditing the rejection. Views never log or echo request values."""
from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from services.intake import actions, handlers, queries
from services.intake.deps import Deps, audit_rejection
from services.intake.domain.errors import (
    Forbidden, IntakeError, NotFound, SchemaInvalid, TooLarge, UnsupportedMediaType,
)
from services.intake.domain.lifecycle import is_reference
from shared.config import Client
from shared.http import problem
from shared.logging import bound_contextvars, get_logger

DEPS = web.AppKey("intake_deps", Deps)
log = get_logger(__name__)
_CORRELATION = re.compile(r"[A-Za-z0-9._-]{1,64}")
View = Callable[[web.Request, Deps, Client, bytes, str], Awaitable[web.StreamResponse]]


def problem_doc(err: IntakeError) -> dict[str, Any]:
    """The problem document of `err` (the AMQP path replies with the same JSON)."""
    return json.loads(problem_response(err).text or "{}")


def problem_response(err: IntakeError) -> web.Response:
    return problem(err.status, detail=err.detail, headers=err.headers or None, reason=err.reason,
                   **err.extensions)


async def _read_body(request: web.Request, deps: Deps) -> bytes:
    limit = deps.settings.file.system.max_body_bytes
    if (request.content_length or 0) > limit:
        raise TooLarge(f"The body is over {limit} bytes")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise TooLarge(f"The body is over {limit} bytes") from None


def guarded(action: str) -> Callable[[View], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """Size limit → signature → rate limit → view; audit and render every refusal."""
    def wrap(view: View):
        async def handler(request: web.Request) -> web.StreamResponse:
            deps = request.app[DEPS]
            wanted = request.headers.get("X-Correlation-Id", "")
            corr = wanted if _CORRELATION.fullmatch(wanted) else str(uuid.uuid4())
            given = request.match_info.get("reference")
            ref = given if given and is_reference(given) else None
            with bound_contextvars(correlation_id=corr, reference=ref):
                actor: str | None = None
                try:
                    body = await _read_body(request, deps)
                    client = await deps.auth.verify_http(
                        method=request.method, path=request.rel_url.raw_path,
                        query=request.rel_url.raw_query_string, headers=request.headers, body=body or None)
                    actor = client.id
                    deps.limiter.take(client.id)
                    response = await view(request, deps, client, body, corr)
                except IntakeError as err:
                    log.info("request_refused", action=action, status=err.status, reason=err.reason,
                             client_id=actor or err.actor)
                    await audit_rejection(deps, actor=actor or err.actor, action=action, reference=ref,
                                          err=err, via="http")
                    response = problem_response(err)
                response.headers["X-Correlation-Id"] = corr
                return response
        return handler
    return wrap


def _json_body(request: web.Request, body: bytes, *, optional: bool = False) -> Any:
    if optional and not body:
        return {}
    if request.content_type != "application/json":
        raise UnsupportedMediaType("Send application/json")
    return handlers.parse_json(body)


def _reference(request: web.Request) -> str:
    ref = request.match_info["reference"]
    if not is_reference(ref):
        raise NotFound("No such referral")
    return ref


@guarded("referral.submit")
async def submit(request: web.Request, deps: Deps, client: Client, body: bytes, corr: str) -> web.Response:
    if client.role != "referrer":
        raise Forbidden("Only referrer clients may submit referrals", reason="wrong_role")
    if request.content_type != "application/json":
        raise UnsupportedMediaType("Send application/json")
    done = await handlers.submit_referral(handlers.SubmitReferral(
        client.id, body, request.headers.get("Idempotency-Key"), corr, "http"), deps)
    return web.json_response(done.reply, status=202)


def lifecycle_view(action: actions.Action, model: type | None):
    @guarded(f"referral.{action}")
    async def view(request: web.Request, deps: Deps, client: Client, body: bytes, corr: str) -> web.Response:
        data = _json_body(request, body, optional=model is None)
        parsed = handlers.validate(model or actions.EmptyBody, data)
        cmd = actions.LifecycleCommand(
            action, client.id, _reference(request), pathway=getattr(parsed, "pathway", None),
            outcome=getattr(parsed, "outcome", None),
            sensitive_note=getattr(parsed, "rationale", None) or getattr(parsed, "notes", None),
            correlation_id=corr)
        return web.json_response(await actions.act(cmd, deps))
    return view


@guarded("referral.read")
async def get_referral(request: web.Request, deps: Deps, client: Client, _b: bytes, _c: str) -> web.Response:
    return web.json_response(await queries.get_referral(deps, client.id, _reference(request)))


@guarded("referral.sealed_read")
async def get_sealed(request: web.Request, deps: Deps, client: Client, _b: bytes, _c: str) -> web.Response:
    return web.json_response(await queries.get_sealed(deps, client.id, _reference(request)))


def _date(request: web.Request, name: str, default: date) -> date:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = date.fromisoformat(text)
    except ValueError:
        raise SchemaInvalid([{"loc": name, "type": "date_parsing", "msg": "Expected a date YYYY-MM-DD"}]) from None
    if not 1900 <= value.year <= 9998:  # the range arithmetic must not overflow date (a 500, found by fuzzing)
        raise SchemaInvalid([{"loc": name, "type": "date_range", "msg": "Expected a year from 1900 to 9998"}])
    return value


@guarded("stats.read")
async def get_stats(request: web.Request, deps: Deps, client: Client, _b: bytes, _c: str) -> web.Response:
    today = deps.clock().astimezone(ZoneInfo("Europe/London")).date()
    end = _date(request, "to", today)
    start = _date(request, "from", end - timedelta(days=27))
    if start > end or (end - start).days > 3660:
        raise SchemaInvalid([{"loc": "from", "type": "range", "msg": "from must be on or before to"}])
    return web.json_response(await queries.stats(deps, client.id, start, end))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/referrals", submit)
    app.router.add_get("/v1/referrals/{reference}", get_referral)
    app.router.add_get("/v1/referrals/{reference}/sealed", get_sealed)
    app.router.add_post("/v1/referrals/{reference}/acknowledgement", lifecycle_view("acknowledgement", None))
    app.router.add_post("/v1/referrals/{reference}/decision", lifecycle_view("decision", actions.DecisionBody))
    app.router.add_post("/v1/referrals/{reference}/checks", lifecycle_view("checks", actions.ChecksBody))
    app.router.add_post("/v1/referrals/{reference}/feedback", lifecycle_view("feedback", None))
    app.router.add_post("/v1/referrals/{reference}/close", lifecycle_view("close", None))
    app.router.add_get("/v1/stats", get_stats)
