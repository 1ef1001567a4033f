"""`safeguard dlq show ID` and `safeguard dlq open ID --key FILE` (docs/operations.md).

`show` prints what is known of one parked message without its body: where and why it was
parked, its form (shared/bus/parked.py) and, for a parked submission, the metadata — client
(and whether its signature verified), body size and SHA-256, the key ids it is sealed to.
`open` is for a holder of one of the recipient teams' private keys (the LA's or the force's
key file the submission was sealed to): it prints the sealed original body to stdout
(nothing else does) and records `dlq.open` in the owning service's audit chain — ids only;
given another key it names the key ids (and their teams) it is sealed to. Both read the
way `list` does: the message stays parked.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from safeguard import parking
from safeguard.dlq_common import _audit, _connect, _queues
from shared.bus.parked import STRIPPED_HEADER, open_parked, parked_document
from shared.config import Settings
from shared.crypto import CryptoError, load_private_sealing_key


async def find(settings: Settings, message_id: str, queue: str | None, err: TextIO
               ) -> tuple[parking.ParkedMessage, bytes, dict[str, Any]] | None:
    """The first parked message with `message_id` (its metadata, body and headers), or None."""
    queues = _queues(settings, queue, err)
    connection = None if queues is None else await _connect(settings, err)
    if connection is None:
        return None
    try:
        for name in queues or ():
            try:
                async with parking.held(connection, name) as batch:
                    for incoming, parked in batch.messages:
                        if parked.message_id == message_id:
                            return parked, incoming.body, dict(incoming.headers or {})
            except parking.QueueMissing:
                continue
    finally:
        await connection.close()
    print(f"safeguard dlq: no parked message with id {message_id}", file=err)
    return None


def details(parked: parking.ParkedMessage, body: bytes, headers: dict[str, Any]) -> dict[str, Any]:
    """What `show` prints: the listing's fields and the parked form's metadata — never a body."""
    shown = parked.as_json() | {"body_bytes": len(body)}
    doc = parked_document(body)
    if doc is not None:
        shown |= {k: doc.get(k) for k in ("client_id", "client_verified", "body_bytes", "body_sha256")}
        shown["sealed_to"] = [r.get("key_id") for r in (doc.get("sealed") or {}).get("recipients", [])]
    stripped = headers.get(STRIPPED_HEADER)
    if stripped:
        shown["stripped"] = (stripped.decode() if isinstance(stripped, bytes) else str(stripped)).split(",")
    return shown


def sealed_to(settings: Settings, body: bytes) -> list[str]:
    """The key ids a parked copy is sealed to, each with the team (LA code or force slug) it is configured for."""
    doc = parked_document(body) or {}
    owners = {k.key_id: org for org, keys in
              [*((la.code, la.sealing_keys) for la in settings.file.local_authorities),
               *((f.slug, f.sealing_keys) for f in settings.file.forces)] for k in keys}
    ids = [str(r.get("key_id")) for r in (doc.get("sealed") or {}).get("recipients", []) if isinstance(r, dict)]
    return [f"{key_id} ({owners[key_id]})" if key_id in owners else key_id for key_id in ids]


async def show_command(settings: Settings, *, message_id: str, queue: str | None = None,
                       out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    found = await find(settings, message_id, queue, err)
    if found is None:
        return 1
    json.dump(details(*found), out, indent=2)
    out.write("\n")
    return 0


async def open_command(settings: Settings, *, message_id: str, key_file: Path, queue: str | None = None,
                       actor: str | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Print the sealed original body of a parked submission; 0 only if it opened."""
    try:
        key = load_private_sealing_key(key_file)
    except (OSError, CryptoError) as exc:
        print(f"safeguard dlq open: cannot read the key file ({type(exc).__name__})", file=err)
        return 2
    found = await find(settings, message_id, queue, err)
    if found is None:
        return 1
    parked, body, _ = found
    try:
        original, outcome = open_parked(body, key), "ok"
    except CryptoError as exc:
        original, outcome = None, "refused"
        print(f"safeguard dlq open: {exc}", file=err)
        owners = sealed_to(settings, body)
        if owners:
            print(f"safeguard dlq open: give the key file of one of: {', '.join(owners)}", file=err)
    who = actor or parking.actor()
    audited = await _audit(settings, [(parked.parking_queue, "dlq.open", outcome, {
        "message_id": message_id, "parking_queue": parked.parking_queue, "reason": parked.reason})], who, err)
    if original is None:
        return 1
    out.write(original.body.decode("utf-8", "replace"))
    return 0 if audited else 1


def register(sub: argparse._SubParsersAction, run: Any) -> None:
    sh = sub.add_parser("show", help="one parked message's metadata (never its body)")
    sh.add_argument("id", metavar="MESSAGE_ID")
    sh.add_argument("--queue", metavar="QUEUE", help="search only this work or parking queue")
    sh.set_defaults(func=run)
    op = sub.add_parser("open", help="print a parked submission's sealed body (needs a recipient team's key)")
    op.add_argument("id", metavar="MESSAGE_ID")
    op.add_argument("--key", metavar="FILE", required=True, type=Path,
                    help="the private key file of a team it is sealed to (e.g. keys/E99999999.x25519)")
    op.add_argument("--queue", metavar="QUEUE", help="search only this work or parking queue")
    op.set_defaults(func=run)
