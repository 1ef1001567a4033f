"""Where the services may send things: https anywhere, plain http only to this machine.

One rule for every outbound URL the configuration names (GOV.UK Notify, status-callback
subscriptions) and the SMTP relay's TLS requirement: the host is parsed and compared
exactly, never by prefix, so `http://localhost.attacker.example` and
`http://127.0.0.1@attacker.example` are not loopback.
"""
from __future__ import annotations

import ipaddress
from urllib.parse import unquote, urlsplit


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


def amqp_nodes(value: str, variable: str = "SAFEGUARD_AMQP_URL") -> tuple[str, ...]:
    """The broker nodes a comma-separated `amqp(s)://` list names, in order.

    Every entry needs a host and a valid port, and all name the same vhost (a cluster's
    nodes serve the same one). The error names `variable` and the entry by position and
    host:port, never its user or password. A comma inside a password is written `%2C`.
    """
    entries = [e.strip() for e in value.split(",")]
    vhosts: set[str] = set()
    for n, entry in enumerate(entries, 1):
        where = f"{variable}: entry {n} of {len(entries)}"
        if not entry:
            raise ValueError(f"{where}: empty (the value is a comma-separated list of amqp:// URLs)")
        parts = urlsplit(entry)
        if parts.scheme not in ("amqp", "amqps"):
            raise ValueError(f"{where}: must start with amqp:// or amqps://")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ValueError(f"{where}: not a valid port") from None
        if not parts.hostname:
            raise ValueError(f"{where}: no host")
        vhosts.add(unquote(parts.path[1:]) or "/")
        if len(vhosts) > 1:
            raise ValueError(f"{where} ({node_label(entry)}): names another vhost than the entries before it")
    return tuple(entries)


def node_label(url: str) -> str:
    """`host:port` of an amqp(s):// URL — what logs and metrics may show of a node."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    host = f"[{host}]" if ":" in host else host
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port or (5671 if parts.scheme == 'amqps' else 5672)}"
