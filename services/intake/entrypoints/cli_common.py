"""What every reference-client command shares (`safeguard submit|open|referral …`): a failure is
one readable line on stderr and exit status 1 — an unreachable service, a file that cannot be
read, a key that is no key, a problem document (status, title, reason, detail) — never a
traceback. A reply's content is never part of such a line."""
from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from shared.crypto import CryptoError

Outcome = tuple[int, Any]


def problem_line(status: int, reply: Any) -> str:
    """`409 Conflict (closed): The local authority track is closed: …`"""
    if not isinstance(reply, dict):
        return f"{status} (no problem document)"
    title, reason, detail = reply.get("title") or "", reply.get("reason"), reply.get("detail")
    line = f"{status} {title}".rstrip() + (f" ({reason})" if reason else "") + (f": {detail}" if detail else "")
    errors = reply.get("errors")
    if isinstance(errors, list) and errors:
        line += " — " + "; ".join(f"{e.get('loc')}: {e.get('msg')}" for e in errors[:5] if isinstance(e, dict))
    return line.replace("\n", " ")


def read_text(path: str | None) -> str | None:
    """A note from a file (rationale, notes): its text without the final newline; None without a file."""
    if path is None:
        return None
    return Path(path).read_text(encoding="utf-8").rstrip("\n")


def _why(exc: BaseException, url: str) -> str:
    if isinstance(exc, CryptoError):
        cause = exc.__cause__
        return f"{exc}" + (f": {cause.strerror}" if isinstance(cause, OSError) and cause.strerror else "")
    if isinstance(exc, asyncio.TimeoutError):
        return f"no answer from intake at {url} (timed out)"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot reach intake at {url} ({exc.os_error.strerror or type(exc.os_error).__name__})"
    if isinstance(exc, aiohttp.ClientConnectionError):
        return f"cannot reach intake at {url} ({type(exc).__name__})"
    if isinstance(exc, OSError):
        return f"cannot read {exc.filename}: {exc.strerror}" if exc.filename else f"{exc.strerror or exc}"
    if isinstance(exc, (aiohttp.ClientError, ValueError)):
        return (str(exc).splitlines() or [type(exc).__name__])[0]
    raise exc


def run(prog: str, url: str, call: Callable[[], Awaitable[Outcome]], ok: Callable[[int, Any], int]) -> int:
    """Run `call`; a 2xx goes to `ok` (which prints and returns the exit status), anything else is
    one line on stderr and exit status 1."""
    try:
        status, reply = asyncio.run(call())
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, CryptoError, ValueError) as exc:
        print(f"{prog}: {_why(exc, url)}", file=sys.stderr)
        return 1
    if not 200 <= status < 300:
        print(f"{prog}: {problem_line(status, reply)}", file=sys.stderr)
        return 1
    return ok(status, reply)
