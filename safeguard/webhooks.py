"""`safeguard webhooks test ID` — send one signed test event to a status-callback subscription.

The request is what the notifier sends (`services.notifier.adapters.channels.webhook`: the
same secret from the subscription's `secret_env`, the same headers, TLS and timeout) with
the body `{"type": "webhook.test", "timestamp", "data": {"subscription", "organisation"}}`,
straight to the subscription's URL — not through the bus, not retried, not stored. It prints
one line: the subscription, the outcome (and the HTTP status when there was one) and the
time taken; exit 0 when the receiver answered 2xx, 1 otherwise, 2 for an unknown id.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from shared.config import Settings, load_settings

TEST_EVENT = "webhook.test"


async def send_test_event(settings: Settings, sub_id: str, *, env: Mapping[str, str] | None = None,
                       out: TextIO | None = None, err: TextIO | None = None) -> int:
    from services.notifier.adapters.channels.webhook import WebhookChannel, endpoints_from
    from services.notifier.domain.callbacks import encode_body

    out, err = out or sys.stdout, err or sys.stderr
    sub = settings.subscription(sub_id)
    if sub is None:
        known = ", ".join(s.id for s in settings.file.subscriptions) or "none configured"
        print(f"safeguard webhooks test: no subscription {sub_id!r} in {settings.config_path} (known: {known})",
              file=err)
        return 2
    endpoint = endpoints_from(settings, os.environ if env is None else env)[sub.id]
    body = encode_body(TEST_EVENT, datetime.now(UTC), {"subscription": sub.id, "organisation": sub.organisation})
    channel = WebhookChannel({sub.id: endpoint})
    started = time.monotonic()
    try:
        result, status = await channel.post(endpoint, f"msg_test_{uuid.uuid4().hex}", body)
    finally:
        await channel.close()
    took = f"{time.monotonic() - started:.2f} s"
    if result.outcome == "delivered":
        print(f"webhooks test {sub.id}: delivered (HTTP {status}) in {took}", file=out)
        return 0
    print(f"webhooks test {sub.id}: not delivered: {result.outcome} failure ({result.reason}) after {took}",
          file=out)
    return 1


def _cmd(args: argparse.Namespace) -> int:
    return asyncio.run(send_test_event(load_settings(), args.id))


def register(sub: Any) -> None:
    webhooks = sub.add_parser("webhooks", help="status-callback subscriptions").add_subparsers(
        dest="webhooks_command", required=True)
    p = webhooks.add_parser("test", help="send a signed test event to one subscription and print the result")
    p.add_argument("id", metavar="ID", help="the subscription's id in [[subscriptions]]")
    p.set_defaults(func=_cmd)
