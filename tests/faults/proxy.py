"""A small TCP proxy between the services and RabbitMQ, to slow or cut the broker path.

Every byte passes through unchanged; `latency_s` delays each chunk (order kept, so
throughput stays, only round trips grow) and `cut()` aborts every open connection and
refuses new ones until `restore()`. Loopback only.
"""
from __future__ import annotations

import asyncio
import contextlib

from tests.support.processes import free_port


class Proxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self.latency_s = 0.0
        self.refusing = False
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    def cut(self) -> int:
        """Abort every proxied connection and refuse new ones; returns how many were cut."""
        self.refusing = True
        cut = len(self._writers)
        for w in list(self._writers):
            w.transport.abort()
        return cut

    def restore(self) -> None:
        self.refusing = False

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self.cut()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            writer.close()
            return
        self.accepted += 1
        self._writers |= {writer, up_writer}
        pumps = [asyncio.create_task(self._pump(reader, up_writer)), asyncio.create_task(self._pump(up_reader, writer))]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in pumps:
                t.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._tasks.difference_update(pumps)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()
                w.close()

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        """Copy src to dst; with latency, each chunk is written `latency_s` after it was read."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def writer() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    return
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                dst.write(data)
                await dst.drain()

        task = asyncio.create_task(writer())
        try:
            while data := await src.read(65536):
                queue.put_nowait((loop.time() + self.latency_s, data))
                if task.done():
                    break
            queue.put_nowait((0.0, b""))
            await task
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError, ConnectionError):
                await task
