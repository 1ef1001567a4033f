"""`safeguard submit` and `safeguard open`: the reference client on the command line."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from services.intake.entrypoints import client
from shared.crypto import CryptoError


def _url() -> str:
    return os.environ.get("SAFEGUARD_INTAKE_URL", client.DEFAULT_URL)


def _cmd_submit(args: argparse.Namespace) -> int:
    status, reply = asyncio.run(client.submit(args.file, client_id=args.client_id, key_file=args.key, url=args.url,
                                              idempotency_key=args.idempotency_key))
    print(json.dumps(reply, indent=2))
    return 0 if status == 202 else 1


def _cmd_open(args: argparse.Namespace) -> int:
    try:
        status, reply = asyncio.run(client.open_referral(
            args.reference, team_key_file=args.key, client_id=args.client_id, client_key_file=args.client_key,
            url=args.url))
    except CryptoError as exc:
        print(f"safeguard open: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(reply, indent=2, ensure_ascii=False))
    return 0 if status == 200 else 1


def register(sub: argparse._SubParsersAction) -> None:
    sm = sub.add_parser("submit", help="sign and post a referral (the reference MASH client)")
    sm.add_argument("file", metavar="FILE.json")
    sm.add_argument("--client-id", required=True)
    sm.add_argument("--key", required=True, metavar="SIGNING_KEY", help="the client's Ed25519 key file")
    sm.add_argument("--url", default=_url())
    sm.add_argument("--idempotency-key")
    sm.set_defaults(func=_cmd_submit)

    op = sub.add_parser("open", help="fetch a referral's sealed content and decrypt it locally")
    op.add_argument("reference", metavar="REFERENCE")
    op.add_argument("--key", required=True, metavar="TEAM_KEY", help="the team's X25519 key file")
    op.add_argument("--client-id", required=True)
    op.add_argument("--client-key", required=True, metavar="K", help="the client's Ed25519 key file")
    op.add_argument("--url", default=_url())
    op.set_defaults(func=_cmd_open)
