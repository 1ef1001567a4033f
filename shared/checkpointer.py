"""Sign the service's audit head every few minutes and once more at stop.

A signed checkpoint is what lets `safeguard audit verify` notice entries deleted from the
end of a chain (shared/audit.py). Every service appends `checkpointer_ctx(...)` to its
app's `cleanup_ctx` after `runtime_ctx`; `also` runs on the same beat (intake purges
expired nonces there).
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from sqlalchemy import Table
from sqlalchemy.exc import IntegrityError

from shared.audit import checkpoint
from shared.clock import Clock, utcnow
from shared.logging import get_logger
from shared.runtime import RUNTIME

log = get_logger(__name__)
CHECKPOINT_EVERY_S = 300.0


async def checkpoint_now(app: web.Application, audit: Table, checkpoints: Table, clock: Clock) -> int | None:
    """Sign the current head now; the seq signed, or None if nothing new since the last one."""
    rt = app[RUNTIME]
    try:
        async with rt.engine.begin() as conn:
            return await checkpoint(conn, audit, checkpoints, signing_key=rt.signing_key, signer=rt.service,
                                    at=clock())
    except IntegrityError:  # another replica signed the same head at the same moment
        return None


def checkpointer_ctx(audit: Table, checkpoints: Table, *, clock: Clock = utcnow,
                     every_s: float = CHECKPOINT_EVERY_S,
                     also: Callable[[web.Application], Awaitable[None]] | None = None):
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(every_s)
                try:
                    await checkpoint_now(app, audit, checkpoints, clock)
                    if also is not None:
                        await also(app)
                except Exception as exc:
                    log.warning("housekeeping_failed", error=type(exc).__name__)

        task = asyncio.create_task(loop(), name=f"{app[RUNTIME].service}-checkpointer")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        try:
            await checkpoint_now(app, audit, checkpoints, clock)
        except Exception as exc:
            log.warning("final_checkpoint_failed", error=type(exc).__name__)

    return ctx
