"""Bad input beyond test_flow's: events escalation must not trust (another producer, no
signature, an id the signature does not cover), repeated clock stops, an unknown force, and a timer whose
referral is gone — each parked with its reason or idempotent, and visible on /metrics."""
from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from services.escalation.adapters.tables import alerts, audit, referrals, timers
from shared import bus
from shared.clock import ManualClock
from shared.crypto import load_signing_key
from shared.messages import ChecksCompleted, ReferralAcknowledged, ReferralDecided
from tests.factories import london, referral_event, referral_received
from tests.support.metrics import metrics_page

pytestmark = [pytest.mark.broker, pytest.mark.database]


async def scrape(server, name: str, **labels: str) -> float:
    """One sample of `name` from a real GET /metrics of the metrics listener (0 when absent)."""
    text = await metrics_page()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


async def parked(esc, n: int) -> list:
    out = await esc.take("escalation.events.parked", timeout=5)
    for _ in range(50):
        if len(out) >= n:
            break
        out += await esc.take("escalation.events.parked", timeout=0.1)
    return out


async def test_events_not_signed_by_intake_for_their_id_are_parked_counted_and_change_nothing(esc):
    notifier = bus.Publisher(esc.connection, producer="notifier",
                             signing_key=load_signing_key(esc.keys_dir / "service-notifier.ed25519"))
    await notifier.start()
    reasons = ("producer_not_allowed", "unsigned", "bad_signature")
    try:
        async with esc.app() as server:
            before = {r: await scrape(server, "safeguard_messages_parked_total", queue="escalation.events", reason=r)
                      for r in reasons}
            forged = referral_received(london(2026, 11, 7, 10))  # out of hours: would raise an alert if applied
            await notifier.publish(bus.EVENTS, forged.routing_key, forged.to_bytes(), message_id="m-notifier")
            await esc.publisher.publish(bus.EVENTS, forged.routing_key, forged.to_bytes(), message_id="m-unsigned",
                                        sign=False)
            # signed without an id: the client library gives it a random one, which the signature does not cover
            await esc.publisher.publish(bus.EVENTS, forged.routing_key, forged.to_bytes(), message_id="")
            got = await parked(esc, 3)
            assert sorted(m.headers["x-parked-reason"] for m in got) == sorted(reasons)
            assert await esc.rows(select(referrals)) == [] and await esc.rows(select(alerts)) == []
            assert await esc.take("control-room.dev-force", timeout=0.5) == []
            for r in reasons:
                after = await scrape(server, "safeguard_messages_parked_total", queue="escalation.events", reason=r)
                assert after == before[r] + 1, r
    finally:
        await notifier.close()


async def test_repeated_clock_stops_are_audited_as_duplicates_and_an_unknown_force_gets_no_alert(esc):
    async with esc.app():
        ev = referral_received(london(2026, 11, 7, 10))
        await esc.wait_processed(await esc.publish(ev))
        first, second = london(2026, 11, 9, 9), london(2026, 11, 9, 11)
        for at in (first, second):  # the same stop under two message ids (e.g. a resubmission)
            for stop in (referral_event(ReferralAcknowledged, ev, at, client_id="dev-social-care"),
                         referral_event(ReferralDecided, ev, at, pathway="early_help"),
                         referral_event(ChecksCompleted, ev, at, outcome="suitable_for_prevent")):
                await esc.wait_processed(await esc.publish(stop))
        [row] = await esc.rows(select(referrals).where(referrals.c.referral_id == ev.referral_id))
        assert (row.acknowledged_at, row.checks_completed_at) == (first, first)
        assert row.checks_outcome == "suitable_for_prevent"
        stops = [(r.outcome, r.detail["clock"]) for r in await esc.rows(
            select(audit).where(audit.c.action == "clock.stopped").order_by(audit.c.seq))]
        assert stops == [("ok", "acknowledge_by"), ("ok", "decide_by"), ("ok", "checks_due_by"),
                         ("duplicate", "acknowledge_by"), ("duplicate", "decide_by"), ("duplicate", "checks_due_by")]
        assert row.pathway == "early_help" and row.decided_at == first
        assert {r.status for r in await esc.rows(select(timers).where(timers.c.kind != "alert_reescalate"))} == {
            "cancelled"}

        stray = referral_received(london(2026, 11, 7, 11)).model_copy(update={"force": "no-such-force"})
        await esc.wait_processed(await esc.publish(stray))
        [entry] = await esc.rows(select(audit).where(audit.c.reference == stray.reference,
                                                     audit.c.action == "alert.raised"))
        assert entry.outcome == "unknown_force"
        assert await esc.rows(select(alerts).where(alerts.c.referral_id == stray.referral_id)) == []
        assert {r.kind for r in await esc.rows(select(timers).where(timers.c.referral_id == stray.referral_id))} == {
            "ack_reminder", "ack_breach", "ack_head_of_service", "decide_reminder", "decide_breach",
            "decide_head_of_service", "checks_reminder", "checks_breach"}


async def test_a_timer_whose_referral_is_gone_is_retried_then_failed_and_shows_on_metrics(esc):
    esc.clock = ManualClock(london(2026, 11, 2, 9, 30))
    async with esc.app(max_attempts=2, retry_base_s=60) as server:
        name, labels = "safeguard_escalation_timer_failures_total", {"kind": "ack_breach"}
        before = {f: await scrape(server, name, final=f, **labels) for f in ("false", "true")}
        async with esc.engine.begin() as conn:
            await conn.execute(timers.insert().values(
                timer_key="orphan:ack_breach:1", referral_id="gone", reference="SR-GONE", kind="ack_breach", seq=1,
                due_at=esc.clock(), run_at=esc.clock(), status="pending", attempts=0,
                created_at=esc.clock()))
        assert await esc.fire(server) == 0
        [row] = await esc.rows(select(timers).where(timers.c.timer_key == "orphan:ack_breach:1"))
        assert (row.status, row.attempts, row.last_error) == ("pending", 1, "MissingRecord")
        assert await scrape(server, name, final="false", **labels) == before["false"] + 1
        esc.clock.advance(timedelta(seconds=60))
        assert await esc.fire(server) == 0
        [row] = await esc.rows(select(timers).where(timers.c.timer_key == "orphan:ack_breach:1"))
        assert (row.status, row.attempts) == ("failed", 2)
        assert await scrape(server, name, final="true", **labels) == before["true"] + 1
        actions = [r.action for r in await esc.rows(select(audit).where(audit.c.reference == "SR-GONE")
                                                    .order_by(audit.c.seq))]
        assert actions == ["timer.retry", "timer.failed"]
