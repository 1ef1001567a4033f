"""What `safeguard keys rewrap` reaches beyond intake's referrals (safeguard/rewrap.py): every
other place that holds ciphertext under a team's sealing keys.

- escalation's alerts: the control room's outcome notes, sealed to the LA's and the force's
  team keys. Re-sealed like a referral's envelopes: one transaction and one audit entry
  (`alert.notes_rewrapped`, ids and key ids only) per alert, the row locked.
- each service's outbox: the events that carry the sealed contacts (`referral.received`,
  `referral.feedback_released`, `notification.requested` and the notifier's retry copies).
  A sent row's body is purged when the broker confirms it (shared/storage/outbox.py), so
  only unsent rows can still hold an envelope: they are counted and named (message id,
  routing key), never rewritten — the relay publishes them and then purges them.

Each store reports how many items still name a retired key after the rewrap.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from nacl.public import PrivateKey, PublicKey

from shared import audit
from shared.config import SERVICES, Settings
from services.intake.adapters import tables as intake_tables
from shared.crypto import CryptoError, envelope_key_ids, rewrap

ACTOR = "safeguard-keys-rewrap"


@dataclass(frozen=True)
class StoreCount:
    """One store after the rewrap: items re-sealed, and items still sealed under a retired key."""

    store: str
    unit: str
    rewrapped: int
    remaining: int
    named: tuple[str, ...] = ()  # which items remain, by id (unsent outbox rows)


def envelopes_in(value: Any) -> Iterator[dict[str, Any]]:
    """Every sealed envelope (a mapping with `recipients` and `ciphertext`) inside a JSON value."""
    if isinstance(value, dict):
        if "recipients" in value and "ciphertext" in value:
            yield value
            return
        for v in value.values():
            yield from envelopes_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from envelopes_in(v)


def names_retired(value: Any, retired: set[str]) -> bool:
    """Does any envelope inside `value` still name one of the `retired` key ids?"""
    for env in envelopes_in(value):
        try:
            if set(envelope_key_ids(env)) & retired:
                return True
        except CryptoError:
            continue
    return False


def rewrap_envelope(env: dict[str, Any] | None, privs: dict[str, PrivateKey], retired: set[str],
                    active: dict[str, PublicKey], *, row: Any = None, column: str | None = None) -> dict[str, Any] | None:
    """The envelope sealed to `active` instead of `retired`; None if there is nothing to (or can) do.
    Given the referral `row` and the `column` it is stored in, a version 1 envelope comes back as
    version 2 (bound to the row's reference and the column's section; `crypto.rewrap`) and a
    version 2 envelope sealed for another referral or section is refused (CryptoError)."""
    if not env:
        return None
    named = set(envelope_key_ids(env)) & retired
    kid = next((k for k in sorted(named) if k in privs), None)
    if kid is None:
        return None
    where = {"referral_id": row.id, "reference": row.reference, "section": intake_tables.section_of(column)} \
        if row is not None and column is not None else {}
    return rewrap(env, key_id=kid, private_key=privs[kid], add=active, remove=named, **where)


async def rewrap_alert_notes(settings: Settings, code: str, is_la: bool, privs: dict[str, PrivateKey],
                             retired: set[str], active: dict[str, PublicKey]) -> StoreCount | None:
    """Re-seal the outcome notes of `code`'s alerts; None when escalation has no alerts table yet."""
    from safeguard.audit_db import service_table
    from services.escalation.adapters import tables

    a = tables.alerts.c
    mine = (a.la_code if is_la else a.force) == code
    async with service_table(settings, "escalation", tables.alerts) as conn:
        if conn is None:
            return None
        ids = (await conn.execute(sa.select(a.alert_id).where(mine, a.outcome_notes_sealed.is_not(None))
                                  .order_by(a.raised_at))).scalars().all()
    done = 0
    for alert_id in ids:
        async with service_table(settings, "escalation", tables.alerts) as conn:
            assert conn is not None
            if conn.dialect.name == "sqlite":  # the write lock first (as intake's rewrap)
                await conn.execute(sa.update(tables.alerts).where(sa.false()).values(level_index=0))
            query = sa.select(a.reference, a.outcome_notes_sealed).where(a.alert_id == alert_id)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            row = (await conn.execute(query)).one()
            new = rewrap_envelope(row.outcome_notes_sealed, privs, retired, active)
            if new is None:
                continue
            await conn.execute(sa.update(tables.alerts).where(a.alert_id == alert_id).values(outcome_notes_sealed=new))
            await audit.record(conn, tables.audit, actor=ACTOR, action="alert.notes_rewrapped", reference=row.reference,
                               detail={"alert_id": alert_id, "from": sorted(privs), "to": sorted(active)},
                               at=datetime.now(UTC))
            done += 1
    async with service_table(settings, "escalation", tables.alerts) as conn:
        assert conn is not None
        left = (await conn.execute(sa.select(a.outcome_notes_sealed).where(mine, a.outcome_notes_sealed.is_not(None))
                                   )).scalars().all()
    return StoreCount("escalation alert outcome notes", "alerts", done, sum(names_retired(n, retired) for n in left))


def _body(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


async def outbox_residue(settings: Settings, retired: set[str]) -> list[StoreCount]:
    """Per service: outbox rows (sent; unsent, named) whose body still names a retired key."""
    from safeguard.audit_db import service_table
    from shared.storage import outbox_table

    counts = []
    for svc in SERVICES:
        table = outbox_table(sa.MetaData(), svc)
        async with service_table(settings, svc, table) as conn:
            if conn is None:
                continue
            t = table.c
            rows = (await conn.execute(sa.select(t.message_id, t.routing_key, t.sent_at, t.body)
                                       .where(sa.func.length(t.body) > 0).order_by(t.id))).all()
        hit = [r for r in rows if names_retired(_body(r.body), retired)]
        sent = [r for r in hit if r.sent_at is not None]
        unsent = [r for r in hit if r.sent_at is None]
        counts += [StoreCount(f"{svc} outbox, sent (bodies purged when sent)", "messages", 0, len(sent)),
                   StoreCount(f"{svc} outbox, unsent (the relay purges them once published)", "messages", 0,
                              len(unsent), tuple(f"{r.message_id} ({r.routing_key})" for r in unsent))]
    return counts
