"""Repository functions over the notifier's tables (run inside the caller's transaction)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notifier.adapters.tables import deliveries, holds
from services.notifier.domain.guard import HoldRecord
from services.notifier.domain.lifecycle import Status, check_transition

_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def _record(row: Row[Any]) -> HoldRecord:
    return HoldRecord(row.referral_id, row.no_further_sharing, row.no_family_contact,
                      row.feedback_released, row.guardians_released)


async def load_hold(conn: AsyncConnection, referral_id: str) -> HoldRecord | None:
    row = (await conn.execute(select(holds).where(holds.c.referral_id == referral_id))).first()
    return None if row is None else _record(row)


async def lock_hold(conn: AsyncConnection, referral_id: str, reference: str, now: datetime) -> HoldRecord | None:
    """The referral's hold record, locked until commit, so that hold events arriving together
    update it one after another (read, change, write) and none is lost. None if there was
    none: a placeholder assuming every hold now stands in its place (a write, so SQLite
    takes its write lock here too)."""
    created = await insert_hold_if_absent(conn, HoldRecord(referral_id, True, True), reference, now)
    query = select(holds).where(holds.c.referral_id == referral_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return None if created else _record((await conn.execute(query)).one())


async def insert_hold_if_absent(conn: AsyncConnection, record: HoldRecord, reference: str, now: datetime) -> bool:
    stmt = _INSERTS[conn.dialect.name](holds).values(
        referral_id=record.referral_id, reference=reference, no_further_sharing=record.no_further_sharing,
        no_family_contact=record.no_family_contact, feedback_released=record.feedback_released,
        guardians_released=record.guardians_released, updated_at=now,
    ).on_conflict_do_nothing(index_elements=[holds.c.referral_id])
    return (await conn.execute(stmt)).rowcount == 1


async def save_hold(conn: AsyncConnection, record: HoldRecord, reference: str, now: datetime) -> None:
    if not await insert_hold_if_absent(conn, record, reference, now):
        await conn.execute(update(holds).where(holds.c.referral_id == record.referral_id).values(
            no_further_sharing=record.no_further_sharing, no_family_contact=record.no_family_contact,
            feedback_released=record.feedback_released, guardians_released=record.guardians_released,
            updated_at=now,
        ))


async def ensure_delivery(conn: AsyncConnection, *, notification_id: str, channel: str, meta: dict[str, Any],
                          now: datetime, fallback_of: str | None = None) -> Row[Any]:
    """The row for (notification, channel), created in state `created` if new (a new row comes
    back from the insert itself; only an existing one is read again)."""
    stmt = _INSERTS[conn.dialect.name](deliveries).values(
        notification_id=notification_id, channel=channel, status=Status.CREATED.value, attempts=0,
        created_at=now, updated_at=now, fallback_of=fallback_of, **meta,
    ).on_conflict_do_nothing(index_elements=[deliveries.c.notification_id, deliveries.c.channel])
    created = (await conn.execute(stmt.returning(*deliveries.c))).first()
    return created or await get_delivery(conn, notification_id, channel)


async def get_delivery(conn: AsyncConnection, notification_id: str, channel: str) -> Row[Any]:
    query = select(deliveries).where(deliveries.c.notification_id == notification_id,
                                     deliveries.c.channel == channel)
    return (await conn.execute(query)).one()


async def find_delivery(conn: AsyncConnection, notification_id: str, channel: str) -> Row[Any] | None:
    query = select(deliveries).where(deliveries.c.notification_id == notification_id,
                                     deliveries.c.channel == channel)
    return (await conn.execute(query)).first()


async def list_deliveries(conn: AsyncConnection, notification_id: str) -> list[Row[Any]]:
    query = select(deliveries).where(deliveries.c.notification_id == notification_id).order_by(deliveries.c.id)
    return list((await conn.execute(query)).all())


async def transition(conn: AsyncConnection, row: Row[Any], new: Status, now: datetime, *,
                     reason: str | None = None, next_attempt_at: datetime | None = None) -> Row[Any] | None:
    """Compare-and-set: move `row` to `new` only if nobody changed it since it was read.

    Entering `sending` counts an attempt. The row as it is now, or None if another worker
    got there first.
    """
    check_transition(Status(row.status), new)
    values: dict[str, Any] = {"status": new.value, "updated_at": now, "reason": reason,
                              "next_attempt_at": next_attempt_at}
    if new == Status.SENDING:
        values["attempts"] = row.attempts + 1
        values["first_attempt_at"] = row.first_attempt_at or now
    if new == Status.DELIVERED:
        values["delivered_at"] = now
    return (await conn.execute(update(deliveries).where(
        deliveries.c.id == row.id, deliveries.c.status == row.status, deliveries.c.attempts == row.attempts,
    ).values(**values).returning(*deliveries.c))).first()
