"""Status callbacks as Standard Webhooks requests (DESIGN §3.6), aiohttp client.

Each `[[subscriptions]]` entry is an `Endpoint`: its URL (https; http only to this machine,
checked with the config) and its signing secret, read at start from the environment
variable `secret_env` names (`whsec_` + base64 of 24 to 64 bytes; missing or malformed stops
the notifier with a message naming the key). Every attempt POSTs the JSON body with
`webhook-id` (stable per subscription and event: a receiver drops a repeat by it),
`webhook-timestamp` (this attempt, seconds) and `webhook-signature` (`standardwebhooks`).
TLS trusts the system CA store (`SSL_CERT_FILE` names another bundle, e.g. one holding a
council's internal CA). Redirects are not followed; 15 s per request, 5 s to connect.
Classification: 2xx delivered; 410 Gone permanent at once (`http_410`); 429 (pausing that
subscription for its Retry-After), any other status, timeouts, TLS and connection errors
temporary (retried with back-off, honouring Retry-After, until the retry policy gives up).
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
from standardwebhooks import Webhook

from services.notifier.adapters.channels.base import HttpSession, Paced
from services.notifier.adapters.channels.ratelimit import RateLimiter
from services.notifier.domain.callbacks import body
from services.notifier.domain.lifecycle import SendResult
from services.notifier.domain.retry import parse_retry_after
from shared.config import ConfigError, Settings
from shared.messages import StatusCallback

PREFIX = "whsec_"


@dataclass(frozen=True)
class Endpoint:
    subscription: str
    url: str = field(repr=False)
    signer: Webhook = field(repr=False)


def parse_secret(secret: str) -> Webhook:
    """A Standard Webhooks secret, strictly: `whsec_` + base64 of 24 to 64 random bytes."""
    if not secret.startswith(PREFIX):
        raise ValueError("no whsec_ prefix")
    try:
        key = base64.b64decode(secret[len(PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("must be 24 to 64 bytes")
    return Webhook(key)


def endpoints_from(settings: Settings, env: Mapping[str, str]) -> dict[str, Endpoint]:
    out: dict[str, Endpoint] = {}
    for i, sub in enumerate(settings.file.subscriptions):
        where = f"{settings.config_path}: subscriptions[{i}].secret_env"
        secret = env.get(sub.secret_env, "").strip()
        if not secret:
            raise ConfigError(f"{where}: environment variable {sub.secret_env} is not set "
                              f"(subscription {sub.id}'s signing secret, whsec_…)")
        try:
            out[sub.id] = Endpoint(sub.id, sub.url, parse_secret(secret))
        except ValueError as exc:
            raise ConfigError(f"{where}: {sub.secret_env} is not a Standard Webhooks secret "
                              f"(whsec_ + base64 of 24-64 bytes): {exc}") from None
    return out


def signed_headers(endpoint: Endpoint, message_id: str, payload: bytes, now: datetime) -> dict[str, str]:
    return {"Content-Type": "application/json", "User-Agent": "safeguard-relay", "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": endpoint.signer.sign(message_id, now, payload)}


class WebhookChannel(Paced, HttpSession):
    name = "webhook"

    def __init__(self, endpoints: Mapping[str, Endpoint], *, rate_per_s: float = 10.0, timeout_s: float = 15.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(timeout_s, ssl_context or ssl.create_default_context())
        # A receiver that does not answer at all gives up its consumer slot sooner.
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(5.0, timeout_s))
        self.endpoints = dict(endpoints)
        self.limiter = RateLimiter(rate_per_s)  # paced per subscription

    async def send(self, callback: StatusCallback, subscription: str, message_id: str) -> SendResult:  # type: ignore[override]
        endpoint = self.endpoints.get(subscription)
        if endpoint is None:
            return SendResult.technical("subscription_gone")  # removed from the config meanwhile
        result, _ = await self.post(endpoint, message_id, body(callback))
        return result

    async def post(self, endpoint: Endpoint, message_id: str, payload: bytes) -> tuple[SendResult, int | None]:
        """One signed POST; the result and the HTTP status (None when there was no answer)."""
        await self.wait_turn(endpoint.subscription)
        headers = signed_headers(endpoint, message_id, payload, datetime.now(UTC))
        try:
            async with self._client().post(endpoint.url, data=payload, headers=headers,
                                           allow_redirects=False) as resp:
                status, retry_after = resp.status, resp.headers.get("Retry-After")
        except (asyncio.TimeoutError, TimeoutError):
            return SendResult.temporary("timeout"), None
        except aiohttp.InvalidURL:
            return SendResult.permanent("invalid_url"), None
        except aiohttp.ClientSSLError:
            return SendResult.temporary("tls_error"), None
        except (aiohttp.ClientError, OSError):
            return SendResult.temporary("connection_error"), None
        if 200 <= status < 300:
            return SendResult.delivered(), status
        if status == 410:
            return SendResult.permanent("http_410"), status
        seconds = parse_retry_after(retry_after, datetime.now(UTC))
        if status == 429 and seconds:
            self.limiter.pause(endpoint.subscription, seconds)
        return SendResult.temporary(f"http_{status}", seconds), status
