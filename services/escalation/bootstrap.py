"""Wires the escalation service: settings in, an aiohttp application out.

`create_app(settings, clock=utcnow)` builds the app; nothing connects until it starts.
Start-up (cleanup contexts, in order): the shared runtime (database migrated, broker,
publisher, outbox relay), then escalation's own parts: the timer service (fires
missed timers at once) and the consumer of `escalation.events`. Their stop hooks
go on the runtime, so on SIGTERM the consumer stops first, then the timers, then the
runtime flushes the outbox and closes.
"""
from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

from aiohttp import web

from services.escalation.adapters import tables
from services.escalation.context import Context
from services.escalation.entrypoints import console, http, ops
from services.escalation.entrypoints.amqp import make_consumer
from services.escalation.entrypoints.timers import TimerService
from shared.accesscodes import MIN_LENGTH, generated
from shared.checkpointer import checkpointer_ctx
from shared.clock import Clock, utcnow
from shared.config import ConfigError, Settings
from shared.http import base_app
from shared.runtime import RUNTIME, runtime_ctx

SERVICE = "escalation"
TIMERS = web.AppKey("escalation_timers", TimerService)
TOKENS_ENV = "SAFEGUARD_CONSOLE_TOKENS"


def console_tokens(settings: Settings, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Console access codes per force: `SAFEGUARD_CONSOLE_TOKENS="force=code;..."`, else one
    generated file per force under `<data dir>/console/<force>.token` (mode 0600)."""
    env = os.environ if env is None else env
    forces = [f.slug for f in settings.file.forces]
    if env.get(TOKENS_ENV):
        tokens = {}
        for item in env[TOKENS_ENV].split(";"):
            force, sep, code = item.strip().partition("=")
            if not sep or force not in forces or len(code) < MIN_LENGTH:
                raise ConfigError(f"environment: {TOKENS_ENV}: expected 'force=code;...' with known forces "
                                  "and codes of at least 16 characters")
            tokens[force] = code
        return tokens
    return {force: generated(Path(settings.data_dir) / "console" / f"{force}.token") for force in forces}


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


def create_app(settings: Settings, clock: Clock = utcnow, *, tokens: Mapping[str, str] | None = None,
               timer_options: Mapping | None = None) -> web.Application:
    app = base_app(SERVICE, client_max_size=settings.file.system.max_body_bytes)
    ctx = Context(settings, clock)
    app[http.CONTEXT] = ctx
    http.add_routes(app)
    console.add_routes(app, dict(tokens) if tokens is not None else console_tokens(settings))
    ops.add_routes(app, ops.ops_token(settings))
    app.cleanup_ctx.append(runtime_ctx(SERVICE, settings, tables.outbox))
    app.cleanup_ctx.append(escalation_ctx(ctx, timer_options))
    app.cleanup_ctx.append(checkpointer_ctx(tables.audit, tables.audit_checkpoints, clock=ctx.clock))
    return app
