"""What every service's `bootstrap` wires the same way.

`Runtime` holds one service's connections; `runtime_ctx` is an aiohttp
`cleanup_ctx` that opens them at start-up (nothing connects at import time):
the database (migrated to head), the broker (robust connection, topology
declared, a signing publisher), the outbox relay, and `/readyz` checks for the
database and the broker. On shutdown it runs the service's stop hooks (stop
consuming, finish in-flight work), flushes the outbox, then closes.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from nacl.signing import SigningKey, VerifyKey
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import bus
from shared.bus.permissions import declare_own
from shared.config import Settings
from shared.crypto import load_signing_key, verify_key_from_b64
from shared.http import READINESS_CHECKS
from shared.logging import get_logger
from shared.relay import OutboxRelay
from shared.storage import create_engine, ping
from shared.storage.migrate import upgrade

log = get_logger(__name__)


@dataclass
class Runtime:
    service: str
    settings: Settings
    engine: AsyncEngine
    connection: AbstractRobustConnection
    publisher: bus.Publisher
    signing_key: SigningKey
    verify_keys: dict[str, VerifyKey]
    relay: OutboxRelay
    stop_hooks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


RUNTIME = web.AppKey("runtime", Runtime)


def service_verify_keys(settings: Settings) -> dict[str, VerifyKey]:
    return {name: verify_key_from_b64(s.verify_key) for name, s in settings.file.services.items()}


def service_signing_key(settings: Settings, service: str) -> SigningKey:
    keys = settings.file.services[service]
    if not keys.signing_key_file:
        from shared.config import ConfigError

        raise ConfigError(f"{settings.config_path}: services.{service}.signing_key_file: missing")
    return load_signing_key(settings.resolve_path(keys.signing_key_file))


async def open_runtime(service: str, settings: Settings, outbox: Table) -> Runtime:
    engine = create_engine(settings.database_url_for(service))
    await upgrade(engine, service)
    connection = await bus.connect(settings.amqp_url_for(service), name=f"safeguard-{service}")
    async with connection.channel() as channel:
        if settings.own_broker_user(service):  # least privilege: only what it consumes
            await declare_own(channel, service)
        else:  # one shared user (development without rabbitmqctl, tests): the whole topology
            await bus.declare_topology(channel, [f.slug for f in settings.file.forces],
                                       parking_ttl_s=settings.file.system.parking_ttl_days * 86400)
    signing_key = service_signing_key(settings, service)
    publisher = bus.Publisher(connection, producer=service, signing_key=signing_key)
    await publisher.start()
    relay = OutboxRelay(engine, outbox, publisher)
    relay.start()
    return Runtime(
        service, settings, engine, connection, publisher, signing_key, service_verify_keys(settings), relay
    )


async def close_runtime(rt: Runtime) -> None:
    for hook in reversed(rt.stop_hooks):
        try:
            await hook()
        except Exception:
            log.exception("stop_hook_failed")
    await rt.relay.stop(flush=True)
    await rt.publisher.close()
    await rt.connection.close()
    await rt.engine.dispose()


def runtime_ctx(service: str, settings: Settings, outbox: Table):
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        rt = await open_runtime(service, settings, outbox)
        app[RUNTIME] = rt
        app[READINESS_CHECKS].update(
            database=lambda: ping(rt.engine),
            broker=lambda: _broker_ready(rt.connection),
        )
        log.info("service_ready")
        yield
        await close_runtime(rt)

    return ctx


async def _broker_ready(connection: AbstractRobustConnection) -> bool:
    return not connection.is_closed and bus.is_connected(connection)
