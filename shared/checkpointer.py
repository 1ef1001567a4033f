"""Sign the service's audit head when it starts, every few minutes, and once more at stop.

A signed checkpoint is what lets `safeguard audit verify` notice entries deleted from the
end of a chain (shared/audit.py), and its copy in the checkpoint stream
(shared/audit_store.py) what lets it notice a deleted or rewritten checkpoint table. Every
service appends `checkpointer_ctx(...)` to its app's `cleanup_ctx` after `runtime_ctx`;
`also` runs on the same beat (intake purges expired nonces there).

The `final` checkpoint is a runtime stop hook that runs after every other one: consumers
and timers have stopped, so no entry can follow it, and the relay's flush publishes it.
"""
from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from sqlalchemy import Table
from sqlalchemy.exc import IntegrityError

from shared.audit import checkpoint
from shared.audit_store import enqueue_record
from shared.clock import Clock, utcnow
from shared.logging import get_logger
from shared.runtime import RUNTIME

log = get_logger(__name__)
CHECKPOINT_EVERY_S = 300.0
REPLICA = web.AppKey("audit_replica", str)


async def checkpoint_now(app: web.Application, audit: Table, checkpoints: Table, clock: Clock, *,
                         event: str = "checkpoint") -> int | None:
    """Sign the current head now and queue its copy for the checkpoint stream; the seq signed,
    or None if nothing new since the last one. A `start` or `final` event copies the newest
    checkpoint even when it is not new: it marks this replica's start or clean stop."""
    rt = app[RUNTIME]
    outbox_table = audit.metadata.tables[f"{audit.name.removesuffix('_audit')}_outbox"]
    for attempt in range(2):
        try:
            async with rt.engine.begin() as conn:
                seq = await checkpoint(conn, audit, checkpoints, signing_key=rt.signing_key, signer=rt.service,
                                       at=clock())
                if seq is not None or event != "checkpoint":
                    await enqueue_record(conn, audit, checkpoints, outbox_table, service=rt.service,
                                         replica=app.get(REPLICA, "-"), event=event,
                                         signing_key=rt.signing_key, at=clock())
            rt.relay.notify()
            return seq
        except IntegrityError:  # another replica signed the same head at the same moment
            if event == "checkpoint" or attempt:
                return None  # a start or final record is retried once: that head is signed now
    return None


def checkpointer_ctx(audit: Table, checkpoints: Table, *, clock: Clock = utcnow,
                     every_s: float = CHECKPOINT_EVERY_S,
                     also: Callable[[web.Application], Awaitable[None]] | None = None):
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[REPLICA] = uuid.uuid4().hex[:12]

        async def final() -> None:
            try:
                await checkpoint_now(app, audit, checkpoints, clock, event="final")
            except Exception as exc:
                log.warning("final_checkpoint_failed", error=type(exc).__name__)

        async def loop() -> None:
            while True:
                await asyncio.sleep(every_s)
                try:
                    await checkpoint_now(app, audit, checkpoints, clock)
                    if also is not None:
                        await also(app)
                except Exception as exc:
                    log.warning("housekeeping_failed", error=type(exc).__name__)

        try:
            await checkpoint_now(app, audit, checkpoints, clock, event="start")
        except Exception as exc:
            log.warning("start_checkpoint_failed", error=type(exc).__name__)
        app[RUNTIME].stop_hooks.insert(0, final)  # hooks run in reverse: this one last
        task = asyncio.create_task(loop(), name=f"{app[RUNTIME].service}-checkpointer")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx
