"""`safeguard sink`: the development mail and Teams sink.

An aiosmtpd SMTP server (default 127.0.0.1:8025) and an aiohttp server (default
127.0.0.1:8026) that accepts Teams Workflows webhook posts at `/teams/<name>` (202) and
shows what arrived at `/` (newest first; JSON at `/messages`). Everything is kept in
memory (the last 500) and nothing is ever forwarded. Messages hold no personal data by
design, so showing them to a developer is safe.
"""
from __future__ import annotations

import asyncio
import email
import email.policy
import json
from collections import deque
from datetime import UTC, datetime
from typing import Any

import jinja2
from aiohttp import web
from aiosmtpd.smtp import SMTP

RECEIVED = web.AppKey("received", deque)
SMTP_ADDRESS = web.AppKey("smtp_address", str)
PAGE = jinja2.Environment(autoescape=True).from_string("""<!DOCTYPE html>
<html lang="en-GB"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>Safeguard Relay dev sink</title></head>
<body style="font-family: Arial, sans-serif; margin: 2em; color: #0b0c0c;">
<h1>Safeguard Relay development sink</h1>
<p>{{ items|length }} message(s) received (emails on SMTP {{ smtp }}, Teams cards on /teams/&lt;name&gt;). Newest first.</p>
{% for m in items %}<section style="border-top: 1px solid #b1b4b6; padding: .5em 0;">
<h2 style="font-size: 1.1em;">{{ m.kind }} · {{ m.at }} · to {{ m.to }}</h2>
{% if m.subject %}<p><strong>{{ m.subject }}</strong></p>{% endif %}
<pre style="white-space: pre-wrap; background: #f3f2f1; padding: .5em;">{{ m.text }}</pre></section>
{% endfor %}</body></html>""")


class MailHandler:
    def __init__(self, received: deque) -> None:
        self.received = received

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain", "html"))
        self.received.appendleft({
            "kind": "email", "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "to": ", ".join(envelope.rcpt_tos), "subject": str(msg.get("Subject", "")),
            "text": body.get_content() if body is not None else "",
        })
        return "250 Message accepted for delivery"


def card_text(payload: Any) -> str:
    lines: list[str] = []
    for att in payload.get("attachments", []) if isinstance(payload, dict) else []:
        card = att.get("content") or {}
        for block in card.get("body", []):
            if block.get("type") == "TextBlock":
                lines.append(str(block.get("text", "")))
            for fact in block.get("facts", []):
                lines.append(f"{fact.get('title')}: {fact.get('value')}")
        lines += [f"[{a.get('title')}] {a.get('url')}" for a in card.get("actions", [])]
    return "\n".join(lines)


async def teams_post(request: web.Request) -> web.Response:
    try:
        payload = json.loads(await request.read())
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        return web.json_response({"error": "invalid JSON"}, status=400)
    request.app[RECEIVED].appendleft({
        "kind": "teams", "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "to": request.match_info["name"], "subject": "", "text": card_text(payload), "card": payload,
    })
    return web.json_response({"status": "accepted"}, status=202)


async def index(request: web.Request) -> web.Response:
    return web.Response(text=PAGE.render(items=list(request.app[RECEIVED]), smtp=request.app[SMTP_ADDRESS]),
                        content_type="text/html")


async def messages(request: web.Request) -> web.Response:
    return web.json_response(list(request.app[RECEIVED]))


def sink_app(received: deque, smtp: str) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[RECEIVED] = received
    app[SMTP_ADDRESS] = smtp
    app.router.add_get("/", index)
    app.router.add_get("/messages", messages)
    app.router.add_post("/teams/{name}", teams_post)
    return app


async def run_sink(host: str = "127.0.0.1", smtp_port: int = 8025, http_port: int = 8026) -> None:
    received: deque = deque(maxlen=500)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(MailHandler(received), hostname="safeguard-sink"), host, smtp_port)
    runner = web.AppRunner(sink_app(received, f"{host}:{smtp_port}"), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, http_port).start()
    print(f"sink: SMTP on {host}:{smtp_port}; Teams webhooks and received messages on http://{host}:{http_port}/",
          flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        server.close()
        await server.wait_closed()
        await runner.cleanup()
