"""W3C Trace Context (`traceparent`) carried across HTTP and the bus.

One referral's path — the signed POST, the outbox row, each consumed and
published message — shares one trace id; each hop gets its own span id. The
current value lives in a contextvar and is bound into every log line.
"""
from __future__ import annotations

import contextvars
import re
import secrets

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("traceparent", default=None)


def new_traceparent() -> str:
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def parse(value: object) -> tuple[str, str] | None:
    """(trace id, parent span id) of a valid traceparent, else None."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    m = _TRACEPARENT.match(value) if isinstance(value, str) else None
    if not m or m.group(1) == "0" * 32 or m.group(2) == "0" * 16:
        return None
    return m.group(1), m.group(2)


def child_of(value: object) -> str:
    """A new span in the same trace as `value`, or a new trace if it is invalid."""
    parsed = parse(value)
    if parsed is None:
        return new_traceparent()
    return f"00-{parsed[0]}-{secrets.token_hex(8)}-01"


def trace_id(value: object) -> str | None:
    parsed = parse(value)
    return parsed[0] if parsed else None


def current() -> str | None:
    return _current.get()


def set_current(value: str) -> contextvars.Token:
    return _current.set(value)
