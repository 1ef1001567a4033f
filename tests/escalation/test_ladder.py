"""The pure escalation ladder and alert rules (DESIGN §4): no I/O."""
from __future__ import annotations

from datetime import datetime, timedelta

from services.escalation.domain import alerts, ladder
from shared.config import EscalationTimings
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
        ("ack_breach", 1, london(2026, 11, 3, 14)),  # team manager
        ("ack_head_of_service", 1, london(2026, 11, 3, 15)),  # +1 working hour
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
    assert timers(plan)[:4] == [
        ("ack_reminder", 1, london(2026, 11, 9, 13)), ("ack_reminder", 2, london(2026, 11, 9, 16)),
        ("ack_breach", 1, london(2026, 11, 9, 17)), ("ack_head_of_service", 1, london(2026, 11, 10, 10))]


def test_immediate_risk_in_hours_asks_for_a_strategy_discussion_now_without_a_control_room_alert():
    plan = ladder.plan_receipt(referral_received(london(2026, 11, 2, 11), immediate_risk=True), CAL, T)
    assert plan.alerts == []
    urgent = [(n.template, n.audience) for n in plan.notifications if n.priority == "urgent"]
    assert urgent == [("immediate_safety", "la:duty_manager"), ("immediate_safety", "force:ctp_prevent"),
                      ("immediate_safety", "force:police_mash")]


def test_immediate_risk_out_of_hours_alerts_the_control_room_and_the_emergency_duty_team_once():
    plan = ladder.plan_receipt(referral_received(london(2026, 11, 2, 22), immediate_risk=True), CAL, T)
    assert plan.alerts == ["immediate_safety"]  # not also an out_of_hours_concern
    urgent = [(n.template, n.audience) for n in plan.notifications if n.priority == "urgent"]
    assert urgent == [("immediate_safety", "la:emergency_duty_team")]


def test_events_before_the_receipt_stop_their_clocks_before_they_start():
    ev = referral_received(london(2026, 11, 2, 14))
    kinds = {t.kind for t in ladder.plan_receipt(ev, CAL, T, acknowledged=True).timers}
    assert kinds == {"checks_reminder", "checks_breach"}
    kinds = {t.kind for t in ladder.plan_receipt(ev, CAL, T, checks_done=True).timers}
    assert kinds == set(ladder.ACK_KINDS)
    assert ladder.plan_receipt(ev, CAL, T, closed=True) == ladder.Plan()


def test_configured_timings_change_the_ladder():
    t = EscalationTimings(ack_reminder_fractions=(0.25, 0.5), ack_reminder_before_hours=2,
                          ack_head_of_service_after_hours=3, checks_reminder_days=(14,))
    plan = ladder.plan_receipt(referral_received(london(2026, 11, 2, 9)), CAL, t)
    assert timers(plan)[:5] == [
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
