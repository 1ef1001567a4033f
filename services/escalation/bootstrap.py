"""Wires the escalation service: settings in, an aiohttp application out."""
from __future__ import annotations

from aiohttp import web

from shared.config import Settings
from shared.http import base_app
from services.escalation.adapters import tables
from shared.runtime import runtime_ctx

SERVICE = "escalation"


def create_app(settings: Settings) -> web.Application:
    app = base_app(SERVICE, client_max_size=settings.file.system.max_body_bytes)
    app.cleanup_ctx.append(runtime_ctx(SERVICE, settings, tables.outbox))
    return app
