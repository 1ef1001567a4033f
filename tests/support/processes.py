"""The processes tests start, one way: a free local port, the services' port convention,
`ServiceProcess` (a `safeguard serve NAME`, `safeguard up` or any other child serving HTTP:
start with an environment, wait for `/readyz`, stop with SIGTERM, kill -9, read its output)
and `run_cli` for a one-shot `safeguard …` command.

The port convention is the services' own (`shared.config.service_port`): a service listens
on `SAFEGUARD_<SERVICE>_PORT` and serves `/metrics` on `SAFEGUARD_<SERVICE>_METRICS_PORT`
(`shared.config_env.metrics_port`); `port_env` gives both variables (a free metrics port
unless the test names one), and `ServiceProcess.serve` sets them, so `safeguard serve` and
`safeguard up` children are pointed at ports the same way and never share a metrics port.

Environments: `env` is always the variables the test sets, laid over this process's own
environment (so PYTHONPATH and the like reach the child) unless `inherit=False`.
"""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import aiohttp

SAFEGUARD = (sys.executable, "-m", "safeguard")


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on (the OS's pick, released at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_env(service: str, port: int, metrics_port: int | None = None) -> dict[str, str]:
    """The variables `safeguard serve SERVICE` (and `safeguard up`) take the public port and the
    metrics port from (a free metrics port unless given)."""
    return {f"SAFEGUARD_{service.upper()}_PORT": str(port),
            f"SAFEGUARD_{service.upper()}_METRICS_PORT": str(metrics_port or free_port())}


def child_env(env: Mapping[str, str] | None = None, *, inherit: bool = True) -> dict[str, str]:
    return {**(os.environ if inherit else {}), **(env or {})}


def run_cli(*args: str, env: Mapping[str, str] | None = None, inherit: bool = True, cwd: Path | str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m safeguard ARGS` to the end, as a user runs it; stdout and stderr as text."""
    return subprocess.run([*SAFEGUARD, *args], capture_output=True, text=True, env=child_env(env, inherit=inherit),
                          cwd=cwd, timeout=timeout)


async def wait_ready(base_url: str, *, alive: Callable[[], bool], name: str, timeout: float = 120.0,
                     interval: float = 0.25, tail: Callable[[], str] = lambda: "", path: str = "/readyz") -> float:
    """Poll `base_url + path` until it answers 200; return the monotonic time it did. Fails at
    once if the process exits (`alive()` false) and after `timeout`, with `tail()` (its log)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            assert alive(), f"{name} exited: {tail()}"
            try:
                async with session.get(f"{base_url}{path}") as resp:
                    if resp.status == 200:
                        return time.monotonic()
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            assert time.monotonic() < deadline, f"{name} not ready within {timeout}s: {tail()}"
            await asyncio.sleep(interval)


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """A process's resident set (`VmRSS`) or its peak (`VmHWM`), in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def metric_value(text: str, name: str) -> float:
    """The sum of every sample of `name` in a Prometheus text page; `name` may carry its labels
    (`metric{kind="x"}`) to pick one sample. 0 when there is none."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


class ServiceProcess:
    """A child process (serving HTTP on `port`, if it has one). Each `start()` is a launch with
    its own log file `<logs>/<name>-<n>.log` (stdout and stderr; none kept if `logs` is None);
    the port stays across launches unless the test changes `port` first. A `serve` process also
    has its `metrics_port` (where `/metrics` is: never the public port)."""

    def __init__(self, args: Sequence[str], *, name: str, env: Mapping[str, str] | None = None,
                 port: int | None = None, logs: Path | None = None, service: str | None = None,
                 ready_interval: float = 0.25, metrics_port: int | None = None) -> None:
        self.args, self.name, self.env, self.port = list(args), name, dict(env or {}), port
        self.metrics_port = metrics_port
        self.logs, self.service, self.ready_interval = logs, service, ready_interval
        self.log_paths: list[Path] = []
        self.launches = 0
        self.proc: asyncio.subprocess.Process | None = None

    @classmethod
    def serve(cls, service: str, env: Mapping[str, str] | None = None, *, logs: Path | None = None,
              name: str | None = None, port: int | None = None, **kw) -> ServiceProcess:
        """`safeguard serve SERVICE` on `port` (a free one by default), given by `port_env`."""
        return cls([*SAFEGUARD, "serve", service], name=name or service, env=env, port=port or free_port(),
                   logs=logs, service=service, metrics_port=kw.pop("metrics_port", None) or free_port(), **kw)

    @classmethod
    def cli(cls, *args: str, env: Mapping[str, str] | None = None, logs: Path | None = None,
            name: str | None = None, **kw) -> ServiceProcess:
        """Any long-running `safeguard ARGS` (e.g. `up`, which takes every service's port from `env`)."""
        return cls([*SAFEGUARD, *args], name=name or args[0], env=env, logs=logs, **kw)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        """This `serve` process's Prometheus page (its metrics listener, not the public port)."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def log(self) -> Path | None:
        """The current (last) launch's log file."""
        return self.log_paths[-1] if self.log_paths else None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def _next_log(self) -> Path | None:
        if self.logs is None:
            return None
        n = len(self.log_paths) + 1
        while (path := self.logs / f"{self.name}-{n}.log").exists():  # never overwrite an earlier run's
            n += 1
        self.log_paths.append(path)
        return path

    async def start(self) -> None:
        assert not self.running, f"{self.name} is already running"
        ports = port_env(self.service, self.port, self.metrics_port) if self.service and self.port else {}
        env = child_env({**self.env, **ports})
        self.launches += 1
        path = self._next_log()
        out = open(path, "wb") if path is not None else None
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.args, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=out if out is not None else asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.STDOUT)
        finally:
            if out is not None:
                out.close()

    async def ready(self, timeout: float = 120.0, *, interval: float | None = None, url: str | None = None,
                    path: str = "/readyz") -> float:
        """Until `url` (its own by default) + `path` answers 200, failing at once if it exits;
        the monotonic time it did."""
        return await wait_ready(url or self.url, alive=lambda: self.running,
                                name=self.name, timeout=timeout, interval=interval or self.ready_interval,
                                tail=self.output_tail, path=path)

    async def wait(self, timeout: float) -> int:
        """Until it exits by itself; its exit code."""
        assert self.proc is not None, f"{self.name} was never started"
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def kill9(self) -> int:
        assert self.running, f"{self.name} is not running"
        self.proc.send_signal(signal.SIGKILL)
        return await self.proc.wait()

    async def stop(self, grace: float = 60) -> int | None:
        """SIGTERM, then SIGKILL after `grace`; the exit code (0 is a clean stop), None if never started."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode

    def output(self, launch: int = -1) -> str:
        """What a launch (the last by default) wrote to stdout and stderr."""
        if not self.log_paths or not self.log_paths[launch].exists():
            return ""
        return self.log_paths[launch].read_text(encoding="utf-8", errors="replace")

    def output_tail(self, chars: int = 2000) -> str:
        return self.output()[-chars:]

    def lines(self) -> list[str]:
        """Every launch's output, line by line, in order."""
        return [line for n in range(len(self.log_paths)) for line in self.output(n).splitlines()]

    def rss_mib(self, field: str = "VmRSS") -> float:
        assert self.proc is not None
        return rss_mib(self.proc.pid, field)

    async def metric(self, session: aiohttp.ClientSession, name: str) -> float:
        """`metric_value` of this process's `/metrics` page (on its metrics port)."""
        async with session.get(self.metrics_url) as resp:
            return metric_value(await resp.text(), name)


async def stop_all(procs: Iterable, grace: float = 60) -> dict[str, int | None]:
    """Stop them all at once (SIGTERM each, SIGKILL what is left after `grace`); exit codes by
    name, of those that were started."""
    procs = list(procs)
    codes = await asyncio.gather(*(p.stop(grace) for p in procs))
    return {p.name: code for p, code in zip(procs, codes) if code is not None}
