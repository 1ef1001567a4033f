"""The ops dashboard's counting queries on the embedded SQLite and on real PostgreSQL."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.escalation.adapters import ops_queries as q
from services.escalation.adapters.tables import alerts, outbox, referrals, timers
from shared.storage import create_engine
from shared.storage.migrate import upgrade
from tests.factories import escalation_referral

pytestmark = pytest.mark.database
NOW = datetime(2026, 11, 7, 10, tzinfo=UTC)
EOD = datetime(2026, 11, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)


def _referral(rid: str, **values) -> dict:
    unset = dict.fromkeys(("acknowledge_by", "acknowledged_at", "checks_due_by", "checks_completed_at", "closed_at"))
    return escalation_referral(rid, now=NOW, force="f1", **{**unset, **values})


def _timer(n: int, kind: str, status: str, run_at: datetime) -> dict:
    return {"timer_key": f"k{n}", "referral_id": "r", "reference": "SR-r", "kind": kind, "seq": 1,
            "due_at": run_at, "run_at": run_at, "status": status, "attempts": 0, "created_at": NOW}


def _alert(n: int, force: str, level_index: int, status: str = "open") -> dict:
    return {"alert_id": f"a{n}", "referral_id": "r", "reference": "SR-r", "kind": "out_of_hours_concern",
            "force": force, "la_code": "E99999999", "level_index": level_index,
            "level": ("control_room", "duty_inspector")[level_index], "status": status,
            "raised_at": NOW, "last_raised_at": NOW}


async def test_counts_deadlines_timers_alerts_and_outbox_lag(db_url):
    engine = create_engine(db_url)
    try:
        await upgrade(engine, "escalation")
        async with engine.begin() as conn:
            await conn.execute(referrals.insert(), [
                _referral("due-now", acknowledge_by=NOW),  # due at this instant: still today, not yet breached
                _referral("due-late", acknowledge_by=EOD - timedelta(seconds=1), checks_due_by=NOW - H),
                _referral("tomorrow", acknowledge_by=EOD),
                _referral("breached", acknowledge_by=NOW - 30 * H),
                _referral("met", acknowledge_by=NOW - H, acknowledged_at=NOW - 2 * H,
                          checks_due_by=NOW + H, checks_completed_at=NOW - H),
                _referral("closed", acknowledge_by=NOW - H, closed_at=NOW - 2 * H),
                _referral("placeholder"),  # an event before its receipt: no deadlines yet
            ])
            await conn.execute(timers.insert(), [
                _timer(1, "ack_breach", "pending", NOW - H), _timer(2, "ack_breach", "pending", NOW + H),
                _timer(3, "ack_breach", "failed", NOW - H), _timer(4, "checks_breach", "pending", NOW),
                _timer(5, "ack_reminder", "fired", NOW - H), _timer(6, "alert_reescalate", "cancelled", NOW),
            ])
            await conn.execute(alerts.insert(), [
                _alert(1, "f1", 0), _alert(2, "f1", 0), _alert(3, "f1", 1), _alert(4, "f2", 1),
                _alert(5, "f2", 0, "acknowledged"), _alert(6, "f2", 0, "closed"),
            ])
            await conn.execute(outbox.insert(), [
                {"message_id": f"m{i}", "exchange": "safeguard.events", "routing_key": "deadline.breached",
                 "body": b"{}", "headers": {}, "created_at": NOW - timedelta(seconds=s), "attempts": 0,
                 "sent_at": sent}
                for i, (s, sent) in enumerate([(90, None), (30, None), (600, NOW)])
            ])
        async with engine.connect() as conn:
            assert await q.deadlines(conn, NOW, EOD) == {
                "acknowledge": {"due_today": 2, "breached": 1}, "checks": {"due_today": 0, "breached": 1}}
            assert await q.timer_counts(conn, NOW) == {
                "ack_breach": {"pending": 2, "overdue": 1, "failed": 1},
                "checks_breach": {"pending": 1, "overdue": 1, "failed": 0}}
            assert await q.open_alerts(conn) == [
                ("f1", "control_room", 0, 2), ("f1", "duty_inspector", 1, 1), ("f2", "duty_inspector", 1, 1)]
            assert await q.outbox_lag(conn, NOW) == (2, 90.0)
    finally:
        await engine.dispose()
