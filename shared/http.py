"""HTTP helpers shared by the three services (aiohttp).

- `problem(...)`: an RFC 9457 `application/problem+json` response with a stable type.
- `problem_middleware`: turns aiohttp's own errors (404, 405, 413, ...) and any
  unexpected exception into problem documents that never echo the request.
- `trace_middleware`: continues the caller's W3C `traceparent` (shared/tracing.py).
- `add_health_routes(app, checks)`: `/healthz` (alive) and `/readyz` (each check, e.g.
  broker and database, must pass).
- `metrics_app(token)` / `metrics_ctx(listener)`: `/metrics` (Prometheus text format) on a
  listener of its own, never on the public port (issue 18 #14); with a token, only for
  `Authorization: Bearer <token>`.
"""
from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from shared import tracing
from shared.config_env import MetricsListener
from shared.logging import bound_contextvars, get_logger

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "/problems/"
log = get_logger(__name__)

ReadinessCheck = Callable[[], Awaitable[bool]]
READINESS_CHECKS = web.AppKey("readiness_checks", dict)
METRICS_TOKEN = web.AppKey("metrics_token", str)
SERVICE_NAME = web.AppKey("service_name", str)

_TITLES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthenticated", "Missing or invalid request signature"),
    403: ("forbidden", "Not allowed for this client"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    410: ("gone", "Gone"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-failed", "The request body failed validation"),
    429: ("rate-limited", "Too many requests"),
    500: ("internal-error", "Internal error"),
    503: ("unavailable", "Service unavailable"),
}


def problem(
    status: int,
    slug: str | None = None,
    title: str | None = None,
    detail: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> web.Response:
    """An RFC 9457 problem document. `detail` and extensions must hold no content."""
    default_slug, default_title = _TITLES.get(status, ("error", "Error"))
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (slug or default_slug),
        "title": title or default_title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    body.update(extensions)
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


@web.middleware
async def trace_middleware(request: web.Request, handler):
    """Continue the caller's W3C trace (or start one) and bind it to this request's logs."""
    traceparent = tracing.child_of(request.headers.get("traceparent"))
    tracing.set_current(traceparent)
    with bound_contextvars(traceparent=traceparent):
        return await handler(request)


@web.middleware
async def problem_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return problem(exc.status, headers=headers)
    except Exception:
        # Never echo the request or the exception text: it may carry content.
        log.exception("unhandled_error", path=request.path, method=request.method)
        return problem(500)


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, ReadinessCheck] = request.app[READINESS_CHECKS]
    results = {}
    for name, check in checks.items():
        try:
            results[name] = bool(await check())
        except Exception:
            results[name] = False
    ok = all(results.values())
    return web.json_response({"status": "ok" if ok else "unavailable", "checks": results}, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    token = request.app.get(METRICS_TOKEN)
    if token is not None:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, f"Bearer {token}".encode()):
            return problem(401, detail="metrics need Authorization: Bearer <token>",
                           headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    resp = web.Response(body=generate_latest(REGISTRY))
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


def metrics_app(token: str | None = None) -> web.Application:
    """The metrics listener's application: `/metrics` and nothing else."""
    app = web.Application(middlewares=[problem_middleware])
    if token is not None:
        app[METRICS_TOKEN] = token
    app.router.add_get("/metrics", metrics)
    return app


def metrics_ctx(listener: MetricsListener):
    """A `cleanup_ctx` that serves `metrics_app` on `listener` for as long as the service runs."""
    async def ctx(_app: web.Application) -> AsyncIterator[None]:
        runner = web.AppRunner(metrics_app(listener.token), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, listener.host, listener.port).start()
            log.info("metrics_listening", host=listener.host, port=listener.port,
                     token_required=listener.token is not None)
            yield
        finally:
            await runner.cleanup()

    return ctx


def add_health_routes(app: web.Application, service: str, checks: Mapping[str, ReadinessCheck] | None = None) -> None:
    app[SERVICE_NAME] = service
    app[READINESS_CHECKS] = dict(checks or {})
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)


def base_app(service: str, *, client_max_size: int = 256 * 1024) -> web.Application:
    """A new aiohttp application with the problem middleware and health routes."""
    app = web.Application(middlewares=[trace_middleware, problem_middleware], client_max_size=client_max_size)
    add_health_routes(app, service)
    return app
