"""The console's live stream (GET /console/events, Server-Sent Events): a closed tab is a
normal end (issue 19): logged at info as `console.stream.closed`, no error and no traceback,
counted, and the stream's resources released."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from services.escalation.bootstrap import create_app
from services.escalation.entrypoints.console import STREAMS
from tests.support.oidc import sign_in

pytestmark = [pytest.mark.broker, pytest.mark.database]
OPERATOR = "control.room@dev-force.example"


def _closed(how: str) -> float:
    return REGISTRY.get_sample_value("safeguard_console_streams_closed_total", {"how": how}) or 0.0


async def _until(check, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _served(esc, cancels: bool) -> AsyncIterator[tuple[web.Application, str]]:
    """The console on `esc.port`: as `safeguard serve` runs it (web.run_app: handlers are not
    cancelled when the client goes away), or as aiohttp's TestServer does (they are)."""
    if cancels:
        async with esc.app() as server:
            yield server.app, str(server.make_url("")).rstrip("/")
        return
    app = create_app(esc.settings, esc.clock, timer_options={"poll_interval_s": 3600, "retry_base_s": 60})
    runner = web.AppRunner(app, handler_cancellation=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", esc.port).start()
    try:
        yield app, f"http://127.0.0.1:{esc.port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("cancels", [False, True], ids=["served", "handler-cancelled"])
async def test_a_closed_tab_ends_the_stream_quietly_and_releases_it(esc_web, caplog, cancels):
    esc = esc_web
    caplog.set_level(logging.DEBUG)
    async with _served(esc, cancels) as (app, base):
        streams = app[STREAMS]
        before = _closed("client_closed")
        with capture_logs() as logs:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                (await sign_in(http, base, OPERATOR, "/console")).release()
                resp = await http.get(f"{base}/console/events")
                assert resp.status == 200 and resp.content_type == "text/event-stream"
                first = await resp.content.readuntil(b"\n\n")
                assert first.startswith(b"event: alerts\n")
                assert streams.open == 1
                resp.close()  # the tab closes: the connection drops mid-stream
            await _until(lambda: streams.open == 0, timeout=5)  # within a poll, not at the 15 s heartbeat
            await asyncio.sleep(0.3)  # anything logged after the end
        assert _closed("client_closed") - before == 1
    closed = [e for e in logs if e["event"] == "console.stream.closed"]
    assert [(e["log_level"], e["how"]) for e in closed] == [("info", "client_closed")]
    assert not [e for e in logs if e["log_level"] in ("error", "critical", "exception") or "exc_info" in e
                or "exception" in e], logs
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info], caplog.records


async def test_a_stream_open_at_shutdown_ends_without_an_error(esc_web, caplog):
    esc = esc_web
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs:
        async with esc.app() as server:
            base = str(server.make_url("")).rstrip("/")
            streams = server.app[STREAMS]
            http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
            (await sign_in(http, base, OPERATOR, "/console")).release()
            resp = await http.get(f"{base}/console/events")
            await resp.content.readuntil(b"\n\n")
            assert streams.open == 1
        assert streams.open == 0
        resp.close()
        await http.close()
    assert [e["how"] for e in logs if e["event"] == "console.stream.closed"] == ["shutdown"]
    assert not [e for e in logs if e["log_level"] in ("error", "critical") or "exc_info" in e]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info], caplog.records
