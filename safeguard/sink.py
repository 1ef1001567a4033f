"""`safeguard sink`: the development mail and Teams sink.

An aiosmtpd SMTP server (default 127.0.0.1:8025) and an aiohttp server (default
127.0.0.1:8026) that accepts Teams Workflows webhook posts at `/teams/<name>` (202) and
shows what arrived at `/` (newest first; JSON at `/messages`). Everything is kept in
memory (the last 500) and nothing is ever forwarded. Messages hold no personal data by
design, so showing them to a developer is safe.

The page shows each message as its recipient would see it:

- an email's HTML part in an `<iframe sandbox>` (no `allow-scripts`, no `allow-same-origin`)
  loading `/messages/<id>.html`, which is served with a Content-Security-Policy that has the
  same sandbox and forbids scripts, so a `<script>` in a mail never runs — even when that
  URL is opened by itself. Its links open in a new tab (a `<base target="_blank">` is put
  in front, as webmail clients do; the sandbox lets popups escape it). The text part is at
  `/messages/<id>.txt` and under the frame.
- a Teams card's JSON rendered into plain HTML on the server (Jinja2, autoescaped): its
  text blocks (the first bold one as the title), fact sets and its `Action.OpenUrl`
  actions as real links (http and https only), opening in a new tab.

The page itself runs no script (its own CSP says so). `/?refresh=N` reloads it every N
seconds.
"""
from __future__ import annotations

import asyncio
import email
import email.policy
import itertools
import json
import re
from collections import deque
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web
from aiosmtpd.smtp import SMTP

RECEIVED = web.AppKey("received", deque)
SMTP_ADDRESS = web.AppKey("smtp_address", str)
MAX_DEPTH = 12  # containers nested deeper than this are not drawn
# The sandbox of the frame that shows an email's HTML part: links may open a new tab (or,
# clicked, the top window); no scripts, forms, plugins, and an opaque origin.
FRAME_SANDBOX = "allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation"
EMAIL_CSP = (f"sandbox {FRAME_SANDBOX}; default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
             "form-action 'none'; frame-ancestors 'self'")
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-src 'self'; form-action 'none'; base-uri 'none'"
HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
_ids = itertools.count(1)

PAGE = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True).from_string("""<!DOCTYPE html>
<html lang="en-GB"><head><meta charset="utf-8">
{% if refresh %}<meta http-equiv="refresh" content="{{ refresh }}">{% endif %}
<title>Safeguard Relay dev sink</title>
<style>
body { font-family: Arial, sans-serif; margin: 2em; color: #0b0c0c; max-width: 60em; }
section { border-top: 1px solid #b1b4b6; padding: .5em 0 1em; }
h2 { font-size: 1.1em; } .meta { color: #505a5f; font-weight: normal; }
iframe { width: 100%; height: 26em; border: 1px solid #b1b4b6; resize: vertical; background: #fff; }
pre { white-space: pre-wrap; background: #f3f2f1; padding: .5em; }
.card { border: 1px solid #b1b4b6; border-left: 4px solid #6264a7; padding: .75em 1em; background: #fff; }
.card .title { font-weight: bold; font-size: 1.15em; } .card .attention { color: #d4351c; }
.card dl { display: grid; grid-template-columns: max-content auto; gap: .2em 1em; }
.card dt { font-weight: bold; } .card dd { margin: 0; }
.card .actions a { display: inline-block; margin: .5em 1em 0 0; padding: .3em .8em;
  border: 1px solid #6264a7; color: #1d70b8; }
.unsupported { color: #505a5f; font-style: italic; }
</style></head>
<body>
<h1>Safeguard Relay development sink</h1>
<p>{{ items|length }} message(s) received (emails on SMTP {{ smtp }}, Teams cards on /teams/&lt;name&gt;).
Newest first. <a href="/">Reload</a>{% if not refresh %} (or <a href="/?refresh=5">reload every 5 seconds</a>){% endif %};
JSON at <a href="/messages">/messages</a>.</p>
{% for m in items %}
<section id="m{{ m.id }}">
{% if m.kind == "email" %}
<h2>Email to {{ m.to }} <span class="meta">· {{ m.at }}</span></h2>
<p><strong>{{ m.subject }}</strong></p>
{% if m.html is not none %}
<iframe sandbox="{{ sandbox }}" loading="lazy" src="/messages/{{ m.id }}.html"
  title="The email as its recipient sees it: {{ m.subject }}"></iframe>
<details><summary>Text part</summary>{% if m.text != m.html %}<pre>{{ m.text }}</pre>{% else %}<p>(none: HTML only)</p>{% endif %}
<p><a href="/messages/{{ m.id }}.txt">Text part on its own</a> · <a href="/messages/{{ m.id }}.html" target="_blank"
  rel="noopener noreferrer">HTML part on its own</a></p></details>
{% else %}
<pre>{{ m.text }}</pre>
{% endif %}
{% else %}
<h2>Teams card to {{ m.to }} <span class="meta">· {{ m.at }}</span></h2>
{% for card in m.cards %}
<div class="card">
{% for b in card.blocks %}
{% if b.kind == "text" %}
<p class="{{ 'title' if b.title }}{{ ' attention' if b.attention }}">{{ b.text }}</p>
{% elif b.kind == "facts" %}
<dl>{% for title, value in b.facts %}<dt>{{ title }}</dt><dd>{{ value }}</dd>{% endfor %}</dl>
{% else %}
<p class="unsupported">[{{ b.text }}]</p>
{% endif %}
{% endfor %}
{% if card.actions %}<p class="actions">{% for a in card.actions %}
{% if a.url %}<a href="{{ a.url }}" target="_blank" rel="noopener noreferrer">{{ a.title }}</a>
{% else %}<span class="unsupported">[{{ a.type }}: {{ a.title }}]</span>{% endif %}
{% endfor %}</p>{% endif %}
</div>
{% else %}
<p class="unsupported">[no Adaptive Card in this post]</p>
{% endfor %}
<details><summary>JSON</summary><pre>{{ m.card|tojson(indent=2) }}</pre></details>
{% endif %}
</section>
{% endfor %}
</body></html>""")


def _part(msg: EmailMessage, subtype: str) -> str | None:
    part = msg.get_body(preferencelist=(subtype,))
    if part is None:
        return None
    try:
        return str(part.get_content())
    except (LookupError, UnicodeError, ValueError):  # an unknown charset or a broken encoding
        return part.get_payload(decode=True).decode("utf-8", "replace")


class MailHandler:
    def __init__(self, received: deque) -> None:
        self.received = received

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, _class=EmailMessage, policy=email.policy.default)
        text, html = _part(msg, "plain"), _part(msg, "html")
        self.received.appendleft({
            "id": str(next(_ids)), "kind": "email", "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "to": ", ".join(envelope.rcpt_tos), "subject": str(msg.get("Subject", "")),
            "text": text if text is not None else (html or ""), "html": html,
        })
        return "250 Message accepted for delivery"


def _str(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _link(url: Any) -> str | None:
    """Only an absolute http(s) URL becomes a link (never `javascript:` or `data:`)."""
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    return url.strip() if parts.scheme in ("http", "https") and parts.netloc else None


def _action(a: Any) -> dict[str, Any]:
    a = a if isinstance(a, dict) else {}
    kind, title = _str(a.get("type", "?")), _str(a.get("title", ""))
    return {"type": kind, "title": title or "Open",
            "url": _link(a.get("url")) if kind == "Action.OpenUrl" else None}


def render_card(card: Any) -> dict[str, Any]:
    """An Adaptive Card's JSON as a flat list of blocks (text, facts, unsupported) and its
    actions, for the page. Containers, columns and action sets are walked (to MAX_DEPTH);
    anything else is named, not drawn."""
    blocks: list[dict[str, Any]] = []
    actions: list[dict[str, Any]] = []
    titled = False

    def walk(elements: Any, depth: int) -> None:
        nonlocal titled
        if not isinstance(elements, list):
            return
        if depth > MAX_DEPTH:
            blocks.append({"kind": "unsupported", "text": "nested too deep"})
            return
        for el in elements:
            el = el if isinstance(el, dict) else {}
            kind = el.get("type")
            if kind == "TextBlock":
                title = not titled and el.get("weight") == "Bolder"
                titled = titled or title
                blocks.append({"kind": "text", "text": _str(el.get("text", "")), "title": title,
                               "attention": el.get("color") == "Attention"})
            elif kind == "FactSet":
                facts = [f if isinstance(f, dict) else {} for f in el.get("facts", []) or []]
                blocks.append({"kind": "facts",
                               "facts": [(_str(f.get("title", "")), _str(f.get("value", ""))) for f in facts]})
            elif kind == "Container":
                walk(el.get("items"), depth + 1)
            elif kind == "ColumnSet":
                for column in el.get("columns", []) or []:
                    walk(column.get("items") if isinstance(column, dict) else None, depth + 1)
            elif kind == "ActionSet":
                actions.extend(_action(a) for a in el.get("actions", []) or [])
            else:
                blocks.append({"kind": "unsupported", "text": f"{_str(kind)} not shown"})

    walk(card.get("body") if isinstance(card, dict) else None, 0)
    if isinstance(card, dict) and isinstance(card.get("actions"), list):
        actions.extend(_action(a) for a in card["actions"])
    return {"blocks": blocks, "actions": actions}


def cards(payload: Any) -> list[dict[str, Any]]:
    """The Adaptive Cards of a Teams Workflows post (`{"attachments": [{"content": card}]}`)."""
    atts = payload.get("attachments") if isinstance(payload, dict) else None
    return [render_card(a.get("content")) for a in atts or [] if isinstance(a, dict)
            and a.get("contentType") == "application/vnd.microsoft.card.adaptive"] if isinstance(atts, list) else []


def card_text(payload: Any) -> str:
    lines: list[str] = []
    for card in cards(payload):
        for b in card["blocks"]:
            lines += [b["text"]] if b["kind"] == "text" else [f"{t}: {v}" for t, v in b.get("facts", [])]
        lines += [f"[{a['title']}] {a['url'] or a['type']}" for a in card["actions"]]
    return "\n".join(lines)


async def teams_post(request: web.Request) -> web.Response:
    try:
        payload = json.loads(await request.read())
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        return web.json_response({"error": "invalid JSON"}, status=400)
    request.app[RECEIVED].appendleft({
        "id": str(next(_ids)), "kind": "teams", "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "to": request.match_info["name"], "subject": "", "text": card_text(payload), "card": payload,
    })
    return web.json_response({"status": "accepted"}, status=202)


async def index(request: web.Request) -> web.Response:
    try:
        refresh = min(max(int(request.query.get("refresh", "0")), 2), 600) if request.query.get("refresh") else 0
    except ValueError:
        refresh = 0
    items = [{**m, "cards": cards(m["card"])} if m["kind"] == "teams" else m for m in request.app[RECEIVED]]
    page = PAGE.render(items=items, smtp=request.app[SMTP_ADDRESS], sandbox=FRAME_SANDBOX, refresh=refresh)
    return web.Response(text=page, content_type="text/html",
                        headers={**HEADERS, "Content-Security-Policy": PAGE_CSP})


def _email(request: web.Request) -> dict[str, Any]:
    for m in request.app[RECEIVED]:
        if m["kind"] == "email" and m["id"] == request.match_info["id"]:
            return m
    raise web.HTTPNotFound(text="no such email (the sink keeps the last 500, in memory)")


_DOCTYPE = re.compile(r"^\s*<!doctype[^>]*>", re.IGNORECASE)


async def email_html(request: web.Request) -> web.Response:
    """The HTML part as sent, behind a sandboxing CSP, with its links opening a new tab."""
    html = _email(request)["html"]
    if html is None:
        raise web.HTTPNotFound(text="this email has no HTML part")
    doctype = m.group(0) if (m := _DOCTYPE.match(html)) else ""
    return web.Response(text=f'{doctype}<base target="_blank">{html[len(doctype):]}', content_type="text/html",
                        headers={**HEADERS, "Content-Security-Policy": EMAIL_CSP})


async def email_text(request: web.Request) -> web.Response:
    return web.Response(text=_email(request)["text"], content_type="text/plain",
                        headers={**HEADERS, "Content-Security-Policy": "default-src 'none'; sandbox"})


async def messages(request: web.Request) -> web.Response:
    return web.json_response(list(request.app[RECEIVED]))


def sink_app(received: deque, smtp: str) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[RECEIVED] = received
    app[SMTP_ADDRESS] = smtp
    app.router.add_get("/", index)
    app.router.add_get("/messages", messages)
    app.router.add_get("/messages/{id:[0-9]+}.html", email_html)
    app.router.add_get("/messages/{id:[0-9]+}.txt", email_text)
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
