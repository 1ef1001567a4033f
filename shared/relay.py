"""The outbox relay: publishes committed outbox rows with confirms, then marks them sent
(the same UPDATE empties their bodies: a sent row keeps its metadata, not its payload).

A service's handler writes its state change and the messages it causes in one
transaction (`shared.storage.outbox.enqueue`); the relay is the only thing that
talks to the broker for them. A row is marked sent only after the broker confirmed
it, so a crash or an outage at any point means "published again", never "lost";
consumers are idempotent by message id. An unroutable row stays unsent with its
error recorded and is reported (log + metric), never dropped.
"""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import bus, metrics
from shared.logging import get_logger
from shared.storage import outbox

log = get_logger(__name__)


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        table: Table,
        publisher: bus.Publisher,
        *,
        batch_size: int = 200,
        poll_interval: float = 1.0,
        publish_timeout: float = 10.0,
        service: str | None = None,
    ) -> None:
        self._engine, self._table, self._publisher = engine, table, publisher
        self._service = service or table.name.removesuffix("_outbox")
        self._observed_at = 0.0
        self._batch, self._poll, self._timeout = batch_size, poll_interval, publish_timeout
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stopping = False

    def broker_connected(self) -> bool:
        """False while the (robust) connection is down and reconnecting."""
        connected = getattr(self._publisher.connection, "connected", None)
        return connected is None or connected.is_set()

    def notify(self) -> None:
        """Call after committing outbox rows: publish now rather than at the next poll."""
        self._wake.set()

    async def _publish(self, row) -> int | None:
        try:
            await self._publisher.publish(
                row.exchange, row.routing_key, row.body, message_id=row.message_id,
                correlation_id=row.correlation_id, headers=row.headers or {}, timeout=self._timeout,
            )
            return row.id
        except bus.Unroutable:
            log.error("outbox_unroutable", message_id=row.message_id, routing_key=row.routing_key)
            metrics.OUTBOX_FAILURES.labels(reason="unroutable").inc()
            raise
        except (bus.PublishFailed, asyncio.TimeoutError, ConnectionError):
            metrics.OUTBOX_FAILURES.labels(reason="publish_failed").inc()
            raise

    async def drain_once(self) -> int:
        """Publish one batch; return how many rows were confirmed and marked sent."""
        async with self._engine.begin() as conn:
            rows = await outbox.claim_batch(conn, self._table, self._batch)
            if not rows:
                return 0
            results = await asyncio.gather(*(self._publish(r) for r in rows), return_exceptions=True)
            sent = [r for r in results if isinstance(r, int)]
            failed = [row.id for row, r in zip(rows, results) if isinstance(r, BaseException)]
            now = datetime.now(UTC)
            if sent:
                await outbox.mark_sent(conn, self._table, sent, now)
            if failed:
                kinds = {type(r).__name__ for r in results if isinstance(r, BaseException)}
                await outbox.record_failure(conn, self._table, failed, ",".join(sorted(kinds)))
        metrics.OUTBOX_PUBLISHED.inc(len(sent))
        if failed and not sent:
            raise bus.PublishFailed("outbox batch not confirmed")
        return len(sent)

    async def drain(self) -> int:
        """Publish until the outbox is empty (or nothing more can be sent now). A batch smaller
        than `batch_size` emptied it: rows committed since then come with their own `notify`,
        so no second claim is spent finding nothing (a transaction per wake-up saved)."""
        total = 0
        while (n := await self.drain_once()) > 0:
            total += n
            if n < self._batch:
                break
        return total

    async def observe(self) -> tuple[int, float | None]:
        """Export the backlog (unsent rows, age of the oldest) as gauges; return it."""
        async with self._engine.connect() as conn:
            depth, age = await outbox.backlog(conn, self._table, datetime.now(UTC))
        metrics.OUTBOX_BACKLOG.labels(service=self._service).set(depth)
        metrics.OUTBOX_OLDEST_AGE.labels(service=self._service).set(age or 0.0)
        return depth, age

    async def _run(self) -> None:
        backoff = self._poll
        loop = asyncio.get_running_loop()
        while not self._stopping:
            try:
                if self.broker_connected():  # else claiming rows would only fail them all
                    await self.drain()
                backoff = self._poll
            except Exception as exc:
                log.warning("outbox_relay_retry", error=type(exc).__name__, retry_in_s=backoff)
                backoff = min(backoff * 2, 30.0)
            if loop.time() - self._observed_at >= 1.0:
                self._observed_at = loop.time()
                try:
                    await self.observe()
                except Exception as exc:  # the database is down: readiness reports it
                    log.warning("outbox_observe_failed", error=type(exc).__name__)
            try:
                await asyncio.wait_for(self._wake.wait(), backoff)
            except TimeoutError:
                pass
            self._wake.clear()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, flush: bool = True) -> None:
        """Stop the loop; with `flush`, publish what is left first (SIGTERM path)."""
        self._stopping = True
        self._wake.set()
        if self._task:
            await self._task
        if flush:
            try:
                await asyncio.wait_for(self.drain(), 10)
            except Exception as exc:
                log.warning("outbox_flush_incomplete", error=type(exc).__name__)
