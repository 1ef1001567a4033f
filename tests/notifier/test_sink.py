"""`safeguard sink`: takes mail over SMTP and Teams posts over HTTP, and lists them."""
from __future__ import annotations

import asyncio
import contextlib
from email.message import EmailMessage

import aiohttp
import aiosmtplib

from safeguard.sink import run_sink
from tests.support.processes import free_port


async def test_sink_accepts_mail_and_cards_and_lists_them_escaped():
    smtp_port, http_port = free_port(), free_port()
    task = asyncio.create_task(run_sink("127.0.0.1", smtp_port, http_port))
    try:
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(10):
                while True:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.get(f"http://127.0.0.1:{http_port}/messages") as resp:
                            if resp.status == 200:
                                break
                    await asyncio.sleep(0.05)
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = "relay@x.example", "mash@x.example", "Referral <SR-1>"
            msg.set_content("Acknowledge by Tuesday")
            await aiosmtplib.send(msg, hostname="127.0.0.1", port=smtp_port)
            card = {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                    "content": {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": "Hi"}]}}]}
            async with session.post(f"http://127.0.0.1:{http_port}/teams/mash-team", json=card) as resp:
                assert resp.status == 202
            async with session.post(f"http://127.0.0.1:{http_port}/teams/x", data=b"not json") as resp:
                assert resp.status == 400
            async with session.get(f"http://127.0.0.1:{http_port}/messages") as resp:
                items = await resp.json()
            assert [(i["kind"], i["to"]) for i in items] == [("teams", "mash-team"), ("email", "mash@x.example")]
            async with session.get(f"http://127.0.0.1:{http_port}/") as resp:
                page = await resp.text()
            assert "Referral &lt;SR-1&gt;" in page and "Acknowledge by Tuesday" in page and "<SR-1>" not in page
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
