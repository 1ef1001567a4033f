"""Where the services may send things: https anywhere, plain http only to this machine.

One rule for every outbound URL the configuration names (GOV.UK Notify, status-callback
subscriptions) and the SMTP relay's TLS requirement: the host is parsed and compared
exactly, never by prefix, so `http://localhost.attacker.example` and
`http://127.0.0.1@attacker.example` are not loopback.
"""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback_host(host: str | None) -> bool:
    """This machine only: `localhost`, 127.0.0.0/8 or ::1 — compared exactly, never by prefix
    (`localhost.attacker.example` is not loopback). `host` as `urlsplit(...).hostname` gives it."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def https_or_loopback(url: str) -> bool:
    """https to any host, or http to a loopback host; no user:password part, a valid port."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return False
    if not parts.hostname or parts.username is not None or parts.password is not None:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname))
