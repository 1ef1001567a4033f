"""Email over SMTP with aiosmtplib.

`SAFEGUARD_SMTP_URL`: `smtp://[user:pass@]host[:port]` (STARTTLS required: a relay that
does not offer it gets nothing, not even the login; only to a loopback host — localhost,
127.0.0.0/8, ::1, the local mail sink — is STARTTLS used merely when offered) or
`smtps://[user:pass@]host[:port]` (implicit TLS, port 465 by default); optional
`?from=address` sets the sender. Classification: 2xx delivered; 4xx, connection
refused/lost, timeouts and a relay without STARTTLS (`smtp_tls_unavailable`: an attacker
on the path may have stripped it, as a failed TLS handshake, and nothing was sent, so
the retry policy applies, and its end is a permanent failure with an ops alert)
temporary; 5xx (e.g. 550) permanent.

Connections are kept and reused (at most `pool_size` idle, each for at most `idle_s`):
one TLS handshake and login per connection, not per email. Only a connection whose last
message went through is kept; a kept one the server has closed meanwhile is replaced once,
at once, before the send counts as failed (if the server had in fact taken the message
before it went away, that is a duplicate with the same Message-ID: the at-least-once window).
"""
from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from services.notifier.adapters.channels.base import Paced, is_loopback_host
from services.notifier.adapters.channels.mime import HeaderInjection, email_bytes
from services.notifier.adapters.channels.ratelimit import RateLimiter
from services.notifier.adapters.rendering import Rendered
from services.notifier.domain.lifecycle import SendResult

DEFAULT_FROM = "safeguard-relay@localhost"


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    implicit_tls: bool
    username: str | None
    password: str | None
    sender: str

    @property
    def starttls_required(self) -> bool:
        """smtp:// must upgrade with STARTTLS before anything is sent, except to loopback."""
        return not self.implicit_tls and not is_loopback_host(self.host)

    @classmethod
    def from_url(cls, url: str) -> "SmtpConfig":
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("SAFEGUARD_SMTP_URL must be smtp://host[:port] or smtps://host[:port]")
        tls = parts.scheme == "smtps"
        sender = parse_qs(parts.query).get("from", [DEFAULT_FROM])[0]
        return cls(parts.hostname, parts.port or (465 if tls else 25), tls,
                   unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None, sender)


class StartTlsUnavailable(Exception):
    """The relay did not offer STARTTLS where it is required; nothing was sent to it."""


def _code_result(code: int) -> SendResult:
    if 400 <= code < 500:
        return SendResult.temporary(f"smtp_{code}")
    if code >= 500:
        return SendResult.permanent(f"smtp_{code}")
    return SendResult.temporary("smtp_unexpected")


class EmailChannel(Paced):
    name = "email"

    def __init__(self, smtp_url: str, *, rate_per_s: float = 20.0, timeout_s: float = 15.0,
                 tls_context: ssl.SSLContext | None = None, pool_size: int = 4, idle_s: float = 30.0) -> None:
        self.config = SmtpConfig.from_url(smtp_url)
        self.timeout_s, self.tls_context = timeout_s, tls_context
        self.limiter = RateLimiter(rate_per_s)
        self.pool_size, self.idle_s = pool_size, idle_s
        self._idle: list[tuple[float, aiosmtplib.SMTP]] = []  # (returned at, connection), newest last

    def build(self, rendered: Rendered, to: str, message_id: str) -> bytes:
        """The message's bytes (mime.py); the Message-ID is stable, so a receiver can drop a duplicate."""
        return email_bytes(sender=self.config.sender, to=to, subject=rendered.subject, text=rendered.text,
                           html=rendered.html, message_id=message_id)

    def pace_key(self, to: str) -> str:
        return "smtp"  # one pace to the relay, whoever the email is for

    async def _connect(self) -> aiosmtplib.SMTP:
        """Connect, upgrade with STARTTLS (required unless loopback), and only then log in."""
        c = self.config
        client = aiosmtplib.SMTP(hostname=c.host, port=c.port, use_tls=c.implicit_tls, start_tls=False,
                                 timeout=self.timeout_s, tls_context=self.tls_context)
        await client.connect()
        try:
            if not c.implicit_tls:
                await client.ehlo()
                if client.supports_extension("starttls"):
                    await client.starttls()
                elif c.starttls_required:
                    raise StartTlsUnavailable()
            if c.username is not None:
                await client.login(c.username, c.password or "")
        except BaseException:
            client.close()
            raise
        return client

    def _take(self) -> aiosmtplib.SMTP | None:
        """The newest kept connection that is still fresh (older ones are closed)."""
        now = time.monotonic()
        while self._idle:
            since, client = self._idle.pop()
            if now - since <= self.idle_s and client.is_connected:
                return client
            client.close()
        return None

    def _keep(self, client: aiosmtplib.SMTP) -> None:
        if len(self._idle) < self.pool_size and client.is_connected:
            self._idle.append((time.monotonic(), client))
        else:
            client.close()

    async def _send(self, to: str, message: bytes) -> dict:
        kept = self._take()
        if kept is not None:
            try:
                errors, _ = await kept.sendmail(self.config.sender, [to], message)
                self._keep(kept)
                return errors
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                kept.close()  # the server dropped it while it was idle: try once on a new one
            except aiosmtplib.SMTPResponseException as exc:
                kept.close()
                if exc.code != 421:  # 421: the server is closing this (idle) connection
                    raise
            except BaseException:
                kept.close()
                raise
        client = await self._connect()
        try:
            errors, _ = await client.sendmail(self.config.sender, [to], message)
        except BaseException:
            client.close()
            raise
        self._keep(client)
        return errors

    async def send(self, rendered: Rendered, to: str, message_id: str) -> SendResult:
        await self.wait_turn(to)
        try:
            errors = await self._send(to, self.build(rendered, to, message_id))
        except HeaderInjection:
            return SendResult.permanent("invalid_header")
        except StartTlsUnavailable:
            return SendResult.temporary("smtp_tls_unavailable")
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients] or [550]
            return _code_result(max(codes) if all(cd >= 500 for cd in codes) else min(codes))
        except aiosmtplib.SMTPResponseException as exc:  # 4xx/5xx on MAIL, DATA, AUTH...
            return _code_result(exc.code)
        except aiosmtplib.SMTPTimeoutError:
            return SendResult.temporary("smtp_timeout")
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, ConnectionError, OSError,
                asyncio.TimeoutError):
            return SendResult.temporary("smtp_unavailable")
        except aiosmtplib.SMTPException:
            return SendResult.temporary("smtp_error")
        if errors:  # some recipient refused without an exception
            return _code_result(max(r.code for r in errors.values()))
        return SendResult.delivered()

    async def close(self) -> None:
        while self._idle:
            _, client = self._idle.pop()
            try:
                await asyncio.wait_for(client.quit(), 2)
            except Exception:  # already gone: nothing to say goodbye to
                client.close()
