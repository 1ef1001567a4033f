"""SMS through GOV.UK Notify's REST API (`POST /v2/notifications/sms`), aiohttp client.

Enabled when `SAFEGUARD_NOTIFY_API_KEY` (a Notify API key: `name-<service id>-<secret>`)
and `SAFEGUARD_NOTIFY_SMS_TEMPLATE_ID` (a Notify template whose body is `((body))`) are
set; `SAFEGUARD_NOTIFY_URL` overrides the API address. Each request carries a fresh
HS256 JWT (`iss` = service id, `iat` = now) as Notify requires. The SMS body is the
message's subject line: reference, times and the action — never content.

Classification: 201 delivered (accepted by Notify); 429, 408, 5xx, connection errors and
timeouts temporary; 400 (e.g. a bad phone number) and other 4xx permanent; 401/403 (the
key is wrong or revoked) technical — retrying cannot help until an operator fixes it.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp

from services.notifier.adapters.channels.base import HttpSession, Paced
from services.notifier.adapters.channels.ratelimit import RateLimiter
from services.notifier.adapters.rendering import Rendered
from services.notifier.domain.lifecycle import SendResult
from services.notifier.domain.retry import parse_retry_after
from shared.config import ConfigError
from shared.urls import https_or_loopback

KEY_ENV, TEMPLATE_ENV, URL_ENV = "SAFEGUARD_NOTIFY_API_KEY", "SAFEGUARD_NOTIFY_SMS_TEMPLATE_ID", "SAFEGUARD_NOTIFY_URL"
DEFAULT_URL = "https://api.notifications.service.gov.uk"
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_KEY = re.compile(rf"^.+-({_UUID})-({_UUID})$")


@dataclass(frozen=True)
class NotifyConfig:
    service_id: str
    secret: str
    template_id: str
    base_url: str = DEFAULT_URL

    def __repr__(self) -> str:  # never print the secret
        return f"NotifyConfig(service_id={self.service_id!r}, template_id={self.template_id!r})"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> NotifyConfig | None:
        key, template = env.get(KEY_ENV, "").strip(), env.get(TEMPLATE_ENV, "").strip()
        if not key and not template:
            return None
        match = _KEY.match(key)
        if match is None:
            raise ConfigError(f"environment: {KEY_ENV}: expected a GOV.UK Notify API key (name-serviceid-secret)")
        if not re.fullmatch(_UUID, template):
            raise ConfigError(f"environment: {TEMPLATE_ENV}: expected the id (a UUID) of a Notify SMS template")
        url = env.get(URL_ENV, DEFAULT_URL).rstrip("/")
        if not _https_or_loopback(url):
            raise ConfigError(f"environment: {URL_ENV}: must be https (http only to this machine)")
        return cls(match.group(1), match.group(2), template, url)


_https_or_loopback = https_or_loopback  # the one rule (shared.urls)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def notify_jwt(service_id: str, secret: str, now: float | None = None) -> str:
    """The bearer token Notify expects: HS256 over `{"iss": service id, "iat": now}`."""
    header = _b64(json.dumps({"typ": "JWT", "alg": "HS256"}, separators=(",", ":")).encode())
    claims = _b64(json.dumps({"iss": service_id, "iat": int(now if now is not None else time.time())},
                             separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{_b64(signature)}"


class SmsChannel(Paced, HttpSession):
    name = "sms"

    def __init__(self, config: NotifyConfig, *, rate_per_s: float = 10.0, timeout_s: float = 15.0) -> None:
        super().__init__(timeout_s)
        self.config = config
        self.limiter = RateLimiter(rate_per_s)  # Notify allows 3,000 a minute per key

    def pace_key(self, phone: str) -> str:
        return self.config.service_id  # one pace per Notify key, whoever the text is for

    async def send(self, rendered: Rendered, phone: str, message_id: str) -> SendResult:
        cfg = self.config
        body = {"phone_number": phone, "template_id": cfg.template_id,
                "personalisation": {"body": rendered.subject}, "reference": message_id}
        await self.wait_turn(phone)
        try:
            async with self._client().post(
                f"{cfg.base_url}/v2/notifications/sms", json=body, allow_redirects=False,
                headers={"Authorization": f"Bearer {notify_jwt(cfg.service_id, cfg.secret)}"},
            ) as resp:
                status, retry_after = resp.status, resp.headers.get("Retry-After")
                await resp.read()
        except (asyncio.TimeoutError, TimeoutError):
            return SendResult.temporary("timeout")
        except (aiohttp.ClientError, OSError):
            return SendResult.temporary("connection_error")
        if status in (200, 201):
            return SendResult.delivered()
        if status in (429, 408) or status >= 500:
            return SendResult.temporary(f"notify_{status}", parse_retry_after(retry_after, datetime.now(UTC)))
        if status in (401, 403):
            return SendResult.technical(f"notify_{status}")
        return SendResult.permanent(f"notify_{status}")
