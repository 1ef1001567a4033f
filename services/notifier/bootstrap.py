"""Wires the notifier service: settings in, an aiohttp application out.

`create_app` reads the status-callback subscriptions' secrets and the Teams webhook URLs
routes name by `teams_webhook_env` (a missing one stops it here), adds the shared runtime (database, broker, outbox relay) and then the notifier's own
cleanup context, which builds the renderer, channels (email, Teams, SMS when configured,
the status-callback webhooks) and `Notifier` (the Context with its Delivery and the
handlers bound to both) and starts consuming `notifier.requests`; stopping is done by the
runtime's stop hooks (stop consuming and finish in-flight sends first, then close the
channels), before the outbox is flushed. Nothing connects at import time.
"""
from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from aiohttp import web

from services.notifier import handlers
from services.notifier.adapters import tables
from services.notifier.adapters.channels.base import Channel
from services.notifier.adapters.channels.email import EmailChannel
from services.notifier.adapters.channels.sms import NotifyConfig, SmsChannel
from services.notifier.adapters.channels.teams import TeamsChannel
from services.notifier.adapters.channels.webhook import Endpoint, WebhookChannel, endpoints_from
from services.notifier.adapters.rendering import Renderer
from services.notifier.context import Context
from services.notifier.delivery import Delivery
from services.notifier.domain.retry import RetryPolicy
from services.notifier.entrypoints.amqp import declare_retry_queues, dispatch, request_consumer
from shared import bus
from shared.checkpointer import checkpointer_ctx
from shared.config import Settings
from shared.crypto import load_private_sealing_key
from shared.config_env import with_teams_webhooks
from shared.http import base_app
from shared.logging import get_logger
from shared.messages import ReferralReceived
from shared.runtime import RUNTIME, Runtime, runtime_ctx

SERVICE = "notifier"
log = get_logger(__name__)


@dataclass
class Notifier(Context):
    """The running notifier: its Context (built from the Context's fields, tuned in place)
    and the Delivery it composes. `handle` is what the consumer calls
    (`entrypoints/amqp.py:dispatch`); `on_received` records a hold without a broker."""
    delivery: Delivery = field(init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.delivery = Delivery(self)

    async def handle(self, msg: bus.BusMessage) -> None:
        await dispatch(msg, self, self.delivery)

    async def on_received(self, ev: ReferralReceived) -> None:
        await handlers.on_received(ev, self)


NOTIFIER = web.AppKey("notifier", Notifier)


def build_notifier(settings: Settings, runtime: Runtime, policy: RetryPolicy,
                   endpoints: dict[str, Endpoint] | None = None) -> Notifier:
    keys = settings.file.services[SERVICE]
    sealing_key = load_private_sealing_key(settings.resolve_path(keys.sealing_key_file)) if keys.sealing_key_file else None
    system, pace = settings.file.system, settings.file.delivery
    channels: dict[str, Channel] = {"email": EmailChannel(settings.smtp_url, rate_per_s=pace.email_per_s),
                                    "teams": TeamsChannel(rate_per_s=pace.teams_per_webhook_per_s),
                                    "webhook": WebhookChannel(endpoints or {})}  # status callbacks (DESIGN §3.6)
    if (notify := NotifyConfig.from_env(os.environ)) is not None:
        channels["sms"] = SmsChannel(notify, rate_per_s=pace.sms_per_s)
    return Notifier(
        runtime.engine, settings, Renderer(public_base_url=system.public_base_url),
        channels, policy=policy, sealing_key=sealing_key, sealing_key_id=keys.sealing_key_id,
        notify=runtime.relay.notify, defer_after_s=pace.defer_after_s,
    )


def notifier_ctx(settings: Settings, policy: RetryPolicy,
                 endpoints: dict[str, Endpoint]) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        rt = app[RUNTIME]
        notifier = build_notifier(settings, rt, policy, endpoints)
        await declare_retry_queues(rt.connection, policy.delays_s)
        consumer = request_consumer(rt, notifier.handle)

        async def close_channels() -> None:
            for channel in notifier.channels.values():
                await channel.close()

        rt.stop_hooks.append(close_channels)   # hooks run in reverse: consumer first
        rt.stop_hooks.append(consumer.stop)
        await consumer.start()
        app[NOTIFIER] = notifier
        log.info("notifier_consuming", queue=consumer.spec.name)
        yield

    return ctx


def create_app(settings: Settings, *, policy: RetryPolicy | None = None) -> web.Application:
    settings = with_teams_webhooks(settings, os.environ)  # a route's teams_webhook_env unset stops the start here
    endpoints = endpoints_from(settings, os.environ)  # a missing subscription secret stops the start here
    app = base_app(SERVICE, client_max_size=settings.file.system.max_body_bytes)
    app.cleanup_ctx.append(runtime_ctx(SERVICE, settings, tables.outbox))
    app.cleanup_ctx.append(notifier_ctx(settings, policy or RetryPolicy(), endpoints))
    app.cleanup_ctx.append(checkpointer_ctx(tables.audit, tables.audit_checkpoints))
    return app
