"""RabbitMQ definitions (the JSON `rabbitmqctl import_definitions` and `load_definitions`
read) for one vhost and its least-privilege users (permissions.py).

Used by the dev set-up (safeguard/devbroker.py), by `safeguard bus users` for the compose
stack (deploy/compose/init-secrets.sh), and by the tests. Passwords are stored only as
RabbitMQ's salted SHA-256 hash.
"""
from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

from shared.bus.permissions import ADMIN, Permission, client_permissions, permissions_for

SERVICES = ("intake", "escalation", "notifier")
HASHING = "rabbit_password_hashing_sha256"


@dataclass(frozen=True)
class Account:
    """A broker user: a service, a client (by id) or the administrator."""
    name: str  # the service name or client id
    username: str
    permission: Permission
    tags: tuple[str, ...] = ()


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt + sha256(salt + password))."""
    salt = os.urandom(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def new_password() -> str:
    return secrets.token_urlsafe(24)


def accounts(prefix: str, clients: Iterable[tuple[str, str, str | None]] = (), *,
             admin: str | None = None) -> list[Account]:
    """Every broker user: the three services, each client on the AMQP path (id, role,
    organisation) and, if named, an administrator (full permissions, `administrator` tag)."""
    out = [Account(s, f"{prefix}{s}", permissions_for(s)) for s in SERVICES]
    for client_id, role, org in clients:
        perm = client_permissions(role, org)
        if perm is not None:
            out.append(Account(client_id, f"{prefix}{client_id}", perm))
    if admin:
        out.append(Account("admin", admin, ADMIN, ("administrator",)))
    return out


def render(vhost: str, users: Iterable[Account], passwords: Mapping[str, str], *,
           also_permit: Iterable[str] = ()) -> dict:
    """Definitions creating `vhost`, each user with its password and permissions on it, and
    full permissions there for the existing users `also_permit` (the dev administrator)."""
    users = list(users)
    return {
        "vhosts": [{"name": vhost}],
        "users": [{"name": u.username, "password_hash": password_hash(passwords[u.name]),
                   "hashing_algorithm": HASHING, "tags": list(u.tags)} for u in users],
        "permissions": [{"user": u.username, "vhost": vhost, **u.permission.as_dict()} for u in users]
        + [{"user": name, "vhost": vhost, **ADMIN.as_dict()} for name in also_permit],
    }


def url_for(base_url: str, username: str, password: str, vhost: str) -> str:
    """`base_url` (its scheme, host and port) with this user, password and vhost."""
    parts = urlsplit(base_url)
    host = parts.hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, "/" + quote(vhost, safe=""), parts.query, ""))


def vhost_of(url: str) -> str:
    from urllib.parse import unquote
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def topology(vhost: str, forces: Iterable[str], parking_ttl_s: int) -> dict:
    """The whole topology as definitions: what `declare_topology` declares (same names,
    arguments and bindings), for a broker that loads it at boot (the compose stack)."""
    from shared.bus import topology as t

    def queue(name: str, arguments: dict) -> dict:
        return {"name": name, "vhost": vhost, "durable": True, "auto_delete": False, "arguments": arguments}

    def binding(source: str, queue_name: str, key: str) -> dict:
        return {"source": source, "vhost": vhost, "destination": queue_name, "destination_type": "queue",
                "routing_key": key, "arguments": {}}

    exchanges = [{"name": n, "vhost": vhost, "type": k.value, "durable": True, "auto_delete": False,
                  "internal": False, "arguments": {}} for n, k in t.EXCHANGES.items()]
    queues, bindings = [], []
    for spec in t.all_queues(forces):
        queues += [queue(spec.name, t.queue_arguments(spec)),
                   queue(spec.parking_queue, t.parking_queue_arguments(parking_ttl_s))]
        bindings += [binding(spec.exchange, spec.name, k) for k in spec.routing_keys]
        bindings.append(binding(t.DEAD_LETTER, spec.parking_queue, spec.name))
    queues += [queue(t.retry_queue_name(s), t.retry_queue_arguments(s)) for s in t.RETRY_DELAYS_S]
    queues.append(queue(t.AUDIT_CHECKPOINTS, t.audit_stream_arguments()))
    return {"exchanges": exchanges, "queues": queues, "bindings": bindings}
