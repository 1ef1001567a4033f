"""`safeguard retention run`: apply `[system] retention_days` (DESIGN §5).

Crypto-shreds every referral closed more than `retention_days` ago in intake's
database (services/intake/retention.py) and the control room's sealed outcome notes of
their alerts in escalation's (services/escalation/retention.py), and deletes each service's
*sent* outbox rows older than the same cut-off (their payload went when they were
sent, shared/storage/outbox.py; what goes now is their metadata). On the broker it sweeps
the parking queues (safeguard/parking_retention.py): messages parked longer than `[system] parking_ttl_days` are deleted (the queues' own TTL
does this too, except on a queue declared before it), copies still in clear are re-parked
without their content, and what remains is counted.
Idempotent: run it daily (cron or a Kubernetes CronJob); a second run does nothing.
"""
from __future__ import annotations

import argparse
import functools
import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import MetaData

from shared.config import SERVICES, Settings, load_settings


async def _purge_outbox(settings: Settings, service: str, before: datetime) -> int | None:
    from safeguard.audit_db import service_table
    from shared.storage import outbox_table, purge_sent

    table = outbox_table(MetaData(), service)
    async with service_table(settings, service, table) as conn:
        return None if conn is None else await purge_sent(conn, table, before)


async def shred_outcome_notes(settings: Settings, now: datetime) -> list[str] | None:
    """The alert ids whose outcome notes were shredded; None when escalation has no tables yet."""
    from safeguard.audit_db import service_table
    from services.escalation import retention as escalation_retention
    from services.escalation.adapters.tables import alerts
    from services.intake import retention

    days = settings.file.system.retention_days
    async with service_table(settings, "escalation", alerts) as conn:
        if conn is None:
            return None
        return await escalation_retention.shred_expired(conn, before=retention.cutoff(now, days),
                                                        retention_days=days, now=now)


async def run(settings: Settings, now: datetime | None = None) -> tuple[list[str], dict[str, int | None]]:
    """(references shredded, sent outbox rows purged per service)."""
    from services.intake import retention
    from shared.storage import create_engine

    now = now or datetime.now(UTC)
    days = settings.file.system.retention_days
    engine = create_engine(settings.database_url_for("intake"))
    try:
        shredded = await retention.shred_expired(engine, retention_days=days, now=now)
    finally:
        await engine.dispose()
    before = retention.cutoff(now, days)
    purged = {svc: await _purge_outbox(settings, svc, before) for svc in SERVICES}
    return shredded, purged


async def sweep_broker(settings: Settings, now: datetime | None = None) -> list:
    """Sweep every parking queue of the topology; a list of `parking_retention.SweepResult`."""
    from safeguard import parking, parking_retention
    from services.intake.recipients import parked_recipients
    from shared import bus

    system = settings.file.system
    queues = parking.parking_queues([f.slug for f in settings.file.forces])
    connection = await bus.connect(settings.amqp_url, name="safeguard-retention", timeout=10)
    try:
        seal_to = functools.partial(parked_recipients, settings)
        return await parking_retention.sweep(connection, queues, seal_to=seal_to,
                                             max_age=timedelta(days=system.parking_ttl_days), now=now)
    finally:
        await connection.close()


def _print_broker(settings: Settings) -> int:
    try:
        swept = asyncio.run(sweep_broker(settings))
    except Exception as exc:  # the databases were done; say the broker was not
        print(f"broker: parking queues not swept ({type(exc).__name__}); check SAFEGUARD_AMQP_URL")
        return 1
    days = settings.file.system.parking_ttl_days
    for r in swept:
        print(f"broker: {r.parking_queue}: {r.expired} parked over {days} days deleted, {r.resealed} in clear "
              f"re-parked without content, {r.remaining} remain")
    return 0


def _cmd_run(_args: argparse.Namespace) -> int:
    settings = load_settings()
    now = datetime.now(UTC)
    shredded, purged = asyncio.run(run(settings, now))
    notes = asyncio.run(shred_outcome_notes(settings, now))
    days = settings.file.system.retention_days
    print(f"intake: {len(shredded)} referrals closed over {days} days ago shredded")
    print("escalation: " + ("no alerts table yet" if notes is None else
                            f"control-room outcome notes of {len(notes)} alerts shredded"))
    for svc, n in purged.items():
        print(f"{svc}: {'no outbox yet' if n is None else f'{n} sent outbox messages purged'}")
    return _print_broker(settings)


def register(sub: argparse._SubParsersAction) -> None:
    retention = sub.add_parser("retention", help="retention of sealed content").add_subparsers(
        dest="retention_command", required=True)
    retention.add_parser("run", help="crypto-shred referrals closed longer ago than retention_days").set_defaults(
        func=_cmd_run)
