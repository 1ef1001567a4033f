"""`safeguard up`: run the three services as separate processes in the foreground.

Each child's output is prefixed with its name; Ctrl-C or SIGTERM stops all three
cleanly (SIGTERM to each, then SIGKILL after a grace period); if one dies, the
others are stopped and `up` exits non-zero so the failure is not hidden.
"""
from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from safeguard import devidp
from shared.config import SERVICES, ConfigError, load_file_config, load_settings, service_port
from shared.config_env import metrics_listener

GRACE_S = 20.0
DEFAULT_SMTP_URL = "smtp://127.0.0.1:8025"


def wants_sink(env: dict[str, str]) -> bool:
    """Start the dev mail/Teams sink when mail goes to the default local relay."""
    return env.get("SAFEGUARD_SMTP_URL", DEFAULT_SMTP_URL) == DEFAULT_SMTP_URL


PAGES = {  # what people open in a browser, printed by `up`
    "intake": (("/referrals", "the workspace: referrals, clocks, actions (social care, CTP Prevent)"),
               ("/report", "the performance report"), ("/openapi.json", "the HTTP API")),
    "escalation": (("/console", "the control-room console"), ("/ops", "the ops dashboard")),
}


def dev_idp_port(env: dict[str, str]) -> int | None:
    """The port to start the development identity provider on, when the configuration signs
    people in there (its client id on an issuer at http://127.0.0.1:<port>); else None."""
    path = env.get("SAFEGUARD_CONFIG") or os.path.join(env.get("SAFEGUARD_DATA_DIR", "./var"), "safeguard.toml")
    try:
        providers = load_file_config(Path(path)).identity_providers
    except ConfigError:
        return None
    for p in providers:
        host, _, port = p.issuer.removeprefix("http://").partition(":")
        if p.client_id == devidp.DEV_CLIENT_ID and host == "127.0.0.1" and port.isdigit():
            return int(port)
    return None


def _without_service_urls(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith("SAFEGUARD_AMQP_URL_")}


def service_env(env: dict[str, str], service: str) -> dict[str, str]:
    """A child's environment: its own broker user's URL only (none of the others'), which is
    also its SAFEGUARD_AMQP_URL, so the administrator's URL stays with `up`."""
    own = env.get(f"SAFEGUARD_AMQP_URL_{service.upper()}")
    child = _without_service_urls(env)
    if own:
        child |= {f"SAFEGUARD_AMQP_URL_{service.upper()}": own, "SAFEGUARD_AMQP_URL": own}
    return child


async def _pump(name: str, stream: asyncio.StreamReader) -> None:
    width = max(len(s) for s in SERVICES)
    while line := await stream.readline():
        sys.stdout.write(f"{name:<{width}} | {line.decode('utf-8', 'replace')}")
        sys.stdout.flush()


async def _stop(procs: dict[str, asyncio.subprocess.Process]) -> None:
    for proc in procs.values():
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs.values())), GRACE_S)
    except TimeoutError:
        for proc in procs.values():
            if proc.returncode is None:
                proc.kill()
        await asyncio.gather(*(p.wait() for p in procs.values()))


async def run(services: tuple[str, ...] = SERVICES, extra_env: dict[str, str] | None = None) -> int:
    env = {**os.environ, **(extra_env or {})}
    settings = load_settings(env)  # a bad metrics port or token fails here, before any child starts
    metrics = {name: metrics_listener(settings, name, env).url for name in services}
    procs: dict[str, asyncio.subprocess.Process] = {}
    for name in services:
        procs[name] = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "safeguard", "serve", name,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=service_env(env, name),
        )
    # The sink is a helper: if it cannot start (ports taken), the services keep running.
    sink = None
    if wants_sink(env):
        sink = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "safeguard", "sink",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
        )
    helpers = {"sink": sink} if sink is not None else {}
    # What a control room and ops would read (ops.*, control-room.*), so it is no backlog.
    helpers["watch"] = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "safeguard", "dev-watch",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=_without_service_urls(env))
    idp_port = dev_idp_port(env)
    if idp_port is not None:
        helpers["idp"] = await asyncio.create_subprocess_exec(
            *devidp.command(idp_port), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env=env)
    pumps = [asyncio.create_task(_pump(n, p.stdout)) for n, p in {**procs, **helpers}.items()]  # type: ignore[arg-type]
    for name in services:
        base = f"http://127.0.0.1:{service_port(name, env)}"
        pages = PAGES.get(name, ())
        listed = "".join(f"\n{'':<10} {base}{path:<14} {what}" for path, what in pages)
        print(f"{name:<10} {base}/healthz  (and /readyz){listed}\n{'':<10} {metrics[name]:<37} Prometheus metrics "
              "(a port of its own)", flush=True)
    if sink is not None:
        print(f"{'sink':<10} http://127.0.0.1:8026/  (emails and Teams cards the notifier sent)", flush=True)
    if idp_port is not None:
        print(f"{'sign-in':<10} {devidp.issuer(idp_port)}/  (the development identity provider)", flush=True)
        print("\n".join(devidp.banner(idp_port)), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waits = {asyncio.create_task(p.wait()): n for n, p in procs.items()}
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*waits, stopper], return_when=asyncio.FIRST_COMPLETED)
    failed = [waits[t] for t in done if t in waits]
    await _stop({**procs, **helpers})
    stopper.cancel()
    await asyncio.gather(*pumps, return_exceptions=True)
    if failed:
        print(f"safeguard up: {', '.join(failed)} exited; stopped the others", file=sys.stderr)
        return 1
    return 0
