"""Wires the intake service: settings in, an aiohttp application out.

Start-up order (aiohttp cleanup contexts): the runtime (database migrated, broker,
publisher, outbox relay), then intake's own dependencies, then the submissions
consumer and the audit checkpointer. On SIGTERM the runtime's stop hooks stop
consuming first, then the relay flushes the outbox and the connections close.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from services.intake.adapters import repository, tables
from services.intake.auth import Authenticator, RateLimiter
from services.intake.deps import Deps
from services.intake.entrypoints import amqp, http, openapi
from shared.audit import checkpoint
from shared.config import Settings
from shared.http import base_app
from shared.logging import get_logger
from shared.runtime import RUNTIME, runtime_ctx

SERVICE = "intake"
CHECKPOINT_EVERY_S = 300.0
log = get_logger(__name__)


def create_app(settings: Settings) -> web.Application:
    app = base_app(SERVICE, client_max_size=settings.file.system.max_body_bytes)
    app.cleanup_ctx.append(runtime_ctx(SERVICE, settings, tables.outbox))
    app.cleanup_ctx.append(_deps_ctx(settings))
    app.cleanup_ctx.append(_consumer_ctx)
    app.cleanup_ctx.append(_housekeeping_ctx)
    http.add_routes(app)
    openapi.add_route(app)
    return app


def _deps_ctx(settings: Settings):
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        rt = app[RUNTIME]
        app[http.DEPS] = Deps(settings=settings, engine=rt.engine, notify=rt.relay.notify,
                              auth=Authenticator(settings, rt.engine),
                              limiter=RateLimiter(settings.file.system.rate_limit_per_minute))
        yield
    return ctx


async def _consumer_ctx(app: web.Application) -> AsyncIterator[None]:
    rt = app[RUNTIME]
    consumer = amqp.submissions_consumer(app[http.DEPS], rt.connection, rt.publisher)
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
    rt, deps = app[RUNTIME], app[http.DEPS]
    async with rt.engine.begin() as conn:
        return await checkpoint(conn, tables.audit, tables.audit_checkpoints, signing_key=rt.signing_key,
                                signer=SERVICE, at=deps.clock())


async def _housekeeping_ctx(app: web.Application) -> AsyncIterator[None]:
    """Sign an audit checkpoint and purge expired nonces every few minutes, and at stop."""
    async def loop() -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_EVERY_S)
            try:
                await checkpoint_now(app)
                await repository.purge_nonces(app[RUNTIME].engine, app[http.DEPS].clock())
            except Exception as exc:
                log.warning("housekeeping_failed", error=type(exc).__name__)

    task = asyncio.create_task(loop(), name="intake-housekeeping")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    try:
        await checkpoint_now(app)
    except Exception as exc:
        log.warning("final_checkpoint_failed", error=type(exc).__name__)
