"""Real servers the notifier tests deliver to: an aiosmtpd SMTP server and an aiohttp
server standing in for Teams Workflows webhooks, both on free local ports."""
from __future__ import annotations

import asyncio
import email
import email.policy
import json
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller

from tests.support.processes import free_port


@dataclass
class Mail:
    to: list[str]
    subject: str
    text: str
    html: str
    raw: str
    peer: Any = None  # the client's (host, port): one per SMTP connection


class _Handler:
    def __init__(self, sink: "SmtpSink") -> None:
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        for prefix, reply in self.sink.rcpt_replies.items():
            if address.startswith(prefix):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        with self.sink.lock:
            self.sink.mails.append(Mail(list(envelope.rcpt_tos), str(msg["Subject"]).strip(),
                                        text.get_content() if text else "", html.get_content() if html else "",
                                        envelope.content.decode("utf-8", "replace"), session.peer))
        return "250 Message accepted"


class SmtpSink:
    """aiosmtpd in a thread; `rcpt_replies` maps an address prefix to an SMTP reply.
    `with SmtpSink() as sink:` starts it and always stops it."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.mails: list[Mail] = []
        self.rcpt_replies: dict[str, str] = {}
        self.lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def to(self, address: str) -> list[Mail]:
        with self.lock:
            return [m for m in self.mails if address in m.to]


@dataclass
class TeamsStub:
    """Webhook stand-in: POST /teams/<name>; `script[name]` holds (status, headers) replies
    to use first (then 202), `delay_s` slows every reply down. `async with TeamsStub() as stub:`
    starts it and always stops it."""

    port: int = field(default_factory=free_port)
    posts: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    script: dict[str, deque] = field(default_factory=lambda: defaultdict(deque))
    delay_s: float = 0.0
    _runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _post(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await request.read()
        self.times[name].append(asyncio.get_running_loop().time())
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.script[name]:
            status, headers = self.script[name].popleft()
            return web.Response(status=status, headers=headers, text="scripted")
        self.posts[name].append(json.loads(body))
        return web.Response(status=202, text="accepted")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/teams/{name}", self._post)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> TeamsStub:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()
