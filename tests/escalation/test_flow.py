"""Referral events in, alerts / notifications / timers out — real broker, real PostgreSQL."""
from __future__ import annotations

import asyncio
import json
import time
from datetime import date, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from services.escalation.adapters.tables import alerts, audit, referrals, timers
from services.escalation.domain import ladder
from shared.clock import ManualClock
from shared.messages import (
    ChecksCompleted, ControlRoomAlert, FeedbackReleased, ReferralAcknowledged, ReferralClosed, ReferralDecided,
    StrategyDiscussionRecorded, TrackClosed,
)
from tests.factories import london, referral_event, referral_received

pytestmark = [pytest.mark.broker, pytest.mark.database]
CANARY = "CANARY-Zebedee-Quixote-7731"


async def test_saturday_referral_alerts_the_control_room_within_a_second_and_waits_for_monday(esc):
    async with esc.app():
        ev = referral_received(london(2026, 11, 7, 10), contacts_sealed={"ciphertext": CANARY})
        started = time.monotonic()
        await esc.publish(ev)
        messages = await esc.take("control-room.dev-force", timeout=5)
        assert time.monotonic() - started < 1.0
        assert len(messages) == 1 and messages[0].delivery_mode == 2  # persistent
        body = ControlRoomAlert.model_validate_json(messages[0].body)
        assert set(messages[0].body.decode().split('"')) >= set(ControlRoomAlert.model_fields)
        assert (body.kind, body.level, body.reference, body.force, body.la_code) == (
            "out_of_hours_concern", "control_room", ev.reference, "dev-force", "E99999999")
        assert body.acknowledge_url == f"http://127.0.0.1:8081/v1/alerts/{body.alert_id}/acknowledgement"
        assert ev.reference in body.summary and "Mon 09 Nov 2026 17:00" in body.summary
        assert CANARY not in messages[0].body.decode()
        await esc.settle()
        due = {(r.kind, r.seq): r.due_at for r in await esc.rows(select(timers).where(timers.c.referral_id == ev.referral_id))}
        assert due[("ack_breach", 1)] == london(2026, 11, 9, 17)
        assert due[("ack_head_of_service", 1)] == london(2026, 11, 10, 10)
        assert due[("checks_breach", 1)] == london(2026, 12, 5, 10)
        assert due[("alert_reescalate", 1)] == esc.clock() + timedelta(minutes=10)
        notes = await esc.notes()
        assert sorted((n["template"], n["audience"]) for n in notes) == [
            ("receipt", "la:mash_team"), ("referral_acknowledgement", "referrer")]
        referrer = next(n for n in notes if n["audience"] == "referrer")
        assert referrer["contacts_sealed"] == {"ciphertext": CANARY}
        assert all(n["holding"] == {"no_further_sharing": True, "no_family_contact": True} for n in notes)
        ops = await esc.take_json("ops.events", timeout=2)
        assert [k for k, _ in ops] == ["alert.raised"]
        actions = [r.action for r in await esc.rows(select(audit.c.action).where(audit.c.reference == ev.reference))]
        assert actions.count("notification.requested") == 2 and "alert.raised" in actions


async def test_immediate_risk_out_of_hours_and_in_hours(esc):
    async with esc.app(clock=ManualClock(london(2026, 11, 3, 11))):
        night = referral_received(london(2026, 11, 3, 23), immediate_risk=True)
        day = referral_received(london(2026, 11, 3, 11), immediate_risk=True)
        await esc.publish(night)
        [alert] = await esc.take("control-room.dev-force", timeout=5)
        body = ControlRoomAlert.model_validate_json(alert.body)
        assert (body.kind, body.reference) == ("immediate_safety", night.reference)
        await esc.publish(day)
        await esc.settle()
        assert await esc.take("control-room.dev-force", timeout=0.5) == []  # in hours: no control-room alert
        notes = await esc.notes()
        urgent = sorted((n["reference"], n["audience"]) for n in notes if n["priority"] == "urgent")
        assert urgent == sorted([(night.reference, "la:emergency_duty_team"),
                                 (night.reference, "force:ctp_prevent_out_of_hours"),
                                 (day.reference, "la:duty_manager"), (day.reference, "force:ctp_prevent"),
                                 (day.reference, "force:police_mash"), (day.reference, "la:health_safeguarding"),
                                 (day.reference, "la:nspcc")])  # the dev config has an NSPCC contact
        assert {n["template"] for n in notes if n["priority"] == "urgent"} == {"immediate_safety"}


def deadlines(clock: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("safeguard_deadlines_total", {"clock": clock, "outcome": outcome}) or 0.0


async def test_advancing_the_clock_fires_each_step_once_and_acknowledgement_cancels_the_rest(esc):
    """The acknowledge and decide clocks run side by side: acknowledging stops one, deciding the other."""
    esc.clock = ManualClock(london(2026, 11, 2, 14))
    clocks = ("acknowledge_by", "decide_by", "checks_due_by")
    before = {(c, o): deadlines(c, o) for c in clocks for o in ("met", "breached")}
    async with esc.app() as server:
        ev = referral_received(london(2026, 11, 2, 14))  # Monday 14:00, in hours
        late = referral_received(london(2026, 11, 2, 14))
        await esc.wait_processed(await esc.publish(ev))
        await esc.wait_processed(await esc.publish(late))
        await esc.settle()
        await esc.take("notifier.requests")
        esc.clock.set(london(2026, 11, 3, 10))  # 50 % reminder
        assert await esc.fire(server) == 2
        assert await esc.fire(server) == 0  # nothing fires twice
        notes = await esc.notes()
        assert sorted((n["reference"], n["template"], n["audience"]) for n in notes) == sorted(
            [(r.reference, "ack_reminder", "la:mash_team") for r in (ev, late)])
        await esc.wait_processed(await esc.publish(referral_event(ReferralAcknowledged, ev, london(2026, 11, 3, 11),
                                                         client_id="dev-social-care")))
        await esc.wait_processed(await esc.publish(referral_event(ReferralDecided, ev, london(2026, 11, 3, 11, 30),
                                                         pathway="section_17")))
        esc.clock.set(london(2026, 11, 3, 15, 30))  # past the breach and head-of-service steps
        assert await esc.fire(server) == 6  # only `late`: each clock's reminder, breach, head of service
        notes = await esc.notes()
        assert {n["reference"] for n in notes} == {late.reference}
        assert sorted((n["template"], n["audience"], n["priority"]) for n in notes) == [
            ("ack_breach", "la:team_manager", "urgent"), ("ack_breach_escalated", "la:head_of_service", "urgent"),
            ("ack_reminder", "la:mash_team", "normal"), ("decide_breach", "la:team_manager", "urgent"),
            ("decide_breach_escalated", "la:head_of_service", "urgent"), ("decide_reminder", "la:mash_team", "normal")]
        assert all(n["times"]["decide_by"] == n["times"]["acknowledge_by"] for n in notes)
        ops = await esc.take_json("ops.events", timeout=2)
        assert sorted(k for k, _ in ops) == ["deadline.breached"] * 4 + ["deadline.reminder"] * 4
        assert sorted(b["clock"] for k, b in ops if k == "deadline.breached") == [
            "acknowledge_by", "acknowledge_by", "decide_by", "decide_by"]
        states = {(r.kind, r.seq): r.status for r in await esc.rows(
            select(timers).where(timers.c.referral_id == ev.referral_id))}
        assert states == {("ack_reminder", 1): "fired", ("ack_reminder", 2): "cancelled",
                          ("ack_breach", 1): "cancelled", ("ack_head_of_service", 1): "cancelled",
                          ("decide_reminder", 1): "cancelled", ("decide_breach", 1): "cancelled",
                          ("decide_head_of_service", 1): "cancelled",
                          ("checks_reminder", 1): "pending", ("checks_reminder", 2): "pending",
                          ("checks_breach", 1): "pending"}
        esc.clock.set(london(2026, 11, 23, 14))  # day 21
        assert await esc.fire(server) == 2
        await esc.wait_processed(await esc.publish(referral_event(ChecksCompleted, ev, london(2026, 11, 24, 9),
                                                                  outcome="not_suitable")))
        await esc.wait_processed(await esc.publish(referral_event(ReferralClosed, late, london(2026, 11, 24, 9))))
        esc.clock.set(london(2026, 12, 31, 9))
        assert await esc.fire(server) == 0
        left = await esc.rows(select(timers).where(timers.c.status == "pending"))
        assert left == []
        counted = {k: deadlines(*k) - v for k, v in before.items()}
        assert counted == {("acknowledge_by", "met"): 1, ("acknowledge_by", "breached"): 1,
                           ("decide_by", "met"): 1, ("decide_by", "breached"): 1,
                           ("checks_due_by", "met"): 1, ("checks_due_by", "breached"): 0}


async def test_duplicates_out_of_order_malformed_and_unknown_references(esc):
    async with esc.app():
        ev = referral_received(london(2026, 11, 7, 10))
        mid = await esc.publish(ev)
        await esc.publish(ev, message_id=mid)  # a redelivery
        await esc.publish(ev)  # the same referral under another message id
        await esc.settle(1.0)
        assert len(await esc.take("control-room.dev-force", timeout=2)) == 1  # never a double alert
        assert len(await esc.rows(select(alerts))) == 1

        early = referral_received(london(2026, 11, 7, 11))  # acknowledged before its receipt arrives
        await esc.wait_processed(await esc.publish(referral_event(ReferralAcknowledged, early, london(2026, 11, 7, 12),
                                                                  client_id="dev-social-care")))
        [row] = await esc.rows(select(referrals).where(referrals.c.referral_id == early.referral_id))
        assert row.received_at is None and row.acknowledged_at == london(2026, 11, 7, 12)
        await esc.wait_processed(await esc.publish(early))
        kinds = {r.kind for r in await esc.rows(select(timers).where(timers.c.referral_id == early.referral_id))}
        assert kinds == {"checks_reminder", "checks_breach", "alert_reescalate", "decide_reminder", "decide_breach",
                         "decide_head_of_service"}  # no acknowledge clock; the decide clock still runs

        ghost = referral_received(london(2026, 11, 7, 12))  # never received here
        await esc.wait_processed(await esc.publish(referral_event(ReferralClosed, ghost, london(2026, 11, 7, 13))))
        [row] = await esc.rows(select(referrals).where(referrals.c.referral_id == ghost.referral_id))
        assert row.closed_at is not None and row.received_at is None
        [entry] = await esc.rows(select(audit).where(audit.c.reference == ghost.reference))
        assert (entry.action, entry.detail) == ("referral.closed", {"cancelled": 0, "before_receipt": True})

        await esc.publish(ev, body=b'{"referral_id": "x", "name": "' + CANARY.encode() + b'"}')
        naive = ev.model_dump(mode="json") | {"received_at": "2026-11-07T10:00:00"}
        await esc.publish(ev, body=json.dumps(naive).encode())
        await esc.publish(ev, routing_key="referral.unheard_of")
        parked = await esc.take("escalation.events.parked", timeout=5)
        for _ in range(50):
            if len(parked) >= 3:
                break
            await asyncio.sleep(0.1)
            parked += await esc.take("escalation.events.parked")
        assert sorted(m.headers["x-parked-reason"] for m in parked) == ["schema_invalid", "schema_invalid",
                                                                          "unknown_event"]
        # the consumer keeps going after all of that
        await esc.take("control-room.dev-force", timeout=1)  # the early referral's concern
        after = referral_received(london(2026, 11, 7, 14))
        await esc.publish(after)
        [alert] = await esc.take("control-room.dev-force", timeout=5)
        assert ControlRoomAlert.model_validate_json(alert.body).reference == after.reference


async def test_a_hold_still_on_at_its_review_date_reminds_ctp_prevent_and_a_lifted_one_does_not(esc):
    esc.clock = ManualClock(london(2026, 11, 2, 14))
    async with esc.app() as server:
        held = referral_received(london(2026, 11, 2, 14)).model_copy(update={"holding_review_by": date(2026, 11, 16)})
        lifted = referral_received(london(2026, 11, 2, 14)).model_copy(update={"holding_review_by": date(2026, 11, 16)})
        for ev in (held, lifted):
            await esc.wait_processed(await esc.publish(ev))
        await esc.wait_processed(await esc.publish(referral_event(ChecksCompleted, lifted, london(2026, 11, 3, 9),
                                                         outcome="not_suitable")))
        for ev in (held, lifted):  # the LA's clocks are done, so only the review is left to fire
            await esc.wait_processed(await esc.publish(referral_event(ReferralAcknowledged, ev, london(2026, 11, 2, 15),
                                                             client_id="dev-social-care")))
            await esc.wait_processed(await esc.publish(referral_event(ReferralDecided, ev, london(2026, 11, 2, 15),
                                                             pathway="section_17")))
        await esc.wait_processed(await esc.publish(FeedbackReleased(
            referral_id=lifted.referral_id, reference=lifted.reference, force=lifted.force, la_code=lifted.la_code,
            at=london(2026, 11, 3, 10), family_contact_lifted=True, audiences=("social_care", "referrer", "guardians"))))
        await esc.settle()
        await esc.take("notifier.requests")
        esc.clock.set(london(2026, 11, 16, 9, 1))
        await esc.fire(server)
        notes = [n for n in await esc.notes() if n["template"] == "hold_review"]
        assert [(n["reference"], n["audience"]) for n in notes] == [(held.reference, "force:ctp_prevent")]
        states = {r.referral_id: r.status for r in await esc.rows(select(timers).where(timers.c.kind == "hold_review"))}
        assert states == {held.referral_id: "fired", lifted.referral_id: "cancelled"}


async def test_an_immediate_protection_decision_asks_for_a_strategy_discussion_and_runs_its_clock(esc):
    esc.clock = ManualClock(london(2026, 11, 2, 10, 30))  # Monday, in hours
    async with esc.app() as server:
        late, recorded = referral_received(london(2026, 11, 2, 10)), referral_received(london(2026, 11, 2, 10))
        for ev in (late, recorded):
            await esc.wait_processed(await esc.publish(ev))
            await esc.wait_processed(await esc.publish(referral_event(ReferralAcknowledged, ev, london(2026, 11, 2, 10, 20),
                                                                      client_id="dev-social-care")))
            await esc.wait_processed(await esc.publish(referral_event(ReferralDecided, ev, london(2026, 11, 2, 10, 30),
                                                                      pathway="immediate_protection")))
        await esc.settle()
        urgent = sorted((n["reference"], n["audience"]) for n in await esc.notes() if n["template"] == "immediate_safety")
        asked = ["force:ctp_prevent", "force:police_mash", "la:duty_manager", "la:health_safeguarding", "la:nspcc"]
        assert urgent == sorted((ev.reference, a) for ev in (late, recorded) for a in asked)
        assert await esc.take("control-room.dev-force", timeout=0.5) == []  # in hours: no control-room alert
        await esc.wait_processed(await esc.publish(StrategyDiscussionRecorded(
            referral_id=recorded.referral_id, reference=recorded.reference, force=recorded.force,
            la_code=recorded.la_code, at=london(2026, 11, 2, 10, 50), held_at=london(2026, 11, 2, 10, 45),
            agencies=("local_authority", "police", "ctp_prevent"), legal_advice_sought=True,
            decision="section_47_enquiry", parents_informed=True, family_contact_lifted=True)))
        [row] = await esc.rows(select(referrals).where(referrals.c.referral_id == recorded.referral_id))
        assert row.strategy_by == london(2026, 11, 2, 11, 30) and row.holding["no_family_contact"] is False
        esc.clock.set(london(2026, 11, 2, 11, 31))
        await esc.fire(server)
        notes = [n for n in await esc.notes() if n["template"].startswith("strategy")]
        assert sorted((n["reference"], n["template"], n["audience"]) for n in notes) == sorted([
            (late.reference, "strategy_reminder", "la:duty_manager"),
            (late.reference, "strategy_reminder", "la:emergency_duty_team"),
            (late.reference, "strategy_breach", "la:head_of_service"),
            (late.reference, "strategy_breach", "force:ctp_prevent_lead")])
        assert all(n["times"]["strategy_discussion_by"] for n in notes)
        ops = [b for k, b in await esc.take_json("ops.events", timeout=2) if k == "deadline.breached"]
        assert [(b["reference"], b["clock"]) for b in ops] == [(late.reference, "strategy_discussion_by")]


async def test_an_immediate_protection_decision_out_of_hours_alerts_the_control_room(esc):
    esc.clock = ManualClock(london(2026, 11, 2, 22))  # Monday night
    async with esc.app():
        ev = referral_received(london(2026, 11, 2, 14))
        await esc.wait_processed(await esc.publish(ev))
        await esc.wait_processed(await esc.publish(referral_event(ReferralDecided, ev, london(2026, 11, 2, 22),
                                                                  pathway="immediate_protection")))
        [alert] = await esc.take("control-room.dev-force", timeout=5)
        body = ControlRoomAlert.model_validate_json(alert.body)
        assert (body.kind, body.reference) == ("immediate_safety", ev.reference)
        urgent = sorted(n["audience"] for n in await esc.notes() if n["template"] == "immediate_safety")
        assert urgent == ["force:ctp_prevent_out_of_hours", "la:emergency_duty_team"]


async def test_closing_one_track_stops_only_its_own_clocks_and_the_second_closes_the_referral(esc):
    esc.clock = ManualClock(london(2026, 11, 7, 10))  # Saturday: an out-of-hours concern is raised
    async with esc.app() as server:
        ev = referral_received(london(2026, 11, 7, 10))
        await esc.wait_processed(await esc.publish(ev))
        track = lambda which, closed, at: TrackClosed(  # noqa: E731
            referral_id=ev.referral_id, reference=ev.reference, force=ev.force, la_code=ev.la_code, at=at,
            track=which, referral_closed=closed)
        await esc.wait_processed(await esc.publish(track("la", False, london(2026, 11, 7, 11))))
        states = {r.kind: r.status for r in await esc.rows(select(timers).where(timers.c.referral_id == ev.referral_id))}
        assert {k: v for k, v in states.items() if k in ladder.LA_KINDS} == {
            k: "cancelled" for k in states if k in ladder.LA_KINDS}
        assert states["checks_breach"] == "pending" and states["alert_reescalate"] == "pending"
        esc.clock.set(london(2026, 11, 28, 10, 1))  # day 21: the CTP clock still runs
        await esc.take("notifier.requests")
        await esc.fire(server)
        assert [n["template"] for n in await esc.notes() if n["reference"] == ev.reference].count("checks_reminder") == 1
        await esc.wait_processed(await esc.publish(track("ctp", True, london(2026, 11, 28, 11))))
        [row] = await esc.rows(select(referrals).where(referrals.c.referral_id == ev.referral_id))
        assert row.la_closed_at and row.ctp_closed_at and row.closed_at == london(2026, 11, 28, 11)
        assert {r.status for r in await esc.rows(select(alerts).where(alerts.c.referral_id == ev.referral_id))} == {
            "closed"}
        assert await esc.rows(select(timers).where(timers.c.referral_id == ev.referral_id,
                                                   timers.c.status == "pending")) == []


async def test_a_family_hold_lifted_before_the_receipt_stays_lifted(esc):
    """Events in any order: a release that lifted the family-contact hold, seen before the
    receipt, is not undone by the receipt's original holds."""
    esc.clock = ManualClock(london(2026, 11, 2, 14))
    async with esc.app():
        ev = referral_received(london(2026, 11, 2, 14))
        await esc.wait_processed(await esc.publish(FeedbackReleased(
            referral_id=ev.referral_id, reference=ev.reference, force=ev.force, la_code=ev.la_code,
            at=london(2026, 11, 2, 14), family_contact_lifted=True, audiences=("social_care", "referrer", "guardians"))))
        await esc.wait_processed(await esc.publish(ev))
        [row] = await esc.rows(select(referrals).where(referrals.c.referral_id == ev.referral_id))
        assert row.holding == {"no_further_sharing": True, "no_family_contact": False}
        guardians = [n for n in await esc.notes() if n["audience"] == "guardians"]
        # asked before the receipt: the lift is known, every other hold assumed
        assert [n["holding"] for n in guardians] == [{"no_further_sharing": True, "no_family_contact": False}]


async def test_a_decision_for_immediate_protection_after_a_recorded_discussion_asks_for_none(esc):
    esc.clock = ManualClock(london(2026, 11, 2, 11))
    async with esc.app():
        ev = referral_received(london(2026, 11, 2, 10))
        await esc.wait_processed(await esc.publish(ev))
        await esc.wait_processed(await esc.publish(StrategyDiscussionRecorded(
            referral_id=ev.referral_id, reference=ev.reference, force=ev.force, la_code=ev.la_code,
            at=london(2026, 11, 2, 10, 40), held_at=london(2026, 11, 2, 10, 30), agencies=("local_authority", "police"),
            legal_advice_sought=False, decision="section_47_enquiry", parents_informed=False,
            family_contact_lifted=False)))
        await esc.wait_processed(await esc.publish(referral_event(ReferralDecided, ev, london(2026, 11, 2, 11),
                                                                  pathway="immediate_protection")))
        await esc.settle()
        assert [n for n in await esc.notes() if n["template"] == "immediate_safety"] == []
        assert not [r for r in await esc.rows(select(timers).where(timers.c.referral_id == ev.referral_id))
                    if r.kind.startswith("strategy")]


async def test_a_release_seen_before_the_checks_and_the_discussion_still_requests_guardians_unheld(esc):
    """Events of one referral may be handled in any order (several at a time): the release
    itself says the checks are done and, naming guardians, that the family hold is off."""
    esc.clock = ManualClock(london(2026, 11, 2, 14))
    async with esc.app():
        ev = referral_received(london(2026, 11, 2, 14))
        await esc.wait_processed(await esc.publish(ev))
        await esc.take("notifier.requests")
        await esc.wait_processed(await esc.publish(FeedbackReleased(
            referral_id=ev.referral_id, reference=ev.reference, force=ev.force, la_code=ev.la_code,
            at=london(2026, 11, 2, 15), family_contact_lifted=False, audiences=("social_care", "referrer", "guardians"))))
        [guardians] = [n for n in await esc.notes() if n["audience"] == "guardians"]
        assert guardians["holding"] == {"no_further_sharing": False, "no_family_contact": False}
