"""`safeguard bus declare|users|permissions`: the broker set-up an administrator runs (DESIGN §5).

- `declare`: every exchange, queue, binding and the audit stream, with SAFEGUARD_AMQP_URL
  (a user with full permissions on the vhost). Services with their own least-privilege
  user declare only the queues they consume, so this runs before them: `safeguard up`
  does it in development, a one-shot container in compose, a Job in Kubernetes.
- `users --dir DIR`: RabbitMQ definitions (the vhost, an administrator, one user per
  service and per AMQP client of the config, their permissions, and the whole topology as
  `declare` makes it) for the broker to load at boot, and one env file per user with its URL; passwords are generated once and kept in
  DIR/broker-users.json (0600). deploy/compose/init-secrets.sh runs it.
- `permissions`: the configure / write / read expressions of every user, as a table.
"""
from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from shared.bus import definitions as d
from shared.config import load_settings

ADMIN_USER = "safeguard-admin"


async def declare_all(url: str, forces: list[str], parking_ttl_s: int) -> None:
    from shared import bus

    connection = await bus.connect(url, name="safeguard-bus-declare", timeout=10)
    try:
        async with connection.channel() as channel:
            await bus.declare_topology(channel, forces, parking_ttl_s=parking_ttl_s)
    finally:
        await connection.close()


def _clients() -> list[tuple[str, str, str | None]]:
    return [(c.id, c.role, c.organisation) for c in load_settings().file.clients]



def _cmd_declare(_args: argparse.Namespace) -> int:
    settings = load_settings()
    forces = [f.slug for f in settings.file.forces]
    asyncio.run(declare_all(settings.amqp_url, forces, settings.file.system.parking_ttl_days * 86400))
    print(f"declared the topology ({len(forces)} control-room queues) on vhost {d.vhost_of(settings.amqp_url)}")
    return 0


def _write_private(path: Path, text: str, mode: int = 0o600) -> None:
    path.touch(mode=mode)
    path.chmod(mode)
    path.write_text(text, encoding="utf-8")


def _cmd_users(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    users = d.accounts(args.prefix, _clients(), admin=ADMIN_USER)
    store = out / "broker-users.json"
    passwords = json.loads(store.read_text()) if store.exists() else {}
    for u in users:
        passwords.setdefault(u.name, d.new_password())
    _write_private(store, json.dumps(passwords, indent=2) + "\n")
    base = f"amqp://{args.host}:5672/"
    settings = load_settings()
    defs = d.render(args.vhost, users, passwords) | d.topology(
        args.vhost, [f.slug for f in settings.file.forces], settings.file.system.parking_ttl_days * 86400)
    _write_private(out / "rabbitmq-definitions.json", json.dumps(defs, indent=2) + "\n", args.mode)
    for u in users:
        url = d.url_for(base, u.username, passwords[u.name], args.vhost)
        if u.name == "admin":  # operator tools and `safeguard bus declare`
            _write_private(out / "amqp-admin.env", f"SAFEGUARD_AMQP_URL={url}\n", args.mode)
        elif u.name in d.SERVICES:
            _write_private(out / f"amqp-{u.name}.env", f"SAFEGUARD_AMQP_URL_{u.name.upper()}={url}\n", args.mode)
        else:  # a client system's own URL, to hand over to it
            _write_private(out / f"amqp-client-{u.name}.url", url + "\n")
    print(f"wrote {out}/rabbitmq-definitions.json and {len(users)} amqp-*.env files ({', '.join(u.username for u in users)})")
    return 0


def _cmd_permissions(_args: argparse.Namespace) -> int:
    users = d.accounts("", _clients())
    width = max(len(u.username) for u in users)
    print(f"{'user':<{width}}  configure / write / read")
    for u in users:
        p = u.permission
        print(f"{u.username:<{width}}  {p.configure}\n{'':<{width}}  {p.write}\n{'':<{width}}  {p.read}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    bus = sub.add_parser("bus", help="broker set-up: topology and least-privilege users").add_subparsers(
        dest="bus_command", required=True)
    bus.add_parser("declare", help="declare every exchange, queue and binding (administrator URL)").set_defaults(
        func=_cmd_declare)
    users = bus.add_parser("users", help="write RabbitMQ definitions and per-user URL files")
    users.add_argument("--dir", required=True)
    users.add_argument("--vhost", default="/")
    users.add_argument("--host", default="rabbitmq")
    users.add_argument("--prefix", default="safeguard-")
    users.add_argument("--mode", type=lambda s: int(s, 8), default=0o600, help="file mode (octal) of what it writes")
    users.set_defaults(func=_cmd_users)
    bus.add_parser("permissions", help="print each user's configure / write / read expressions").set_defaults(
        func=_cmd_permissions)
