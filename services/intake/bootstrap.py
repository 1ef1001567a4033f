"""Wires the intake service: settings in, an aiohttp application out.

Start-up order (aiohttp cleanup contexts): the runtime (database migrated, broker,
publisher, outbox relay), then intake's `Context`, then the pages' sign-in and sessions
(shared/web, on the context's clock), then the submissions consumer and the audit
checkpointer. On SIGTERM the runtime's stop hooks stop
consuming first, then the relay flushes the outbox and the connections close.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from services.intake import rejections
from services.intake.adapters import repository, tables
from services.intake.auth import Authenticator, RateLimiter
from services.intake.context import Context
from services.intake.domain.labels import PAGE_ROLES, REPORT_ROLES
from services.intake.entrypoints import actions, amqp, apidocs, http, openapi, pages, report, welfare
from services.intake.ratelimit import SharedRateLimiter
from shared import checkpointer
from shared.config import Settings
from shared.http import base_app
from shared.logging import get_logger
from shared.runtime import RUNTIME, runtime_ctx
from shared.web import signin
from shared.web.pages import WEB, WebConfig

SERVICE = "intake"
TEMPLATES = Path(__file__).parent / "entrypoints" / "templates"
log = get_logger(__name__)


def create_app(settings: Settings) -> web.Application:
    app = base_app(SERVICE, client_max_size=settings.file.system.max_body_bytes)
    app.cleanup_ctx.append(runtime_ctx(SERVICE, settings, tables.outbox))
    app.cleanup_ctx.append(_context_ctx(settings))
    signin.setup(app, WebConfig(
        service=SERVICE, settings=settings, base_url=settings.file.system.public_base_url, home="/referrals",
        service_name="Prevent referrals", templates=TEMPLATES, sessions=tables.web_sessions, audit=tables.audit,
        clock=lambda: app[http.CONTEXT].clock(),  # the context's clock, which a test may move
        navigation=(("Referrals", "/referrals", PAGE_ROLES), ("Performance report", "/report", REPORT_ROLES))))
    app.cleanup_ctx.append(_consumer_ctx)
    app.cleanup_ctx.append(rejections.flusher_ctx(lambda a: a[http.CONTEXT].rejections, lambda a: a[RUNTIME].engine,
                                                  lambda a: a[http.CONTEXT].clock()))
    app.cleanup_ctx.append(checkpointer.checkpointer_ctx(tables.audit, tables.audit_checkpoints, also=_purge_expired))
    http.add_routes(app)
    openapi.add_route(app)
    apidocs.add_routes(app)
    pages.add_routes(app)
    actions.add_routes(app)
    report.add_routes(app)
    welfare.add_routes(app)
    return app


def _context_ctx(settings: Settings):
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        rt = app[RUNTIME]
        app[http.CONTEXT] = Context(settings=settings, engine=rt.engine, notify=rt.relay.notify,
                                    auth=Authenticator(settings, rt.engine),
                                    limiter=SharedRateLimiter(rt.engine, settings.file.system.rate_limit_per_minute),
                                    address_limiter=RateLimiter(settings.file.system.rate_limit_per_address_per_minute),
                                    rejections=rejections.RejectionTally(lambda c: settings.client(c) is not None))
        yield
    return ctx


async def _consumer_ctx(app: web.Application) -> AsyncIterator[None]:
    rt = app[RUNTIME]
    consumer = amqp.submissions_consumer(app[http.CONTEXT], rt.connection, rt.publisher)
    await consumer.start()
    stopped = asyncio.Event()

    async def stop() -> None:
        if not stopped.is_set():
            stopped.set()
            await consumer.stop()

    rt.stop_hooks.append(stop)
    yield
    await stop()


async def checkpoint_now(app: web.Application) -> int | None:
    return await checkpointer.checkpoint_now(app, tables.audit, tables.audit_checkpoints, app[http.CONTEXT].clock)


async def _purge_expired(app: web.Application) -> None:
    """On the checkpointer's beat: expired request nonces, idle clients' rate-limit counts and
    expired page sessions (a welfare grant goes with its session)."""
    ctx = app[http.CONTEXT]
    now = ctx.clock()
    await repository.purge_nonces(app[RUNTIME].engine, now)
    if ctx.limiter is not None:
        await ctx.limiter.purge()
    await app[WEB].store.purge(now)
