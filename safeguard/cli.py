"""The `safeguard` command line (DESIGN §3.1)."""
from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
from pathlib import Path

from shared.config import SERVICES, ConfigError, load_settings, service_port


def _cmd_keys_init(args: argparse.Namespace) -> int:
    from safeguard import keys

    directory = Path(args.dir)
    existed = (directory / "safeguard.toml").exists()
    path = keys.init(directory, force=args.force)
    print(f"{'kept existing' if existed and not args.force else 'wrote'} {path}")
    print(f"export SAFEGUARD_CONFIG={path.resolve()}")
    if not args.no_broker:
        _dev_broker(directory, path)
    return 0


def _dev_broker(data_dir: Path, config: Path) -> dict[str, str]:
    """The dev vhost and least-privilege users (safeguard/devbroker.py): the environment to
    run the services with, or {} (one SAFEGUARD_AMQP_URL) when they cannot be made here."""
    from safeguard import devbroker
    from shared.config import load_file_config

    admin = os.environ.get("SAFEGUARD_AMQP_URL") or "amqp://guest:guest@127.0.0.1:5672/"
    clients = [(c.id, c.role, c.organisation) for c in load_file_config(config).clients]
    try:
        env = devbroker.ensure(data_dir, admin, clients)
        asyncio.run(devbroker.wait_until_usable(env))
    except devbroker.NoBrokerSetUp as exc:
        print(f"broker: {exc}: every service connects as the one user of SAFEGUARD_AMQP_URL "
              f"(no per-service users, no dev vhost)")
        return {}
    print(f"broker: vhost {devbroker.dev_vhost(data_dir)}, one least-privilege user per service and AMQP client "
          f"(passwords in {data_dir / devbroker.STATE})")
    return env


def _cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from shared.config_env import metrics_listener
    from shared.http import metrics_ctx
    from shared.logging import configure, get_logger

    settings = load_settings()
    configure(args.service, settings.log_format)
    port = args.port or service_port(args.service)
    host = args.host or os.environ.get("SAFEGUARD_BIND", "127.0.0.1")
    listener = metrics_listener(settings, args.service, public_port=port)
    bootstrap = importlib.import_module(f"services.{args.service}.bootstrap")
    app = bootstrap.create_app(settings)
    app.cleanup_ctx.insert(0, metrics_ctx(listener))  # /metrics on its own port: up first, down last
    get_logger(__name__).info("service_starting", port=port, host=host, metrics_port=listener.port,
                              metrics_host=listener.host)
    web.run_app(app, host=host, port=port, print=None, shutdown_timeout=30, access_log=None)
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    from safeguard import keys, supervisor

    env: dict[str, str] = {}
    if args.init and "SAFEGUARD_CONFIG" not in os.environ:
        data_dir = Path(os.environ.get("SAFEGUARD_DATA_DIR", "./var"))
        path = keys.init(data_dir)
        env["SAFEGUARD_CONFIG"] = str(path.resolve())
        print(f"config: {path}")
    if args.init:
        data_dir = Path(os.environ.get("SAFEGUARD_DATA_DIR", "./var"))
        env |= _dev_broker(data_dir, Path(env.get("SAFEGUARD_CONFIG") or os.environ.get(
            "SAFEGUARD_CONFIG", data_dir / "safeguard.toml")))
    os.environ.update(env)
    settings = load_settings()  # fail here, once, with the key and file named, not three times
    if settings.amqp_urls:  # own users declare only what they consume: the rest first
        from safeguard.bus_cli import declare_all
        asyncio.run(declare_all(settings.amqp_url, [f.slug for f in settings.file.forces],
                                settings.file.system.parking_ttl_days * 86400))
    return asyncio.run(supervisor.run(extra_env=env))


def _cmd_deadlines(args: argparse.Namespace) -> int:
    from shared.worktime import WorkingCalendar, compute_deadlines, parse_instant

    calendar = WorkingCalendar()
    if args.la:
        settings = load_settings()
        if settings.local_authority(args.la) is None:
            print(f"safeguard deadlines: unknown local authority {args.la}", file=sys.stderr)
            return 2
        calendar = settings.calendar(args.la)
    try:
        received = parse_instant(args.received_at)
    except ValueError as exc:
        print(f"safeguard deadlines: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(compute_deadlines(received, calendar).as_json(), indent=2))
    return 0


def _cmd_sink(args: argparse.Namespace) -> int:
    from safeguard.sink import run_sink

    try:
        asyncio.run(run_sink(args.host, args.smtp_port, args.http_port))
    except KeyboardInterrupt:
        pass
    return 0


async def _verify_audit() -> int:
    """Verify every service's audit chain, its checkpoints and their copies in the stream."""
    from safeguard.audit_verify import verify_all

    return await verify_all(load_settings())


def _cmd_audit_verify(_args: argparse.Namespace) -> int:
    return asyncio.run(_verify_audit())


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("safeguard-relay")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="safeguard", description="Safeguard Relay")
    parser.add_argument("--version", action="version", version=f"safeguard {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    keys = sub.add_parser("keys", help="key management").add_subparsers(dest="keys_command", required=True)
    init = keys.add_parser("init", help="write a development config and keys")
    init.add_argument("--dir", default=os.environ.get("SAFEGUARD_DATA_DIR", "./var"))
    init.add_argument("--force", action="store_true", help="overwrite an existing set-up")
    init.add_argument("--no-broker", action="store_true",
                      help="no dev vhost and broker users (compose makes its own: safeguard bus users)")
    init.set_defaults(func=_cmd_keys_init)
    from safeguard import rotation

    rotation.register(keys)  # keys rotate, keys rewrap

    serve = sub.add_parser("serve", help="run one service")
    serve.add_argument("service", choices=SERVICES)
    serve.add_argument("--port", type=int)
    serve.add_argument("--host")
    serve.set_defaults(func=_cmd_serve)

    up = sub.add_parser("up", help="run the three services in the foreground")
    up.add_argument("--init", action="store_true", help="create a dev config first if there is none")
    up.set_defaults(func=_cmd_up)

    sink = sub.add_parser("sink", help="run the development mail and Teams sink")
    sink.add_argument("--host", default="127.0.0.1")
    sink.add_argument("--smtp-port", type=int, default=8025)
    sink.add_argument("--http-port", type=int, default=8026)
    sink.set_defaults(func=_cmd_sink)

    dl = sub.add_parser("deadlines", help="print the deadlines for a receipt time")
    dl.add_argument("received_at", metavar="RECEIVED_AT")
    dl.add_argument("--la", metavar="CODE")
    dl.set_defaults(func=_cmd_deadlines)

    from safeguard import dlq

    dlq.register(sub)
    from safeguard import retention

    retention.register(sub)  # retention run

    from safeguard import bus_cli, devwatch, report, trace, webhooks

    bus_cli.register(sub)  # bus declare|users|permissions
    devwatch.register(sub)  # dev-watch (started by `up`)

    trace.register(sub)
    report.register(sub)
    webhooks.register(sub)  # webhooks test

    from services.intake.entrypoints import cli as intake_cli
    from services.intake.entrypoints import referral_cli

    intake_cli.register(sub)  # submit, open
    referral_cli.register(sub)  # referral list|status|ack|decide|strategy|checks|feedback|close
    audit = sub.add_parser("audit", help="audit log tools").add_subparsers(dest="audit_command", required=True)
    audit.add_parser("verify", help="verify every service's audit chain and its checkpoints").set_defaults(func=_cmd_audit_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"safeguard: configuration error:\n{exc}", file=sys.stderr)
        return 2
