"""Microsoft Teams through a Workflows webhook: POST the Adaptive Card payload.

At most 4 requests per second per webhook; a 429 holds that webhook back for its
`Retry-After`. Classification: 2xx delivered; 429, 408, 5xx, connection errors and
timeouts temporary (429 with its Retry-After); 400, 413 and other 4xx permanent; a
webhook that is not https (http only to a loopback host, for the dev sink) permanent
`invalid_webhook_url`.
"""
from __future__ import annotations

import asyncio
import ipaddress
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp

from services.notifier.adapters.channels.base import HttpSession, Paced
from services.notifier.adapters.channels.ratelimit import RateLimiter
from services.notifier.adapters.rendering import Rendered
from services.notifier.domain.lifecycle import SendResult
from services.notifier.domain.retry import parse_retry_after


def valid_webhook(url: str) -> bool:
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return False
    if not host or parts.username or parts.password:
        return False
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TeamsChannel(Paced, HttpSession):
    name = "teams"

    def __init__(self, *, rate_per_s: float = 4.0, timeout_s: float = 15.0) -> None:
        super().__init__(timeout_s)
        self.limiter = RateLimiter(rate_per_s)  # paced per webhook URL

    async def send(self, rendered: Rendered, url: str, message_id: str) -> SendResult:
        if not valid_webhook(url):
            return SendResult.permanent("invalid_webhook_url")
        await self.wait_turn(url)
        try:
            async with self._client().post(
                url, data=rendered.card_json.encode(), allow_redirects=False,
                headers={"Content-Type": "application/json", "X-Safeguard-Message-Id": message_id},
            ) as resp:
                status, retry_after = resp.status, resp.headers.get("Retry-After")
                await resp.read()
        except (asyncio.TimeoutError, TimeoutError):
            return SendResult.temporary("timeout")
        except aiohttp.InvalidURL:
            return SendResult.permanent("invalid_webhook_url")
        except (aiohttp.ClientError, OSError):
            return SendResult.temporary("connection_error")
        if 200 <= status < 300:
            return SendResult.delivered()
        if status == 429:
            seconds = parse_retry_after(retry_after, datetime.now(UTC))
            if seconds:
                self.limiter.pause(url, seconds)
            return SendResult.temporary("http_429", seconds)
        if status in (408,) or status >= 500:
            return SendResult.temporary(f"http_{status}", parse_retry_after(retry_after, datetime.now(UTC)))
        return SendResult.permanent(f"http_{status}")
