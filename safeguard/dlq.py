"""`safeguard dlq list|show|open|replay|purge` — operate the parking queues (docs/operations.md).

The work is in `safeguard.parking` (how messages are read without ever being lost, what
a replay refuses, the audit lines). This module parses arguments, reads the settings
like the services do (`SAFEGUARD_AMQP_URL`, `SAFEGUARD_CONFIG`), connects and prints.
The `*_command` coroutines take the settings and output streams so tests run them
in-process; `register(subparsers)` wires them into `safeguard`'s parser. `show` and `open`
(one message's metadata; a sealed submission opened with a recipient team's key) are in
`safeguard.dlq_show`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from nacl.signing import VerifyKey

from safeguard import dlq_show, parking
from safeguard.dlq_common import _audit, _connect, _queues
from safeguard.dlq_show import open_command, show_command
from shared.config import Settings, load_settings

__all__ = ["format_age", "list_command", "open_command", "purge_command", "register", "replay_command",
           "service_verify_keys", "show_command"]


def service_verify_keys(settings: Settings) -> dict[str, VerifyKey]:
    from shared.crypto import verify_key_from_b64

    return {name: verify_key_from_b64(s.verify_key) for name, s in settings.file.services.items()}


def format_age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{s:02d}s"
    return f"{s}s"


async def list_command(settings: Settings, *, queue: str | None = None, as_json: bool = False,
                       out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Print every parked message: queues, reason, age, id, routing key — never a body."""
    queues = _queues(settings, queue, err)
    if queues is None:
        return 2
    connection = await _connect(settings, err)
    if connection is None:
        return 1
    try:
        parked, missing = await parking.list_parked(connection, queues)
    finally:
        await connection.close()
    now = datetime.now(UTC)
    for name in missing:
        print(f"safeguard dlq: {name} is not declared on the broker (no service has started yet?)", file=err)
    if as_json:
        json.dump({"messages": [p.as_json(now) for p in parked], "missing_queues": missing}, out, indent=2)
        out.write("\n")
        return 0
    if not parked:
        print("no parked messages", file=out)
        return 0
    rows = [("PARKING QUEUE", "ORIGINAL QUEUE", "REASON", "AGE", "MESSAGE ID", "ROUTING KEY")]
    rows += [(p.parking_queue, p.original_queue, p.reason, format_age(p.age_seconds(now)), p.message_id,
              p.routing_key) for p in parked]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1], file=out)
    print(f"{len(parked)} parked message(s)", file=out)
    return 0


async def replay_command(settings: Settings, *, message_id: str | None = None, queue: str | None = None,
                         force: bool = False, as_json: bool = False, actor: str | None = None,
                         key_file: Path | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Replay one message (`--id`) or a whole parking queue (`--queue`); 0 only if all went.
    `key_file`: a recipient team's private key, to replay submissions parked sealed to it."""
    if message_id is None and queue is None:
        print("safeguard dlq replay: give --id MESSAGE_ID or --queue QUEUE", file=err)
        return 2
    queues = _queues(settings, queue, err)
    if queues is None:
        return 2
    team_key = None
    if key_file is not None:
        from shared.crypto import CryptoError, load_private_sealing_key

        try:
            team_key = load_private_sealing_key(key_file)
        except (OSError, CryptoError) as exc:
            print(f"safeguard dlq replay: cannot read the key file ({type(exc).__name__})", file=err)
            return 2
    connection = await _connect(settings, err)
    if connection is None:
        return 1
    who = actor or parking.actor()
    try:
        results = await parking.replay(connection, queues, verify_keys=service_verify_keys(settings),
                                       message_id=message_id, force=force, who=who, team_key=team_key)
    finally:
        await connection.close()
    audited = await _audit(settings, [
        (r.parking_queue, "dlq.replay", r.outcome,
         {"message_id": r.message_id, "parking_queue": r.parking_queue, "queue": r.original_queue,
          "reason": r.reason, "forced": force}) for r in results], who, err)
    if as_json:
        json.dump({"results": [r.as_json() for r in results]}, out, indent=2)
        out.write("\n")
    else:
        for r in results:
            line = f"{r.outcome:<8} {r.message_id}  {r.parking_queue} -> {r.original_queue}  reason={r.reason}"
            print(line + (f"  ({r.detail})" if r.detail else ""), file=out)
    if message_id is not None and not results:
        print(f"safeguard dlq replay: no parked message with id {message_id}", file=err)
        return 1
    if not results:
        print("nothing to replay", file=out)
        return 0
    return 0 if audited and all(r.outcome == "replayed" for r in results) else 1


async def purge_command(settings: Settings, *, queue: str, yes: bool = False, actor: str | None = None,
                        out: TextIO = sys.stdout, err: TextIO = sys.stderr,
                        ask: Callable[[str], str] = input) -> int:
    """Delete every message of one parking queue, after the operator types its name."""
    queues = _queues(settings, queue, err)
    if queues is None:
        return 2
    (name,) = queues
    if not yes:
        try:
            answer = ask(f"This deletes every message in {name} for good. Type the queue name to confirm: ")
        except EOFError:
            answer = ""
        if answer.strip() != name:
            print("safeguard dlq purge: not confirmed; nothing purged", file=err)
            return 1
    connection = await _connect(settings, err)
    if connection is None:
        return 1
    who = actor or parking.actor()
    try:
        count = await parking.purge(connection, name, who=who)
    except parking.QueueMissing:
        print(f"safeguard dlq purge: {name} is not declared on the broker", file=err)
        return 1
    finally:
        await connection.close()
    print(f"purged {count} message(s) from {name}", file=out)
    audited = await _audit(settings, [(name, "dlq.purge", "ok", {"parking_queue": name, "count": count})], who, err)
    return 0 if audited else 1


def _run(args: argparse.Namespace) -> int:
    from shared.logging import configure

    settings = load_settings()
    configure("safeguard-dlq", settings.log_format)  # audit lines go to stderr
    if args.dlq_command == "list":
        return asyncio.run(list_command(settings, queue=args.queue, as_json=args.json))
    if args.dlq_command == "replay":
        return asyncio.run(replay_command(settings, message_id=args.id, queue=args.queue, force=args.force,
                                          as_json=args.json, key_file=args.key))
    if args.dlq_command == "show":
        return asyncio.run(show_command(settings, message_id=args.id, queue=args.queue))
    if args.dlq_command == "open":
        return asyncio.run(open_command(settings, message_id=args.id, key_file=args.key, queue=args.queue))
    return asyncio.run(purge_command(settings, queue=args.queue, yes=args.yes))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `dlq list|show|open|replay|purge` to the `safeguard` parser."""
    parser = subparsers.add_parser("dlq", help="inspect, replay and purge parked (dead-letter) messages")
    sub = parser.add_subparsers(dest="dlq_command", required=True)

    ls = sub.add_parser("list", help="list parked messages (no content)")
    ls.add_argument("--queue", metavar="QUEUE", help="one work or parking queue (default: all)")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=_run)
    dlq_show.register(sub, _run)

    rp = sub.add_parser("replay", help="re-publish parked messages to where they came from")
    rp.add_argument("--id", metavar="MESSAGE_ID", help="the message to replay")
    rp.add_argument("--queue", metavar="QUEUE", help="replay every message of this queue (or search only it)")
    rp.add_argument("--force", action="store_true", help="replay even what would fail the same way")
    rp.add_argument("--key", metavar="FILE", type=Path, help="a recipient team's private key file (sealed submissions)")
    rp.add_argument("--json", action="store_true", help="print JSON")
    rp.set_defaults(func=_run)

    pg = sub.add_parser("purge", help="delete every message of one parking queue")
    pg.add_argument("--queue", metavar="QUEUE", required=True)
    pg.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    pg.set_defaults(func=_run)
