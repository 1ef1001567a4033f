"""The Prometheus page of this test process, as the metrics listener serves it.

Services under test in this process (aiohttp test servers of `create_app`) share the one
registry; their public apps no longer answer `/metrics` (issue 18 #14), so tests read it
from `shared.http.metrics_app`, the application `safeguard serve` runs on the metrics port.
"""
from __future__ import annotations

import aiohttp
from aiohttp.test_utils import TestServer

from shared.http import metrics_app


async def metrics_page(token: str | None = None) -> str:
    """GET /metrics from a metrics listener started for the call."""
    server = TestServer(metrics_app(token))
    await server.start_server()
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with aiohttp.ClientSession() as session, session.get(server.make_url("/metrics"),
                                                                   headers=headers) as resp:
            assert resp.status == 200, resp.status
            return await resp.text()
    finally:
        await server.close()
