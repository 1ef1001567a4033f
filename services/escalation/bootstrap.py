"""Wires the escalation service: settings in, an aiohttp application out.

`create_app(settings, clock=utcnow)` builds the app; nothing connects until it starts.
Start-up (cleanup contexts, in order): the shared runtime (database migrated, broker,
publisher, outbox relay), then escalation's own parts: the timer service (fires
missed timers at once) and the consumer of `escalation.events`. Their stop hooks
go on the runtime, so on SIGTERM the consumer stops first, then the timers, then the
runtime flushes the outbox and closes. The pages (`/console`, `/ops`) sign people in with
`shared.web` (OpenID Connect, server-side sessions; DESIGN §3.7).
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

from aiohttp import web

from services.escalation.adapters import tables
from services.escalation.context import Context
from services.escalation.entrypoints import console, console_actions, console_welfare, http, ops
from services.escalation.entrypoints.amqp import make_consumer
from services.escalation.entrypoints.timers import TimerService
from shared.checkpointer import checkpointer_ctx
from shared.storage.nonces import purge_nonces
from shared.clock import Clock, utcnow
from shared.config import Settings
from shared.http import base_app
from shared.runtime import RUNTIME, runtime_ctx
from shared.web import signin
from shared.web.pages import WEB, WebConfig

SERVICE = "escalation"
TIMERS = web.AppKey("escalation_timers", TimerService)
TEMPLATES = Path(__file__).parent / "entrypoints" / "templates"
STATIC = Path(__file__).parent / "entrypoints" / "static"


def escalation_ctx(ctx: Context,
                   timer_options: Mapping | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def run(app: web.Application) -> AsyncIterator[None]:
        rt = app[RUNTIME]
        timers = TimerService(rt.engine, ctx, on_commit=rt.relay.notify, **dict(timer_options or {}))
        app[TIMERS] = timers
        consumer = make_consumer(rt, ctx, timers)
        rt.stop_hooks.append(timers.stop)  # hooks run in reverse: the consumer stops first
        rt.stop_hooks.append(consumer.stop)
        timers.start()
        await consumer.start()
        yield

    return run


def web_config(settings: Settings, ctx: Context) -> WebConfig:
    """The pages' sign-in and layout (DESIGN §3.7): control room and ops people only."""
    return WebConfig(
        service=SERVICE, settings=settings, base_url=settings.file.system.console_base_url, home="/console",
        service_name="Control room", templates=TEMPLATES, sessions=tables.web_sessions, audit=tables.audit,
        clock=lambda: ctx.clock(), navigation=(("Alerts", "/console", {"control_room"}), ("Operations", "/ops", {"ops"})))


def organisation_names(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    """The identity bar names the person's organisation (a force's or a council's name)."""
    def name(code: str) -> str:
        org = settings.force(code) or settings.local_authority(code)
        return org.name if org else code

    async def run(app: web.Application) -> AsyncIterator[None]:
        app[WEB].templates.globals["organisation_name"] = name
        yield

    return run


def create_app(settings: Settings, clock: Clock = utcnow, *, timer_options: Mapping | None = None) -> web.Application:
    app = base_app(SERVICE, client_max_size=settings.file.system.max_body_bytes)
    ctx = Context(settings, clock)
    app[http.CONTEXT] = ctx
    http.add_routes(app)
    for pages in (console, console_actions, console_welfare, ops):
        pages.add_routes(app)
    app.router.add_static("/static", STATIC, append_version=False)
    app.cleanup_ctx.append(runtime_ctx(SERVICE, settings, tables.outbox))
    signin.setup(app, web_config(settings, ctx))
    app.cleanup_ctx.append(organisation_names(settings))
    app.cleanup_ctx.append(escalation_ctx(ctx, timer_options))
    app.cleanup_ctx.append(checkpointer_ctx(tables.audit, tables.audit_checkpoints, clock=ctx.clock,
                                            also=lambda a: _purge_expired(a, ctx)))
    return app


async def _purge_expired(app: web.Application, ctx: Context) -> None:
    """On the checkpointer's beat: expired request nonces and expired page sessions."""
    now = ctx.clock()
    await purge_nonces(app[RUNTIME].engine, tables.nonces, now)
    await app[WEB].store.purge(now)
