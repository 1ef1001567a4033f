"""`safeguard keys rotate --org CODE` and `safeguard keys rewrap --org CODE` (DESIGN §5).

`rotate` makes a new X25519 sealing key for an organisation's team: the private key
goes to `keys/<key_id>.x25519` next to the config, the public key is added to the
organisation's `sealing_keys` as `active`, and the keys it had are marked `retired`
(no longer sealed to; still named by old envelopes). Restart intake and escalation (which
seals the control room's outcome notes to the team keys) to pick it up.

`rewrap` (safeguard/rewrap.py) re-seals old referrals' data keys to the active key, and
the control room's outcome notes; it reports, per store (referrals, outcome notes, each
service's outbox), what remains sealed under a retired key, and exits 1 unless that is nothing.
It needs the *team's* old private key: intake holds no key that opens content, so the
team (or whoever holds its key) runs it. Only data keys are opened, never content.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import tomllib
from pathlib import Path

from safeguard.keys import find_org, key_file
from shared.config import ConfigError, FileConfig, SealingKey, load_settings
from shared.crypto import b64e, generate_sealing_key, write_private_key

_ARRAY = re.compile(r"sealing_keys\s*=\s*\[[^\]]*\]", re.S)


def _next_id(org: str, keys: tuple[SealingKey, ...]) -> str:
    numbers = [int(m.group(1)) for k in keys if (m := re.fullmatch(rf"{re.escape(org)}-(\d+)", k.key_id))]
    return f"{org}-{max(numbers, default=len(keys)) + 1}"


def _render(keys: list[SealingKey]) -> str:
    def one(k: SealingKey) -> str:
        status = ', status = "retired"' if k.status == "retired" else ""
        return f'  {{ key_id = "{k.key_id}", public_key = "{k.public_key}"{status} }},'
    return "sealing_keys = [\n" + "\n".join(one(k) for k in keys) + "\n]"


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, path.stat().st_mode & 0o777)
    os.replace(tmp, path)


def rotate(config_path: Path, code: str) -> SealingKey:
    """Add a new active sealing key for `code`, retire its others; return the new key."""
    text = config_path.read_text(encoding="utf-8")
    fc = FileConfig.model_validate(tomllib.loads(text))
    org = find_org(fc, code)
    if org is None:
        raise ConfigError(f"{config_path}: no local authority or force {code}")
    spans = [m for m in _ARRAY.finditer(text) if f'"{org.sealing_keys[0].key_id}"' in m.group(0)]
    if len(spans) != 1:
        raise ConfigError(f"{config_path}: cannot find the sealing_keys of {code}")
    private = generate_sealing_key()
    new = SealingKey(key_id=_next_id(code, org.sealing_keys), public_key=b64e(bytes(private.public_key)))
    keys = [k.model_copy(update={"status": "retired"}) for k in org.sealing_keys] + [new]
    updated = text[:spans[0].start()] + _render(keys) + text[spans[0].end():]
    FileConfig.model_validate(tomllib.loads(updated))  # never write a config that would not load
    write_private_key(key_file(config_path, code, new.key_id), bytes(private))
    _write_atomic(config_path, updated)
    return new


def _cmd_rotate(args: argparse.Namespace) -> int:
    settings = load_settings()
    new = rotate(settings.config_path, args.org)
    print(f"{args.org}: new sealing key {new.key_id} (active); earlier keys retired")
    print(f"private key: {key_file(settings.config_path, args.org, new.key_id)} (give it to the team)")
    print("restart intake and escalation to seal new referrals and outcome notes to it; "
          "then run `safeguard keys rewrap --org "
          f"{args.org}` as the holder of the old private key")
    return 0


def _cmd_rewrap(args: argparse.Namespace) -> int:
    from safeguard import rewrap

    settings = load_settings()
    try:
        done = asyncio.run(rewrap.rewrap_org(settings, args.org, [Path(p) for p in args.key_file or ()]))
    except rewrap.RewrapError as exc:
        print(f"safeguard keys rewrap: {exc}", file=sys.stderr)
        return 1
    print(f"{args.org}: {done.referrals} referrals rewrapped ({done.envelopes} envelopes) "
          f"to {', '.join(done.to)}; {done.remaining} envelopes still name a retired key")
    for where in done.refused:
        print(f"refused (failed authentication, or sealed for another referral or section): {where}",
              file=sys.stderr)
    print("still sealed under a retired key, per store:")
    for s in done.stores:
        print(f"  {s.store}: {s.remaining} {s.unit}" + (f" ({s.rewrapped} rewrapped)" if s.rewrapped else "")
              + (": " + ", ".join(s.named) if s.named else ""))
    if any(s.named for s in done.stores):
        print("run `safeguard keys rewrap` again once the relays have published the unsent messages")
    return 0 if done.clean else 1


def register(keys: argparse._SubParsersAction) -> None:
    """Add `rotate` and `rewrap` to `safeguard keys`."""
    rot = keys.add_parser("rotate", help="add a new sealing key for a team and retire its old ones")
    rot.add_argument("--org", required=True, metavar="CODE", help="ONS code of the LA or slug of the force")
    rot.set_defaults(func=_cmd_rotate)
    rw = keys.add_parser("rewrap", help="re-seal old referrals' data keys to the team's active key")
    rw.add_argument("--org", required=True, metavar="CODE")
    rw.add_argument("--key-file", action="append", metavar="PATH",
                    help="old private key file (default: keys/<key_id>.x25519 of each retired key)")
    rw.set_defaults(func=_cmd_rewrap)
