"""Benchmark 2: end to end through the three real services.

Ours: `safeguard serve` intake, escalation and notifier (PostgreSQL each, one vhost),
the notifier mailing an aiosmtpd sink and posting to a Teams stub. Throughput: N referrals
posted at concurrency 32, until the N-th MASH email lands in the sink. Latency: M
out-of-hours referrals at a steady rate, from the POST to the alert on `control-room.dev-force`.
Baseline: the bare three-hop relay (`baselines.Relay`) with bodies of the same size.
CPU: milliseconds per referral of each service, PostgreSQL and RabbitMQ over the low-rate
phase (`cpu`), until its last email and Teams card are out (`_quiet`); their total against
what the machine's cores allow per referral at `rate`. Over the same phase, from
`pg_stat_database` (each service has its own database): PostgreSQL transactions and rows
written per referral, per service; and each service's resident memory after the round.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid

import aio_pika

from shared import bus
from tests.conftest import fresh_pg_database
from tests.notifier.servers import SmtpSink, TeamsStub
from tests.perf import cpu, pgstats
from tests.perf.baselines import HOPS, Relay
from tests.perf.common import bodies, post_all, quantile, service_env, setup_config, signed, wait_until
from tests.support.processes import stop_all

MASH = "mash-team@dev-borough.example"
SERVICES = ("intake", "escalation", "notifier")
ALERTS = "control-room.dev-force"


class E2EBench:
    name = "e2e"
    title = "2. End to end (submit → MASH email; submit → control-room alert)"
    rows = [("per_s", "referrals/s to MASH email (baseline: 3-hop relay msgs/s)", "≥ 0.5 × baseline"),
            ("alert_p50_ms", "alert latency p50 ms at steady rate", ""),
            ("alert_p99_ms", "alert latency p99 ms at steady rate", "< 100 ms"),
            ("alert_low_p50_ms", "alert latency p50 ms at the low rate", ""),
            ("alert_low_p99_ms", "alert latency p99 ms at the low rate", "< 100 ms"),
            ("errors", "e2e: submissions not accepted (non-202)", "0")]

    def __init__(self, env, n: int, latency_n: int, rate: float, low_rate: float) -> None:
        self.env, self.n, self.latency_n, self.rate, self.low_rate = env, n, latency_n, rate, low_rate
        budget = (os.cpu_count() or 1) * 1000 / rate
        self.rows = self.rows + [(f"cpu_{c}", f"CPU ms per referral at the low rate: {c}", "") for c in cpu.COMPONENTS] + [
            ("cpu_total", "CPU ms per referral at the low rate: all five", f"≤ {budget:.0f} to sustain {rate:g}/s")] + [
            (f"{k}_{svc}", f"{label}: {svc}", "") for k, label in pgstats.LABELS.items() for svc in SERVICES] + [
            (f"rss_{svc}", f"resident memory MiB after the round: {svc}", "") for svc in SERVICES]
        self.stack = contextlib.AsyncExitStack()
        self.alerts: dict[str, float] = {}

    async def __aenter__(self) -> E2EBench:
        s = self.stack
        self.tmp = self.env.tmpdir("e2e")
        self.smtp, self.teams = s.enter_context(SmtpSink()), await s.enter_async_context(TeamsStub())
        config = setup_config(self.tmp, teams_base=self.teams.base, out_of_hours=True)
        amqp = self.env.amqp_url()
        connection = await aio_pika.connect_robust(amqp)
        s.push_async_callback(connection.close)
        channel = await connection.channel()
        await bus.declare_topology(channel, ["dev-force"])
        queue = await channel.get_queue(ALERTS)
        await queue.consume(self._on_alert, no_ack=True)
        dbs = {name: await s.enter_async_context(fresh_pg_database()) for name in SERVICES}
        self.databases = {name: url.rsplit("/", 1)[1] for name, url in dbs.items()}
        self.procs: list = []
        s.push_async_callback(stop_all, self.procs)  # before the databases are dropped
        for name, db in dbs.items():
            proc = self.env.service(name, service_env(config, self.tmp, amqp, db, SAFEGUARD_SMTP_URL=self.smtp.url))
            await proc.start()
            self.procs.append(proc)
        for proc in self.procs:
            await proc.ready()
        self.relay = Relay(self.env.amqp_url())
        s.push_async_callback(self.relay.close)
        await self.relay.open()
        await self.relay.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stack.aclose()

    async def _on_alert(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.alerts.setdefault(json.loads(message.body)["reference"], time.monotonic())

    async def _quiet(self) -> None:
        """Wait until the notifier has sent everything: no new email or Teams card for longer than
        the shortest delay queue (a Teams card paced out waits there), so that each phase starts
        with nothing left over from the one before."""
        last, since = -1, time.monotonic()
        while time.monotonic() - since < bus.RETRY_DELAYS_S[0] + 1.0:
            count = len(self.smtp.mails) + sum(len(posts) for posts in self.teams.posts.values())
            if count != last:
                last, since = count, time.monotonic()
            await asyncio.sleep(0.1)

    async def ours_round(self, r: int) -> dict[str, float]:
        intake = self.procs[0]
        before = len(self.smtp.to(MASH))
        requests = signed(self.tmp, bodies(self.n, f"e2e-{r}"), intake.url)
        start = time.monotonic()
        statuses = await post_all(intake.url, requests)
        accepted = statuses.count(202)
        done = await wait_until(lambda: len(self.smtp.to(MASH)) >= before + accepted, timeout=60 + self.n)
        per_s = accepted / (done - start)
        await self._quiet()
        lat, errors = await self._alert_latency(f"lat-{r}", self.rate)
        pids = {name: proc.pid for name, proc in zip(("intake", "escalation", "notifier"), self.procs)}
        before, db_before = cpu.snapshot(pids), await pgstats.snapshot(self.databases)
        low, low_errors = await self._alert_latency(f"low-{r}", self.low_rate)
        spent = cpu.per_item_ms(before, cpu.snapshot(pids), self.latency_n)
        db_spent = pgstats.per_item(db_before, await pgstats.snapshot(self.databases), self.latency_n)
        rss = {f"rss_{name}": proc.rss_mib() for name, proc in zip(SERVICES, self.procs)}
        errors += low_errors + len(statuses) - accepted
        return {"per_s": per_s, "alert_p50_ms": quantile(lat, 0.5), "alert_p99_ms": quantile(lat, 0.99),
                "alert_low_p50_ms": quantile(low, 0.5), "alert_low_p99_ms": quantile(low, 0.99), "errors": errors,
                **{f"cpu_{name}": ms for name, ms in spent.items()}, **db_spent, **rss}

    async def _alert_latency(self, tag: str, rate: float) -> tuple[list[float], int]:
        """Out-of-hours referrals posted at `rate`: ms from each POST to its control-room alert."""
        sent: dict[str, float] = {}

        def on_reply(_i: int, at: float, reply: dict) -> None:
            assert reply["out_of_hours"] is True, "the benchmark's working hours should make every receipt out of hours"
            sent[reply["reference"]] = at

        requests = signed(self.tmp, bodies(self.latency_n, tag), self.procs[0].url)
        statuses = await post_all(self.procs[0].url, requests, rate=rate, on_reply=on_reply)
        errors = len(statuses) - statuses.count(202)
        if errors:
            print(f"  e2e {tag}: {errors} submissions not accepted: {sorted(set(statuses))}", flush=True)
        await wait_until(lambda: all(ref in self.alerts for ref in sent), timeout=60)
        await self._quiet()
        return [(self.alerts[ref] - at) * 1000 for ref, at in sent.items()], errors

    async def _relay(self, items: list[bytes], rate: float | None) -> tuple[float, list[float]]:
        ids = [uuid.uuid4().hex for _ in items]
        sent: dict[str, float] = {}
        gate = asyncio.Semaphore(32)
        start = time.monotonic()

        async def one(i: int) -> None:
            if rate:
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            async with gate:
                sent[ids[i]] = time.monotonic()
                await self.relay.publish(HOPS[0], items[i], ids[i])

        await asyncio.gather(*(one(i) for i in range(len(items))))
        await wait_until(lambda: all(i in self.relay.arrived for i in ids), timeout=60 + len(items))
        end = max(self.relay.arrived[i] for i in ids)
        return len(items) / (end - start), [(self.relay.arrived[i] - sent[i]) * 1000 for i in ids]

    async def base_round(self, r: int) -> dict[str, float]:
        per_s, _ = await self._relay(bodies(self.n, f"e2e-base-{r}"), None)
        _, lat = await self._relay(bodies(self.latency_n, f"lat-base-{r}"), self.rate)
        _, low = await self._relay(bodies(self.latency_n, f"low-base-{r}"), self.low_rate)
        return {"per_s": per_s, "alert_p50_ms": quantile(lat, 0.5), "alert_p99_ms": quantile(lat, 0.99),
                "alert_low_p50_ms": quantile(low, 0.5), "alert_low_p99_ms": quantile(low, 0.99), "errors": 0}
