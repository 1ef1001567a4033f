"""Group commit: the effects of many concurrent callers committed in one transaction.

A consumer handles up to `prefetch` messages at once, and each used to commit its own
transaction: a BEGIN, a COMMIT (and its WAL flush), the audit head's lock and an outbox
insert per message. `GroupCommit.run(fn)` queues `fn(conn)`; while one transaction is in
flight the next callers queue, and the next transaction takes them all (up to `max_size`):

- each effect runs in its own task with its caller's context (its log bindings, its
  context variables), one after the other on the shared connection, inside `around(conn)`
  (for example the audit and outbox batches: one audit insert and one outbox insert for
  the whole group, the head lock taken once, at the end);
- `run` returns only after the commit that holds the caller's effect, so a consumer that
  acks after `run` still acks only what is durable;
- if any effect raises (or the group's batched writes or its commit fail) the whole
  transaction rolls back and every effect of the group runs again alone, in its own
  transaction: one bad message never takes the others with it, and each caller gets exactly
  its own result or exception. When no transaction could be begun at all (the database is
  down) every caller gets that error at once, without a connection attempt each.
  Effects must therefore be safe to run again after a rollback: database work only,
  with anything else (metrics, wake-ups) done by the caller after `run` returns;
- with one caller at a time (low load) a group is that one caller: no waiting, no timer;
- `workers` groups may be in flight at once (each on its own connection), so one group's
  statements overlap another's commit; a worker takes whatever is waiting when it is free.

`run_once` is `shared.storage.process_once` through the group: the processed-id claim in
the same transaction as the effect, so a redelivered or duplicated message runs once.
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared import metrics
from shared.audit import batched as audit_batched
from shared.storage.outbox import batched as outbox_batched
from shared.storage.processed import once

T = TypeVar("T")
Effect = Callable[[AsyncConnection], Awaitable[T]]
Around = Callable[[AsyncConnection], AbstractAsyncContextManager[Any]]


@contextlib.asynccontextmanager
async def _nothing(conn: AsyncConnection) -> AsyncIterator[None]:
    yield


def writes_batched(audit_table: Table, outbox_table: Table) -> Around:
    """`around` for a service's groups: its outbox rows and its audit entries, each kind in one
    statement at the end of the transaction, the messages first and then the audit entries,
    so that the audit head's row lock is taken last and held only until the commit."""
    @contextlib.asynccontextmanager
    async def batched(conn: AsyncConnection) -> AsyncIterator[None]:
        async with audit_batched(conn, audit_table), outbox_batched(conn, outbox_table):
            yield
    return batched


@dataclass
class _Job(Generic[T]):
    fn: Effect[T]
    future: asyncio.Future[T]
    context: contextvars.Context = field(default_factory=contextvars.copy_context)


class GroupCommit:
    """One group-commit queue over `engine`; `name` labels its metrics."""

    def __init__(self, engine: AsyncEngine, name: str, *, around: Around | None = None,
                 max_size: int = 64, workers: int = 1) -> None:
        self.engine, self.name, self.around, self.max_size = engine, name, around or _nothing, max_size
        self.workers = workers
        self._pending: deque[_Job[Any]] = deque()
        self._workers: set[asyncio.Task[None]] = set()

    async def run(self, fn: Effect[T]) -> T:
        """`fn(conn)` committed, in a group with whoever else is waiting; its result."""
        job: _Job[T] = _Job(fn, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        if sum(not w.done() for w in self._workers) < self.workers:  # a done one may not be discarded yet
            worker = asyncio.create_task(self._drain(), name=f"group-commit:{self.name}")
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        return await job.future

    async def run_once(self, table: Table, consumer: str, message_id: str, fn: Effect[T],
                       now: datetime) -> tuple[bool, T | None]:
        """(True, fn's result) the first time `consumer` applies `message_id`, else (False, None)."""
        return await self.run(once(table, consumer, message_id, fn, now))

    async def _drain(self) -> None:
        """One worker: takes whatever is waiting (up to `max_size`) as its next group. With
        several workers, one group's statements overlap another's commit."""
        group: list[_Job[Any]] = []
        try:
            while self._pending:
                group = []
                while self._pending and len(group) < self.max_size:
                    job = self._pending.popleft()
                    if not job.future.done():  # a caller cancelled before its turn: nothing ran
                        group.append(job)
                if group:
                    await self._commit(group)
                group = []
        finally:  # cancelled (shutdown): nobody is left waiting forever
            others = [w for w in self._workers if w is not asyncio.current_task() and not w.done()]
            for job in [*group, *(() if others else self._pending)]:
                job.future.cancel()

    async def _commit(self, group: list[_Job[Any]]) -> None:
        metrics.GROUP_COMMIT_SIZE.labels(group=self.name).observe(len(group))
        results: list[Any] = []
        started = False
        try:
            async with self.engine.begin() as conn, self.around(conn):
                started = True
                for job in group:
                    results.append(await asyncio.create_task(job.fn(conn), context=job.context))
        except Exception as exc:
            if len(group) == 1 or not started:
                # Alone, or no transaction at all (the database is down): running each one
                # alone would only fail the same way, once per caller. Everyone retries.
                for job in group:
                    _settle(job, exc=exc)
                return
            metrics.GROUP_COMMIT_SPLIT.labels(group=self.name).inc()
            for job in group:  # each alone: the failure stays with whoever caused it
                await self._commit_alone(job)
            return
        for job, result in zip(group, results, strict=True):
            _settle(job, result=result)

    async def _commit_alone(self, job: _Job[Any]) -> None:
        try:
            async with self.engine.begin() as conn, self.around(conn):
                result = await asyncio.create_task(job.fn(conn), context=job.context)
        except Exception as exc:
            _settle(job, exc=exc)
        else:
            _settle(job, result=result)


def _settle(job: _Job[Any], *, result: Any = None, exc: BaseException | None = None) -> None:
    if job.future.done():  # its caller was cancelled meanwhile; the effect stands or not, as committed
        return
    if exc is not None:
        job.future.set_exception(exc)
    else:
        job.future.set_result(result)
