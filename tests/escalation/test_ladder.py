"""The pure escalation ladder and alert rules (DESIGN §4): no I/O."""
from __future__ import annotations

from datetime import date, datetime, timedelta
from types import SimpleNamespace

from services.escalation.domain import alerts, ladder
from shared.config import EscalationTimings
from shared.messages import Holding
from shared.worktime import WorkingCalendar
from tests.factories import london, referral_received

CAL = WorkingCalendar()
T = EscalationTimings()


def timers(plan: ladder.Plan) -> list[tuple[str, int, datetime]]:
    return [(t.kind, t.seq, t.due_at) for t in plan.timers]


def test_in_hours_receipt_notifies_mash_and_referrer_and_schedules_the_whole_ladder():
    plan = ladder.plan_receipt(referral_received(london(2026, 11, 2, 14)), CAL, T)  # Monday 14:00
    assert [(n.template, n.audience, n.priority, n.with_contacts) for n in plan.notifications] == [
        ("receipt", "la:mash_team", "normal", False), ("referral_acknowledgement", "referrer", "normal", True)]
    assert plan.alerts == []
    assert timers(plan) == [
        ("ack_reminder", 1, london(2026, 11, 3, 10)),  # 50 %: 4 working hours
        ("ack_reminder", 2, london(2026, 11, 3, 13)),  # 1 working hour before Tue 14:00
        ("decide_reminder", 1, london(2026, 11, 3, 13)),  # decide-by = acknowledge-by: its own clock
        ("ack_breach", 1, london(2026, 11, 3, 14)),  # team manager
        ("decide_breach", 1, london(2026, 11, 3, 14)),
        ("ack_head_of_service", 1, london(2026, 11, 3, 15)),  # +1 working hour
        ("decide_head_of_service", 1, london(2026, 11, 3, 15)),
        ("checks_reminder", 1, london(2026, 11, 23, 14)),  # day 21
        ("checks_reminder", 2, london(2026, 11, 29, 14)),  # day 27
        ("checks_breach", 1, london(2026, 11, 30, 14)),  # day 28
    ]


def test_out_of_hours_saturday_raises_a_concern_and_the_clock_follows_working_time():
    ev = referral_received(london(2026, 11, 7, 10))  # Saturday 10:00
    assert ev.out_of_hours and ev.acknowledge_by == london(2026, 11, 9, 17)
    plan = ladder.plan_receipt(ev, CAL, T)
    assert plan.alerts == ["out_of_hours_concern"]
    assert [n.audience for n in plan.notifications] == ["la:mash_team", "referrer"]
    assert [x for x in timers(plan) if x[0] in ladder.ACK_KINDS] == [
        ("ack_reminder", 1, london(2026, 11, 9, 13)), ("ack_reminder", 2, london(2026, 11, 9, 16)),
        ("ack_breach", 1, london(2026, 11, 9, 17)), ("ack_head_of_service", 1, london(2026, 11, 10, 10))]


def test_immediate_risk_in_hours_asks_for_a_strategy_discussion_now_without_a_control_room_alert():
    plan = ladder.plan_receipt(referral_received(london(2026, 11, 2, 11), immediate_risk=True), CAL, T)
    assert plan.alerts == []
    urgent = [(n.template, n.audience) for n in plan.notifications if n.priority == "urgent"]
    assert urgent == [("immediate_safety", "la:duty_manager"), ("immediate_safety", "force:ctp_prevent"),
                      ("immediate_safety", "force:police_mash"), ("immediate_safety", "la:health_safeguarding")]
    with_nspcc = ladder.plan_receipt(referral_received(london(2026, 11, 2, 11), immediate_risk=True), CAL, T,
                                     configured={"la:nspcc", "la:mash_team"})
    assert ("immediate_safety", "la:nspcc") in [(n.template, n.audience) for n in with_nspcc.notifications]
    # The strategy-discussion clock: 60 minutes of wall-clock time, reminder at half time.
    assert [x for x in timers(plan) if x[0].startswith("strategy")] == [
        ("strategy_reminder", 1, london(2026, 11, 2, 11, 30)), ("strategy_breach", 1, london(2026, 11, 2, 12))]
    assert not [t for t in ladder.plan_receipt(referral_received(london(2026, 11, 2, 11), immediate_risk=True), CAL,
                                               T, strategy_done=True).timers if t.kind.startswith("strategy")]


def test_immediate_risk_out_of_hours_alerts_the_control_room_and_the_out_of_hours_contacts_once():
    plan = ladder.plan_receipt(referral_received(london(2026, 11, 2, 22), immediate_risk=True), CAL, T)
    assert plan.alerts == ["immediate_safety"]  # not also an out_of_hours_concern
    urgent = [(n.template, n.audience) for n in plan.notifications if n.priority == "urgent"]
    assert urgent == [("immediate_safety", "la:emergency_duty_team"),
                      ("immediate_safety", "force:ctp_prevent_out_of_hours")]
    assert [x for x in timers(plan) if x[0] == "strategy_breach"] == [("strategy_breach", 1, london(2026, 11, 2, 23))]
    assert not [t for t in ladder.plan_receipt(referral_received(london(2026, 11, 2, 22)), CAL, T).timers
                if t.kind.startswith("strategy")]  # no immediate risk: no strategy clock


def test_an_la_immediate_protection_decision_is_the_same_immediate_safety_concern():
    receipt = ladder.plan_receipt(referral_received(london(2026, 11, 2, 11), immediate_risk=True), CAL, T)
    assert ladder.immediate_safety(True) == (receipt.notifications[2:], [])
    notes, alerts = ladder.immediate_safety(False)
    assert alerts == ["immediate_safety"] and {n.audience for n in notes} == set(ladder.STRATEGY_OUT_OF_HOURS)
    row = SimpleNamespace(closed_at=None, la_closed_at=None, ctp_closed_at=None, strategy_recorded_at=None)
    assert not ladder.clock_stopped("strategy_breach", row)
    row.strategy_recorded_at = london(2026, 11, 2, 11, 40)
    assert ladder.clock_stopped("strategy_reminder", row)


def test_events_before_the_receipt_stop_their_clocks_before_they_start():
    ev = referral_received(london(2026, 11, 2, 14))
    kinds = {t.kind for t in ladder.plan_receipt(ev, CAL, T, acknowledged=True).timers}
    assert kinds == {"checks_reminder", "checks_breach", *ladder.DECIDE_KINDS}
    kinds = {t.kind for t in ladder.plan_receipt(ev, CAL, T, acknowledged=True, decided=True).timers}
    assert kinds == {"checks_reminder", "checks_breach"}
    kinds = {t.kind for t in ladder.plan_receipt(ev, CAL, T, checks_done=True).timers}
    assert kinds == {*ladder.ACK_KINDS, *ladder.DECIDE_KINDS}
    assert ladder.plan_receipt(ev, CAL, T, closed=True) == ladder.Plan()


def test_configured_timings_change_the_ladder():
    t = EscalationTimings(ack_reminder_fractions=(0.25, 0.5), ack_reminder_before_hours=2,
                          ack_head_of_service_after_hours=3, checks_reminder_days=(14,))
    plan = ladder.plan_receipt(referral_received(london(2026, 11, 2, 9)), CAL, t)
    assert [x for x in timers(plan) if x[0] == "decide_reminder"] == [("decide_reminder", 1, london(2026, 11, 2, 15))]
    assert [x for x in timers(plan) if x[0] in ladder.ACK_KINDS] == [
        ("ack_reminder", 1, london(2026, 11, 2, 11)), ("ack_reminder", 2, london(2026, 11, 2, 13)),
        ("ack_reminder", 3, london(2026, 11, 2, 15)), ("ack_breach", 1, london(2026, 11, 2, 17)),
        ("ack_head_of_service", 1, london(2026, 11, 3, 12))]
    assert [x for x in timers(plan) if x[0] == "checks_reminder"] == [("checks_reminder", 1, london(2026, 11, 16, 9))]


def test_alert_levels_summary_and_order():
    levels = ("control_room", "duty_inspector", "superintendent")
    assert [alerts.next_level(levels, i) for i in range(3)] == [1, 2, None]
    raised = london(2026, 11, 7, 10)
    text = alerts.summary("out_of_hours_concern", "SR-1", "E99999999", raised, london(2026, 11, 9, 17))
    assert text == ("Out-of-hours concern: referral SR-1 for LA E99999999, raised Sat 07 Nov 2026 10:00; "
                    "social care to acknowledge by Mon 09 Nov 2026 17:00 (Europe/London).")
    assert alerts.acknowledge_url("http://c:8081/", "a1") == "http://c:8081/v1/alerts/a1/acknowledgement"
    rows = [
        {"kind": "out_of_hours_concern", "level_index": 2, "raised_at": raised},
        {"kind": "immediate_safety", "level_index": 0, "raised_at": raised},
        {"kind": "out_of_hours_concern", "level_index": 0, "raised_at": raised + timedelta(minutes=5)},
        {"kind": "out_of_hours_concern", "level_index": 0, "raised_at": raised},
    ]
    ordered = sorted(rows, key=alerts.console_order)
    assert [(r["kind"], r["level_index"], r["raised_at"]) for r in ordered] == [
        ("immediate_safety", 0, raised), ("out_of_hours_concern", 2, raised),
        ("out_of_hours_concern", 0, raised + timedelta(minutes=5)), ("out_of_hours_concern", 0, raised)]


def test_a_hold_with_a_review_date_reminds_ctp_prevent_at_the_start_of_that_working_day():
    ev = referral_received(london(2026, 11, 2, 14)).model_copy(update={"holding_review_by": date(2026, 11, 20)})
    assert [x for x in timers(ladder.plan_receipt(ev, CAL, T)) if x[0] == "hold_review"] == [
        ("hold_review", 1, london(2026, 11, 20, 9))]
    no_hold = ev.model_copy(update={"holding": Holding(no_further_sharing=False, no_family_contact=False)})
    assert not [x for x in timers(ladder.plan_receipt(no_hold, CAL, T)) if x[0] == "hold_review"]
    assert ladder.TIMER_ACTIONS["hold_review"][:2] == ("hold_review", ("force:ctp_prevent",))
    row = SimpleNamespace(closed_at=None, la_closed_at=None, ctp_closed_at=None, holding={"no_further_sharing": False, "no_family_contact": True})
    assert not ladder.clock_stopped("hold_review", row)  # one hold still on: remind
    row.holding = {"no_further_sharing": False, "no_family_contact": False}
    assert ladder.clock_stopped("hold_review", row)  # both lifted before the date: nothing to review
