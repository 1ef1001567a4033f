"""The services under test: `Proc`, a child process (`safeguard serve NAME`, or a baseline
script) serving HTTP on a free port; `InProc`, the same app in this process (smoke test)."""
from __future__ import annotations

import asyncio
import importlib
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import aiohttp
from aiohttp import web

from shared.config import load_settings
from tests.notifier.servers import free_port
from tests.readiness import wait_ready


class Proc:
    """A child process serving HTTP on `port` (a real service, or a bare baseline)."""

    def __init__(self, args: Sequence[str], env: dict[str, str], port: int) -> None:
        self.args, self.env, self.port = list(args), env, port
        self.proc: asyncio.subprocess.Process | None = None

    @classmethod
    def service(cls, name: str, env: dict[str, str]) -> Proc:
        port = free_port()
        return cls([sys.executable, "-m", "safeguard", "serve", name, "--port", str(port)], env, port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Spawn it; its output goes to `$SAFEGUARD_BENCH_LOGS/<name>-<pid>.log` if that is set, else nowhere."""
        logs = os.environ.get("SAFEGUARD_BENCH_LOGS")
        out = open(Path(logs) / f"{Path(self.args[-3]).name}-{time.time_ns()}.log", "wb") if logs else None
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.args, env=self.env, stdout=out or asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.STDOUT)
        finally:
            if out is not None:
                out.close()

    async def ready(self, timeout: float = 120.0) -> float:
        """Wait for `/readyz` to answer 200; return the monotonic time it did."""
        def alive() -> bool:
            return self.proc is not None and self.proc.returncode is None
        return await wait_ready(self.url, alive=alive, name=self.url, timeout=timeout, interval=0.05)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def rss_mib(self, field: str = "VmRSS") -> float:
        assert self.proc is not None
        return rss_mib(self.proc.pid, field)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 60)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


class InProc:
    """The same service as an aiohttp app in this process: for the harness's own smoke test,
    which must not pay three interpreter start-ups per benchmark. Figures from it mean little."""

    def __init__(self, make_app: Callable[[], web.Application], port: int | None = None) -> None:
        self.make_app, self.port = make_app, port or free_port()
        self.runner: web.AppRunner | None = None

    @classmethod
    def service(cls, name: str, env: dict[str, str]) -> InProc:
        def make() -> web.Application:
            return importlib.import_module(f"services.{name}.bootstrap").create_app(load_settings(env))
        return cls(make)

    url = Proc.url

    async def start(self) -> None:
        self.runner = web.AppRunner(self.make_app(), access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def ready(self, timeout: float = 120.0) -> float:
        return await wait_ready(self.url, alive=lambda: self.runner is not None, name=self.url, timeout=timeout,
                                interval=0.05)

    pid = None  # no process of its own

    def rss_mib(self, field: str = "VmRSS") -> float:
        return rss_mib(os.getpid(), field)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


def rss_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


async def stop_all(procs: Sequence[Proc]) -> None:
    await asyncio.gather(*(p.stop() for p in procs))
