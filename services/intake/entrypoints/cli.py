"""`safeguard submit` and `safeguard open`: the reference client on the command line. A failure
is one readable line and exit status 1 (cli_common); `submit` sends an Idempotency-Key (a new
UUID unless `--idempotency-key` names one), so a retry of the same command is safe."""
from __future__ import annotations

import argparse
import json
import os
import uuid

from services.intake.entrypoints import client
from services.intake.entrypoints.cli_common import run


def _url() -> str:
    return os.environ.get("SAFEGUARD_INTAKE_URL", client.DEFAULT_URL)


def _print_json(_status: int, reply: object) -> int:
    print(json.dumps(reply, indent=2, ensure_ascii=False))
    return 0


def _cmd_submit(args: argparse.Namespace) -> int:
    key = args.idempotency_key or str(uuid.uuid4())
    return run("safeguard submit", args.url, lambda: client.submit(
        args.file, client_id=args.client_id, key_file=args.key, url=args.url, idempotency_key=key), _print_json)


def _cmd_open(args: argparse.Namespace) -> int:
    return run("safeguard open", args.url, lambda: client.open_referral(
        args.reference, team_key_file=args.key, client_id=args.client_id, client_key_file=args.client_key,
        url=args.url), _print_json)


def register(sub: argparse._SubParsersAction) -> None:
    sm = sub.add_parser("submit", help="sign and post a referral (the reference MASH client)")
    sm.add_argument("file", metavar="FILE.json")
    sm.add_argument("--client-id", required=True)
    sm.add_argument("--key", required=True, metavar="SIGNING_KEY", help="the client's Ed25519 key file")
    sm.add_argument("--url", default=_url())
    sm.add_argument("--idempotency-key", metavar="KEY", help="default: a new UUID for each run")
    sm.set_defaults(func=_cmd_submit)

    op = sub.add_parser("open", help="fetch a referral's sealed content and decrypt it locally")
    op.add_argument("reference", metavar="REFERENCE")
    op.add_argument("--key", required=True, metavar="TEAM_KEY", help="the team's X25519 key file")
    op.add_argument("--client-id", required=True)
    op.add_argument("--client-key", required=True, metavar="K", help="the client's Ed25519 key file")
    op.add_argument("--url", default=_url())
    op.set_defaults(func=_cmd_open)
