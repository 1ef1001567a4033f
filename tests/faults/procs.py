"""The three services as real processes (`python -m safeguard serve NAME`), so a fault can
be a real `kill -9`. Each keeps its port across restarts (intake's URL stays put) and
writes one JSON log file per launch."""
from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path


from tests.notifier.servers import free_port
from tests.readiness import wait_ready


@dataclass
class Service:
    name: str
    env: dict[str, str]
    logs: Path
    port: int = field(default_factory=free_port)
    launches: int = 0
    proc: asyncio.subprocess.Process | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.launches += 1
        env = {**os.environ, **self.env, f"SAFEGUARD_{self.name.upper()}_PORT": str(self.port),
               "SAFEGUARD_LOG_FORMAT": "json"}
        with open(self.logs / f"{self.name}-{self.launches}.log", "wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "safeguard", "serve", self.name, env=env,
                stdout=out, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL)

    async def wait_ready(self, timeout: float = 120) -> None:
        await wait_ready(self.base, alive=lambda: self.proc is None or self.proc.returncode is None,
                         name=self.name, timeout=timeout, tail=self.log_tail)

    async def kill9(self) -> int:
        assert self.proc is not None and self.proc.returncode is None, f"{self.name} is not running"
        self.proc.send_signal(signal.SIGKILL)
        return await self.proc.wait()

    async def stop(self, grace: float = 40) -> int | None:
        """SIGTERM, then SIGKILL after `grace`; the exit code (0 is a clean stop)."""
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

    def log_tail(self, chars: int = 2000) -> str:
        path = self.logs / f"{self.name}-{self.launches}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def log_lines(self) -> list[str]:
        return [line for n in range(1, self.launches + 1)
                for line in (self.logs / f"{self.name}-{n}.log").read_text(errors="replace").splitlines()]
