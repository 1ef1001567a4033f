"""Revision 0011 (intake): `updated_at` of existing referrals is the latest time each records
(an action, a track closed, a concern), on SQLite and PostgreSQL alike."""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from shared.storage import create_engine, upgrade
from tests.storage.conftest import T0

ROW = {"reference": "PRV-2025-000001", "client_id": "dev-mash", "client_reference": "c", "force": "f",
       "la_code": "E99999999", "received_via": "web", "immediate_risk": False, "age_band": "11-15",
       "concern_types": [], "no_further_sharing": False, "no_family_contact": False, "received_at": T0,
       "out_of_hours": False, "acknowledge_by": T0, "checks_due_by": T0, "status": "received",
       "family_contact_hold": False, "family_contact_lifted": False, "content_sealed": {},
       "contacts_sealed": {}}


async def test_existing_referrals_get_their_latest_time(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await upgrade(engine, "intake", "0009")
        json_cols = ("concern_types", "content_sealed", "contacts_sealed")
        table = sa.table("intake_referrals", *(sa.column(k, sa.JSON if k in json_cols else None)
                                               for k in (*ROW, "id", "acknowledged_at", "ctp_closed_at")))

        def insert(values: dict) -> sa.Insert:
            return sa.insert(table).values(**values)

        async with engine.begin() as conn:
            await conn.execute(insert({**ROW, "id": "a"}))
            await conn.execute(insert({**ROW, "id": "b", "reference": "PRV-2025-000002",
                                       "acknowledged_at": T0 + timedelta(hours=2),
                                       "ctp_closed_at": T0 + timedelta(hours=5)}))
            await conn.execute(insert({**ROW, "id": "c", "reference": "PRV-2025-000003"}))
            await conn.execute(sa.text(
                "INSERT INTO intake_concerns (id, referral_id, reference, category, raised_at, raised_by) "
                "VALUES ('k', 'c', 'PRV-2025-000003', 'welfare', :at, 'x')"), {"at": T0 + timedelta(days=1)})
        await upgrade(engine, "intake")
        from services.intake.adapters.tables import referrals  # UtcDateTime: aware on both databases
        async with engine.connect() as conn:
            got = dict((await conn.execute(sa.select(referrals.c.id, referrals.c.updated_at))).all())
        assert got == {"a": T0, "b": T0 + timedelta(hours=5), "c": T0 + timedelta(days=1)}
    finally:
        await engine.dispose()
