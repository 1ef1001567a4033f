"""structlog set-up: JSON (or console) logs with redaction, for every logger.

- `configure(service, fmt)` routes structlog *and* the standard-library loggers
  (aio-pika, aiormq, aiohttp, alembic, apscheduler) through one processor chain.
- `service`, `message_id`, `correlation_id`, `reference` are bound through
  contextvars (`bind_contextvars`), so every line of one message's work carries them.
- `redact` removes fields whose *names* are sensitive, values wrapped in
  `Sensitive`, and any string registered with `mark_sensitive()` (e.g. the
  content strings of the referral being handled) wherever it appears in a line.
  It also drops the `user:password@` part of any URL in a line (a library's repr of its
  broker or database connection), leaving scheme, host and port.
"""
from __future__ import annotations

import contextvars
import logging
import re
import sys
from collections.abc import Iterable
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars, clear_contextvars
from structlog.typing import EventDict

__all__ = [
    "Sensitive", "bind_contextvars", "bound_contextvars", "clear_contextvars", "configure",
    "get_logger", "mark_sensitive", "redact", "sensitive_scope",
]

REDACTED = "[redacted]"
SENSITIVE_KEYS = frozenset({
    "subject", "name", "first_name", "last_name", "full_name", "dob", "date_of_birth",
    "address", "postcode", "school", "guardians", "parents", "referrer", "contact",
    "contacts", "email", "phone", "narrative", "concerns", "vulnerabilities",
    "other_agencies", "content", "plaintext", "body", "payload", "password", "secret",
    "private_key", "authorization", "signature", "sealed", "notes", "rationale",
})
_MIN_VALUE_LEN = 4  # shorter strings are too common to scrub meaningfully
_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")
_scope: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("sensitive", default=frozenset())


class Sensitive:
    """Wrap a value to log that it exists without logging what it is."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return REDACTED

    __str__ = __repr__


def mark_sensitive(values: Iterable[str]) -> contextvars.Token:
    """Scrub these strings from every log line written in the current context."""
    extra = {v for v in values if isinstance(v, str) and len(v) >= _MIN_VALUE_LEN}
    return _scope.set(_scope.get() | extra)


class sensitive_scope:
    """`with sensitive_scope(strings): ...` — mark_sensitive for a block."""

    def __init__(self, values: Iterable[str]) -> None:
        self._values = list(values)

    def __enter__(self) -> None:
        self._token = mark_sensitive(self._values)

    def __exit__(self, *exc: object) -> None:
        _scope.reset(self._token)


def _scrub(value: Any, secrets: frozenset[str]) -> Any:
    if isinstance(value, Sensitive):
        return REDACTED
    if isinstance(value, dict):
        return {k: REDACTED if str(k).lower() in SENSITIVE_KEYS else _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_scrub(v, secrets) for v in value]
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return value
    if "://" in value and "@" in value:
        value = _USERINFO.sub(rf"\1{REDACTED}@", value)
    for s in secrets:
        if s in value:
            value = value.replace(s, REDACTED)
    return value


def redact(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: drop sensitive fields and scrub marked values."""
    secrets = _scope.get()
    for key in list(event_dict):
        if key.lower() in SENSITIVE_KEYS:
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(event_dict[key], secrets)
    return event_dict


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact,
    ]


def configure(service: str | None = None, fmt: str = "json", level: int = logging.INFO, stream=None) -> None:
    """Configure structlog and the standard library once, at process start."""
    renderer = structlog.dev.ConsoleRenderer(colors=False) if fmt == "console" else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[*_shared_processors()[:-2], structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors()[:-1],
        processors=[
            structlog.processors.format_exc_info,
            redact,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library chatter: keep warnings and errors, drop per-frame debug noise.
    for name in ("aio_pika", "aiormq", "aiohttp.access", "asyncio", "apscheduler", "alembic"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    clear_contextvars()
    if service:
        bind_contextvars(service=service)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
