"""The development broker set-up (`safeguard keys init`, `safeguard up --init`; DESIGN §5,
issue 19 "first run").

Each data directory gets a vhost of its own, `safeguard-dev-<hash8>` (from the directory's
resolved path), so leftovers of another set-up never show as parked messages, and
least-privilege users on it: one per service and per AMQP client of the dev config
(`<vhost>-<name>`), random passwords kept in `DIR/broker.json` (mode 0600). The vhost,
users and permissions are made in one `rabbitmqctl import_definitions` (it must run on
this machine as a user allowed to: the broker's cookie); the user of SAFEGUARD_AMQP_URL
gets full permissions there and declares the whole topology (`safeguard bus declare`).
Without rabbitmqctl, or with a broker elsewhere, it says so and everything runs with the
one SAFEGUARD_AMQP_URL as before.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

from shared.bus import definitions as d

STATE = "broker.json"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class NoBrokerSetUp(Exception):
    """The dev users cannot be made here; the message says why (printed as it is)."""


def dev_vhost(data_dir: Path) -> str:
    return "safeguard-dev-" + hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:8]


def _state(data_dir: Path, vhost: str, names: list[str]) -> dict:
    path = data_dir / STATE
    state = json.loads(path.read_text()) if path.exists() else {}
    if state.get("vhost") != vhost:
        state = {"vhost": vhost, "passwords": {}}
    for name in names:
        state["passwords"].setdefault(name, d.new_password())
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(json.dumps(state, indent=2) + "\n")
    return state


def _rabbitmqctl(*args: str) -> str:
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        raise NoBrokerSetUp("no rabbitmqctl on this machine")
    proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise NoBrokerSetUp(f"rabbitmqctl {args[0]} failed: {(proc.stderr or proc.stdout).strip()[:200]}")
    return proc.stdout


def ensure(data_dir: Path, admin_url: str, clients: list[tuple[str, str, str | None]]) -> dict[str, str]:
    """Make (or update) the dev vhost and users; return the environment the services run
    with: SAFEGUARD_AMQP_URL (the administrator, on the dev vhost) and one
    SAFEGUARD_AMQP_URL_<SERVICE> each. Raises NoBrokerSetUp when it cannot."""
    parts = urlsplit(admin_url)
    if parts.hostname not in LOOPBACK:
        raise NoBrokerSetUp(f"the broker is not on this machine ({parts.hostname})")
    vhost = dev_vhost(data_dir)
    users = d.accounts(f"{vhost}-", clients)
    state = _state(data_dir, vhost, [u.name for u in users])
    defs = d.render(vhost, users, state["passwords"], also_permit=[unquote(parts.username or "guest")])
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(defs, f)
    os.chmod(f.name, 0o644)  # read by the broker node, which runs as another user
    try:
        _rabbitmqctl("import_definitions", f.name)
    finally:
        os.unlink(f.name)
    env = {"SAFEGUARD_AMQP_URL": d.url_for(admin_url, unquote(parts.username or "guest"),
                                           unquote(parts.password or "guest"), vhost)}
    for u in users:
        if u.name in d.SERVICES:
            env[f"SAFEGUARD_AMQP_URL_{u.name.upper()}"] = d.url_for(admin_url, u.username,
                                                                    state["passwords"][u.name], vhost)
    return env


def client_url(data_dir: Path, admin_url: str, client_id: str) -> str | None:
    """The AMQP URL of a dev client's own user (a MASH system), if the set-up made one."""
    path = data_dir / STATE
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    password = state["passwords"].get(client_id)
    return None if password is None else d.url_for(admin_url, f"{state['vhost']}-{client_id}", password,
                                                   state["vhost"])


async def wait_until_usable(env: dict[str, str], timeout: float = 15.0) -> None:
    """The import is asynchronous: wait until every new user can open a connection."""
    from shared.bus import ping

    deadline = time.monotonic() + timeout
    for url in env.values():
        while not await ping(url, timeout=3):
            if time.monotonic() > deadline:
                raise NoBrokerSetUp("the new broker users could not connect in time")
            await _sleep(0.2)


async def _sleep(s: float) -> None:
    import asyncio
    await asyncio.sleep(s)
