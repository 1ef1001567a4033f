"""Thin aiohttp views: read the body (size limit), authenticate (RFC 9421), rate-limit,
call a handler, and turn an `IntakeError` into an RFC 9457 problem document after
auditing the rejection. Views never log or echo request values."""
from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from services.intake import handlers, metrics
from services.intake.adapters import listing, queries
from services.intake.adapters.effects import audit_rejection
from services.intake.context import Context
from services.intake.domain.actions import ACTIONS
from services.intake.domain.commands import (
    Action, ConcernBody, EmptyBody, LifecycleCommand, RaiseConcern, SubmitReferral,
)
from services.intake.domain.errors import (
    Forbidden, IntakeError, NotFound, RateLimited, TooLarge, UnsupportedMediaType,
)
from services.intake.domain.lifecycle import is_reference
from services.intake.domain.parsing import parse_json, period, validate
from shared.clock import LONDON
from shared.config import Client
from shared.http import PROBLEM_CONTENT_TYPE
from shared.logging import bound_contextvars, get_logger, sensitive_scope
from shared.web.identity import ON_BEHALF_OF, Person, on_behalf_of

CONTEXT = web.AppKey("intake_context", Context)
PERSON = web.RequestKey("intake_on_behalf_of", Person)
log = get_logger(__name__)
_CORRELATION = re.compile(r"[A-Za-z0-9._-]{1,64}")
View = Callable[[web.Request, Context, Client, bytes, str], Awaitable[web.StreamResponse]]
SEALED_FIELDS = {"rationale", "notes"}  # a lifecycle body's note: sealed, never in `details`


def problem_response(err: IntakeError) -> web.Response:
    return web.Response(status=err.status, text=json.dumps(err.problem()), content_type=PROBLEM_CONTENT_TYPE,
                        headers=err.headers or None)


async def _read_body(request: web.Request, ctx: Context) -> bytes:
    limit = ctx.settings.file.system.max_body_bytes
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
            ctx = request.app[CONTEXT]
            assert ctx.auth is not None and ctx.limiter is not None  # bootstrap wires both
            wanted = request.headers.get("X-Correlation-Id", "")
            corr = wanted if _CORRELATION.fullmatch(wanted) else str(uuid.uuid4())
            given = request.match_info.get("reference")
            ref = given if given and is_reference(given) else None
            with bound_contextvars(correlation_id=corr, reference=ref):
                actor: str | None = None
                try:
                    _limit_address(ctx, request.remote)
                    body = await _read_body(request, ctx)
                    client, over_limit = await ctx.auth.verify_http(  # the nonce claimed and the request
                        method=request.method, path=request.rel_url.raw_path,  # counted: one transaction
                        query=request.rel_url.raw_query_string, headers=request.headers, body=body or None,
                        limiter=ctx.limiter)  # the per-client limit, shared by the replicas
                    actor = client.id
                    if over_limit is not None:
                        raise over_limit
                    _named_person(request, client)
                    response = await view(request, ctx, client, body, corr)
                except IntakeError as err:
                    log.info("request_refused", action=action, status=err.status, reason=err.reason,
                             client_id=actor, claimed_keyid=None if actor else err.actor)
                    if actor is None:  # before authentication: counted, audited once a minute
                        metrics.REJECTED.labels(action=action, reason=err.reason, via="http").inc()
                        ctx.rejections.add(action=action, reason=err.reason, claimed=err.actor, via="http")
                    else:
                        await audit_rejection(ctx, actor=actor, action=action, reference=ref, err=err, via="http")
                    response = problem_response(err)
                response.headers["X-Correlation-Id"] = corr
                return response
        return handler
    return wrap


def _limit_address(ctx: Context, address: str | None) -> None:
    """The limit per client address, before any signature work (refusals name no client)."""
    if ctx.address_limiter is None:
        return
    try:
        ctx.address_limiter.take(address or "unknown")
    except RateLimited as err:
        err.actor = None
        raise


def _named_person(request: web.Request, client: Client) -> None:
    """A staff system may name the person it acts for (signed `On-Behalf-Of`, DESIGN §3.7)."""
    value = request.headers.get(ON_BEHALF_OF)
    if value is None:
        return
    try:
        request[PERSON] = on_behalf_of(value, client.role, client.organisation, client.id)
    except ValueError as exc:
        raise IntakeError(str(exc), reason="bad_on_behalf_of") from None


def person_of(request: web.Request) -> Person | None:
    return request.get(PERSON)


def _json_body(request: web.Request, body: bytes, *, optional: bool = False) -> Any:
    if optional and not body:
        return {}
    if request.content_type != "application/json":
        raise UnsupportedMediaType("Send application/json")
    return parse_json(body)


def _reference(request: web.Request) -> str:
    ref = request.match_info["reference"]
    if not is_reference(ref):
        raise NotFound("No such referral")
    return ref


def today(ctx: Context) -> date:
    """Today in London, by the context's clock (the default end of a reporting period)."""
    return ctx.clock().astimezone(LONDON).date()


@guarded("referral.submit")
async def submit(request: web.Request, ctx: Context, client: Client, body: bytes, corr: str) -> web.Response:
    if client.role != "referrer":
        raise Forbidden("Only referrer clients may submit referrals", reason="wrong_role")
    if request.content_type != "application/json":
        raise UnsupportedMediaType("Send application/json")
    done = await handlers.submit_referral(SubmitReferral(
        client.id, body, request.headers.get("Idempotency-Key"), corr, "http"), ctx)
    return web.json_response(done.reply, status=202)


def lifecycle_view(action: Action, model: type[BaseModel] | None):
    @guarded(f"referral.{action}")
    async def view(request: web.Request, ctx: Context, client: Client, body: bytes, corr: str) -> web.Response:
        optional = model is None or not any(f.is_required() for f in model.model_fields.values())
        data = _json_body(request, body, optional=optional)
        parsed = validate(model or EmptyBody, data)
        note = getattr(parsed, "rationale", None) or getattr(parsed, "notes", None)
        cmd = LifecycleCommand(
            action, client.id, _reference(request), pathway=getattr(parsed, "pathway", None),
            outcome=getattr(parsed, "outcome", None), sensitive_note=note,
            family_contact=getattr(parsed, "family_contact", "lift"), correlation_id=corr,
            details=parsed.model_dump(exclude=SEALED_FIELDS), person=person_of(request))
        with sensitive_scope([note] if note else []):  # the note reaches no log line
            return web.json_response(await handlers.act(cmd, ctx))
    return view


@guarded("referral.concern")
async def raise_concern(request: web.Request, ctx: Context, client: Client, body: bytes, corr: str) -> web.Response:
    """A new out-of-hours concern for the force's control room: 201 with its id (DESIGN §3.3)."""
    parsed = validate(ConcernBody, _json_body(request, body))
    cmd = RaiseConcern(client.id, _reference(request), body, request.headers.get("Idempotency-Key"), corr,
                       person=person_of(request))
    return web.json_response(await handlers.raise_concern(cmd, parsed, ctx), status=201)


@guarded("referral.read")
async def get_referral(request: web.Request, ctx: Context, client: Client, _b: bytes, _c: str) -> web.Response:
    return web.json_response(await queries.get_referral(ctx, client.id, _reference(request), person_of(request)))


@guarded("referral.list")
async def list_referrals(request: web.Request, ctx: Context, client: Client, _b: bytes, _c: str) -> web.Response:
    return web.json_response(await listing.list_referrals(ctx, client.id, request.query.items(), person_of(request)))


@guarded("referral.sealed_read")
async def get_sealed(request: web.Request, ctx: Context, client: Client, _b: bytes, _c: str) -> web.Response:
    return web.json_response(await queries.get_sealed(ctx, client.id, _reference(request), person_of(request)))


@guarded("stats.read")
async def get_stats(request: web.Request, ctx: Context, client: Client, _b: bytes, _c: str) -> web.Response:
    start, end = period(request.query, today(ctx), days_back=27)
    return web.json_response(await queries.stats(ctx, client.id, start, end))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/referrals", submit)
    app.router.add_get("/v1/referrals", list_referrals)
    app.router.add_get("/v1/referrals/{reference}", get_referral)
    app.router.add_get("/v1/referrals/{reference}/sealed", get_sealed)
    for action, spec in ACTIONS.items():
        app.router.add_post(f"/v1/referrals/{{reference}}/{action}", lifecycle_view(action, spec.body))
    app.router.add_post("/v1/referrals/{reference}/concerns", raise_concern)
    app.router.add_get("/v1/stats", get_stats)
