"""The benchmark harness behind `make bench`: runs each benchmark's path and its baseline
in this process, interleaved (the order alternates each round), for several rounds, prints
the medians and ratios and writes them as a Markdown report (docs/performance.md)."""
from __future__ import annotations

import asyncio
import importlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import asyncpg
from aiohttp import web

from shared.config import load_settings
from tests.conftest import AMQP_HOST, PG_ADMIN_DSN, VhostPool
from tests.perf.baselines import bare_intake_app
from tests.perf.common import median
from tests.support.processes import ServiceProcess, free_port, rss_mib, wait_ready

BENCHES = ("intake", "e2e", "timers", "backlog", "notifier", "workspace")


@dataclass
class Sizes:
    intake_n: int = 500       # referrals posted per round
    e2e_n: int = 100          # referrals per round, submit → MASH email
    e2e_latency_n: int = 100  # out-of-hours referrals per round at `e2e_rate`
    e2e_rate: float = 50.0    # per second
    e2e_low_rate: float = 10.0  # per second: the same latency below the machine's saturation
    pending: int = 1_000_000  # pending deadlines in PostgreSQL
    due: int = 10_000         # of them falling due in the same second, each round
    lead_s: float = 15.0      # restart → that second
    backlog_n: int = 400      # referral.received events queued during the outage
    notifier_n: int = 1000    # emails per round, pacing raised to 500/s
    workspace_n: int = 100_000  # referrals in the council whose case list is fetched
    workspace_requests: int = 60  # page fetches per round


READY_INTERVAL_S = 0.05  # start-up time is one of the figures: poll /readyz often


class InProc:
    """A service as an aiohttp app in this process, with `ServiceProcess`'s interface: for the
    harness's own smoke test, which must not pay three interpreter start-ups per benchmark.
    Figures from it mean little."""

    def __init__(self, make_app: Callable[[], web.Application], name: str = "inprocess") -> None:
        self.make_app, self.name, self.port = make_app, name, free_port()
        self.runner: web.AppRunner | None = None

    @classmethod
    def service(cls, name: str, env: dict[str, str]) -> InProc:
        def make() -> web.Application:
            return importlib.import_module(f"services.{name}.bootstrap").create_app(load_settings(env))
        return cls(make, name)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.runner = web.AppRunner(self.make_app(), access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def ready(self, timeout: float = 120.0) -> float:
        return await wait_ready(self.url, alive=lambda: self.runner is not None, name=self.url, timeout=timeout,
                                interval=READY_INTERVAL_S)

    pid = None  # no process of its own

    def rss_mib(self, field: str = "VmRSS") -> float:
        return rss_mib(os.getpid(), field)

    async def stop(self, grace: float = 0) -> int | None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        return None


class Env:
    """Fresh vhosts (from a `VhostPool`), scratch directories and the services under test: child
    processes (`safeguard serve`; their output kept in `$SAFEGUARD_BENCH_LOGS` if that is set), or
    with `inprocess` apps in this process (the smoke test)."""

    def __init__(self, pool: VhostPool, tmp: Path, inprocess: bool = False) -> None:
        self.pool, self.tmp, self.inprocess = pool, tmp, inprocess
        self.vhosts: list[str] = []
        logs = os.environ.get("SAFEGUARD_BENCH_LOGS")
        self.logs = Path(logs) if logs else None

    def service(self, name: str, env: dict[str, str]) -> ServiceProcess | InProc:
        if self.inprocess:
            return InProc.service(name, env)
        return ServiceProcess.serve(name, env, logs=self.logs, ready_interval=READY_INTERVAL_S)

    def bare_intake(self, amqp_url: str) -> ServiceProcess | InProc:
        if self.inprocess:
            return InProc(lambda: bare_intake_app(amqp_url))
        port = free_port()
        return ServiceProcess([sys.executable, "-m", "tests.perf.baselines", str(port), amqp_url], name="baseline",
                              port=port, logs=self.logs, ready_interval=READY_INTERVAL_S)

    def intake_floor(self, amqp_url: str, dsn: str, key_file: Path, key_id: str) -> ServiceProcess | InProc:
        from tests.perf.floors import intake_floor_app
        if self.inprocess:
            from shared.crypto import load_signing_key
            return InProc(lambda: intake_floor_app(amqp_url, dsn, load_signing_key(key_file).verify_key, key_id))
        port = free_port()
        return ServiceProcess([sys.executable, "-m", "tests.perf.floors", str(port), amqp_url, dsn, str(key_file),
                               key_id], name="floor", port=port, logs=self.logs, ready_interval=READY_INTERVAL_S)

    def amqp_url(self) -> str:
        name = self.pool.take()
        self.vhosts.append(name)
        return f"amqp://guest:guest@{AMQP_HOST}:5672/{quote(name, safe='')}"

    def tmpdir(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def make(name: str, env: Env, s: Sizes):
    from tests.perf import b_backlog, b_e2e, b_intake, b_notifier, b_timers, b_workspace
    return {"intake": lambda: b_intake.IntakeBench(env, s.intake_n),
            "e2e": lambda: b_e2e.E2EBench(env, s.e2e_n, s.e2e_latency_n, s.e2e_rate, s.e2e_low_rate),
            "timers": lambda: b_timers.TimersBench(env, s.pending, s.due, s.lead_s),
            "backlog": lambda: b_backlog.BacklogBench(env, s.backlog_n),
            "notifier": lambda: b_notifier.NotifierBench(env, s.notifier_n),
            "workspace": lambda: b_workspace.WorkspaceBench(env, s.workspace_n, s.workspace_requests)}[name]()


async def run_bench(bench, rounds: int) -> dict:
    """Each round runs ours, the bare-broker baseline and (where the bench has one) the durable
    floor, in an order that rotates each round, so drift on a shared machine hits all three."""
    results: dict[str, list[dict]] = {"ours": [], "base": [], "floor": []}
    async with bench:
        for r in range(rounds):
            order = [("ours", bench.ours_round), ("base", bench.base_round),
                     ("floor", getattr(bench, "floor_round", None))]
            for kind, fn in order[r % 3:] + order[:r % 3]:
                if fn is not None:
                    t0 = time.monotonic()
                    result = await fn(r)
                    results[kind].append(result)
                    print(f"  {bench.name} round {r + 1} {kind}: {_fmt_dict(result)} ({time.monotonic() - t0:.1f}s)",
                          flush=True)
    ours = results["ours"]
    rows = []
    for key, label, target in bench.rows:
        o = median([x[key] for x in ours])
        row = {"metric": label, "ours": o, "target": target, "rounds": [x[key] for x in ours]}
        for kind in ("base", "floor"):
            measured = [x.get(key) for x in results[kind]]
            b = median([v for v in measured if v is not None]) if any(v is not None for v in measured) else None
            row[kind] = b
            row[f"{kind}_ratio"] = (o / b) if b else None
            row[f"{kind}_round_ratios"] = [x[key] / v for x, v in zip(ours, measured) if v]
        row["ratio"] = row["base_ratio"]
        rows.append(row)
    return {"name": bench.name, "title": bench.title, "rows": rows}


def _fmt(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}" if abs(v) < 1 else f"{v:.1f}"


def _fmt_dict(d: dict) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in d.items())


def render(results: list[dict], info: dict, sizes: Sizes, rounds: int) -> str:
    out = ["# Performance", "",
           "Generated by `make bench` (`python -m tests.perf`, tests/perf/harness.py); do not edit by hand.",
           "What limits each figure, what was changed and what did not help: docs/performance-notes.md.", "",
           f"- Date: {info['date']}", f"- Machine: {info['cores']} cores, {info['platform']}, Python {info['python']}",
           f"- RabbitMQ {info['rabbitmq']}, PostgreSQL {info['postgres']}",
           f"- Load average at start: {info['load']} (other test runs may share the machine)",
           f"- Rounds: {rounds} (medians; our path and its baseline interleaved, order alternating)",
           "- Sizes: " + ", ".join(f"{k}={v}" for k, v in asdict(sizes).items()),
           f"- Database pool per service: SAFEGUARD_DATABASE_POOL_SIZE={info['pool']} (+ twice as many overflow)", ""]
    for res in results:
        out += [f"## {res['title']}", "", "| Metric | Ours (median) | Bare broker | Ours ÷ bare | Durable floor "
                "| Ours ÷ floor (median; per round) | Target | Ours per round |",
                "|---|---:|---:|---:|---:|---|---|---|"]
        for row in res["rows"]:
            per_round = ", ".join(_fmt(v) for v in row["floor_round_ratios"])
            floor_ratio = f"{_fmt(row['floor_ratio'])} ({per_round})" if row["floor"] else "—"
            out.append(f"| {row['metric']} | {_fmt(row['ours'])} | {_fmt(row['base'])} | {_fmt(row['base_ratio'])} "
                       f"| {_fmt(row['floor'])} | {floor_ratio} | {row['target']} "
                       f"| {', '.join(_fmt(v) for v in row['rounds'])} |")
        out.append("")
    return "\n".join(out)


async def machine_info() -> dict:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        pg = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    proc = subprocess.run(["rabbitmqctl", "version"], capture_output=True, text=True, timeout=60)
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "cores": os.cpu_count(),
            "platform": platform.platform(terse=True), "python": platform.python_version(),
            "rabbitmq": proc.stdout.strip() or "unknown", "postgres": pg,
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "pool": os.environ.get("SAFEGUARD_DATABASE_POOL_SIZE", "5")}


async def run(names: tuple[str, ...], sizes: Sizes, rounds: int, out: Path | None,
              pool: VhostPool | None = None, inprocess: bool = False) -> str:
    own = pool is None
    pool = pool or VhostPool()
    info = await machine_info()
    results: list[dict] = []
    env: Env | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="sg-bench-") as tmp:
            env = Env(pool, Path(tmp), inprocess)
            for name in names:
                print(f"{name}: {rounds} round(s)", flush=True)
                results.append(await run_bench(make(name, env, sizes), rounds))
    finally:
        for name in env.vhosts if env is not None else []:
            pool.release(name)
        if own:
            await asyncio.to_thread(pool.close)
    text = render(results, info, sizes, rounds)
    print("\n" + text, flush=True)
    if out is not None:
        out.write_text(text + "\n", encoding="utf-8")
    return text
