"""What the channels share: the `Channel` interface delivery calls, pacing through one
`RateLimiter` (a pace per `pace_key`), and for the HTTP channels one aiohttp session,
opened on first use and closed at stop."""
from __future__ import annotations

import ssl
from typing import Protocol

import aiohttp

from services.notifier.adapters.channels.ratelimit import RateLimiter
from services.notifier.adapters.rendering import Rendered
from services.notifier.domain.lifecycle import SendResult
from shared.messages import StatusCallback
from shared.urls import is_loopback_host  # noqa: F401  (the channels' import of it)


class Channel(Protocol):
    """`send` takes what the channel delivers — a rendered message, or for the webhook
    channel a status callback — its address (for webhooks: the subscription id) and the
    delivery's stable message id."""
    name: str

    async def send(self, rendered: Rendered | StatusCallback, address: str, message_id: str) -> SendResult: ...

    def backlog_s(self, address: str) -> float: ...

    def defer(self, address: str) -> float: ...

    async def close(self) -> None: ...


class Paced:
    """`limiter` paces the sends; `pace_key(address)` says which sends share a pace (by
    default each address has its own: a Teams webhook)."""

    limiter: RateLimiter

    def pace_key(self, address: str) -> str:
        return address

    async def wait_turn(self, address: str) -> None:
        await self.limiter.acquire(self.pace_key(address))

    def backlog_s(self, address: str) -> float:
        """How long a send to `address` asked for now would wait for its pacing slot."""
        return self.limiter.backlog_s(self.pace_key(address))

    def defer(self, address: str) -> float:
        """A place in the line of deferred sends; seconds from now (see RateLimiter.defer)."""
        return self.limiter.defer(self.pace_key(address))


class HttpSession:
    """One aiohttp session per channel (`ssl_context`: the CAs it trusts, else aiohttp's default)."""

    def __init__(self, timeout_s: float, ssl_context: ssl.SSLContext | None = None) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.ssl_context = ssl_context
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self.ssl_context) if self.ssl_context is not None else None
            self._session = aiohttp.ClientSession(timeout=self.timeout, raise_for_status=False, connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
