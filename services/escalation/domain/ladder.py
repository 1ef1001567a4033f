"""The escalation ladder (DESIGN §4): what a received referral sets in motion.

`plan_receipt` is pure: given the `ReferralReceived` event, the LA's working calendar
and the configured timings it returns the timers to schedule and the immediate
actions (notifications and control-room alerts). The deadlines themselves come from
the event (intake computed them with the same `shared.worktime` rules); the ladder's
intermediate steps are computed here on the LA's calendar.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.config import EscalationTimings
from shared.messages import AlertKind, ReferralReceived
from shared.worktime import WorkingCalendar, ack_breach_steps, ack_reminder_times, checks_reminder_times

# Timer kinds, grouped by the clock that owns them (what cancels them).
ACK_REMINDER, ACK_BREACH, ACK_HEAD_OF_SERVICE = "ack_reminder", "ack_breach", "ack_head_of_service"
DECIDE_REMINDER, DECIDE_BREACH, DECIDE_HEAD_OF_SERVICE = "decide_reminder", "decide_breach", "decide_head_of_service"
CHECKS_REMINDER, CHECKS_BREACH = "checks_reminder", "checks_breach"
HOLD_REVIEW = "hold_review"  # the holding instructions' review_by: CTP Prevent is reminded a hold is on
STRATEGY_REMINDER, STRATEGY_BREACH = "strategy_reminder", "strategy_breach"
ALERT_REESCALATE = "alert_reescalate"
ACK_KINDS = (ACK_REMINDER, ACK_BREACH, ACK_HEAD_OF_SERVICE)
DECIDE_KINDS = (DECIDE_REMINDER, DECIDE_BREACH, DECIDE_HEAD_OF_SERVICE)
CHECKS_KINDS = (CHECKS_REMINDER, CHECKS_BREACH)
STRATEGY_KINDS = (STRATEGY_REMINDER, STRATEGY_BREACH)
TIMER_KINDS = (*ACK_KINDS, *DECIDE_KINDS, *STRATEGY_KINDS, *CHECKS_KINDS, HOLD_REVIEW, ALERT_REESCALATE)
BREACH_KINDS = (ACK_BREACH, DECIDE_BREACH, STRATEGY_BREACH, CHECKS_BREACH)  # a clock missed (metrics)
# Whose track each clock is on: closing a track stops that track's clocks only (DESIGN §4).
LA_KINDS = (*ACK_KINDS, *DECIDE_KINDS, *STRATEGY_KINDS)
CTP_KINDS = (*CHECKS_KINDS, HOLD_REVIEW)
# Who is asked for an immediate strategy discussion (DESIGN §4), in and out of hours;
# the NSPCC only where the LA configures a contact for it.
STRATEGY_IN_HOURS = ("la:duty_manager", "force:ctp_prevent", "force:police_mash", "la:health_safeguarding")
STRATEGY_OUT_OF_HOURS = ("la:emergency_duty_team", "force:ctp_prevent_out_of_hours")
OPTIONAL_IN_HOURS = ("la:nspcc",)


@dataclass(frozen=True)
class Notify:
    """One NotificationRequested: a template to one audience."""

    template: str
    audience: str
    priority: str = "normal"
    with_contacts: bool = False  # carry the sealed contact section (referrer only)


@dataclass(frozen=True)
class TimerSpec:
    kind: str
    seq: int
    due_at: datetime


@dataclass(frozen=True)
class Plan:
    notifications: list[Notify] = field(default_factory=list)
    alerts: list[AlertKind] = field(default_factory=list)
    timers: list[TimerSpec] = field(default_factory=list)


# What each timer sends when it fires: (template, audiences, event routing key).
TIMER_ACTIONS: dict[str, tuple[str, tuple[str, ...], str]] = {
    ACK_REMINDER: ("ack_reminder", ("la:mash_team",), "deadline.reminder"),
    ACK_BREACH: ("ack_breach", ("la:team_manager",), "deadline.breached"),
    ACK_HEAD_OF_SERVICE: ("ack_breach_escalated", ("la:head_of_service",), "deadline.breached"),
    DECIDE_REMINDER: ("decide_reminder", ("la:mash_team",), "deadline.reminder"),
    DECIDE_BREACH: ("decide_breach", ("la:team_manager",), "deadline.breached"),
    DECIDE_HEAD_OF_SERVICE: ("decide_breach_escalated", ("la:head_of_service",), "deadline.breached"),
    CHECKS_REMINDER: ("checks_reminder", ("force:ctp_prevent",), "deadline.reminder"),
    CHECKS_BREACH: ("checks_breach", ("force:ctp_prevent_lead", "la:team_manager"), "deadline.breached"),
    HOLD_REVIEW: ("hold_review", ("force:ctp_prevent",), "deadline.reminder"),
    STRATEGY_REMINDER: ("strategy_reminder", ("la:duty_manager", "la:emergency_duty_team"), "deadline.reminder"),
    STRATEGY_BREACH: ("strategy_breach", ("la:head_of_service", "force:ctp_prevent_lead"), "deadline.breached"),
}
CLOCK_OF = {**{k: "acknowledge_by" for k in ACK_KINDS}, **{k: "decide_by" for k in DECIDE_KINDS},
            **{k: "checks_due_by" for k in CHECKS_KINDS}, HOLD_REVIEW: "holding_review_by",
            **{k: "strategy_discussion_by" for k in STRATEGY_KINDS}}
# Where each clock's deadline is stored: decide-by is acknowledge-by (DESIGN §4).
# (The review date is not stored: its timer's own due time is the deadline.)
DEADLINE_COLUMN = {"acknowledge_by": "acknowledge_by", "decide_by": "acknowledge_by", "checks_due_by": "checks_due_by",
                   "strategy_discussion_by": "strategy_by"}


def clock_stopped(kind: str, referral: Any) -> bool:
    """Whether a timer's clock has stopped on this referral row (closed, or its step done)."""
    if referral.closed_at is not None:
        return True
    if kind in LA_KINDS and referral.la_closed_at is not None:
        return True
    if kind in CTP_KINDS and referral.ctp_closed_at is not None:
        return True
    if kind in ACK_KINDS:
        return referral.acknowledged_at is not None
    if kind in DECIDE_KINDS:
        return referral.decided_at is not None
    if kind in STRATEGY_KINDS:
        return referral.strategy_recorded_at is not None
    if kind == HOLD_REVIEW:
        holding = referral.holding or {}
        return not (holding.get("no_further_sharing") or holding.get("no_family_contact"))
    return referral.checks_completed_at is not None


def hold_review_timer(ev: ReferralReceived, calendar: WorkingCalendar) -> list[TimerSpec]:
    """The review date's reminder, at the start of the LA's working day (DESIGN §4)."""
    if ev.holding_review_by is None or not (ev.holding.no_further_sharing or ev.holding.no_family_contact):
        return []
    due = datetime.combine(ev.holding_review_by, calendar.hours.start, calendar.tz)
    return [TimerSpec(HOLD_REVIEW, 1, due.astimezone(UTC))]


def plan_feedback() -> list[Notify]:
    """A CTP feedback release (DESIGN §4): feedback to the LA MASH team, the referrer and
    the guardians. The guardians' request carries the referral's holds: while the
    family-contact hold is on, the notifier's guard refuses it and audits the refusal."""
    return [Notify("feedback", "la:mash_team"), Notify("feedback", "referrer", with_contacts=True),
            Notify("feedback", "guardians", with_contacts=True)]


def ack_timers(ev: ReferralReceived, calendar: WorkingCalendar, t: EscalationTimings) -> list[TimerSpec]:
    reminders = ack_reminder_times(ev.received_at, calendar, t.ack_reminder_fractions,
                                   timedelta(hours=t.ack_reminder_before_hours))
    out = [TimerSpec(ACK_REMINDER, i + 1, at) for i, at in enumerate(r for r in reminders if r < ev.acknowledge_by)]
    breach, head = ack_breach_steps(ev.acknowledge_by, calendar, timedelta(hours=t.ack_head_of_service_after_hours))
    return out + [TimerSpec(ACK_BREACH, 1, breach), TimerSpec(ACK_HEAD_OF_SERVICE, 1, head)]


def decide_timers(ev: ReferralReceived, calendar: WorkingCalendar, t: EscalationTimings) -> list[TimerSpec]:
    """The decide clock: one reminder a working hour before decide-by (the acknowledge
    reminders already went at half time), then the same breach steps as acknowledge-by."""
    reminders = ack_reminder_times(ev.received_at, calendar, (), timedelta(hours=t.ack_reminder_before_hours))
    out = [TimerSpec(DECIDE_REMINDER, i + 1, at) for i, at in enumerate(r for r in reminders if r < ev.acknowledge_by)]
    breach, head = ack_breach_steps(ev.acknowledge_by, calendar, timedelta(hours=t.ack_head_of_service_after_hours))
    return out + [TimerSpec(DECIDE_BREACH, 1, breach), TimerSpec(DECIDE_HEAD_OF_SERVICE, 1, head)]


def checks_timers(ev: ReferralReceived, calendar: WorkingCalendar, t: EscalationTimings) -> list[TimerSpec]:
    reminders = checks_reminder_times(ev.received_at, t.checks_reminder_days, tz=calendar.hours.tz)
    out = [TimerSpec(CHECKS_REMINDER, i + 1, at) for i, at in enumerate(r for r in reminders if r < ev.checks_due_by)]
    return out + [TimerSpec(CHECKS_BREACH, 1, ev.checks_due_by)]


def immediate_safety(in_hours: bool, configured: Collection[str] = ()) -> tuple[list[Notify], list[AlertKind]]:
    """An immediate-safety concern — the submitter's `immediate_risk` or an LA decision
    `immediate_protection` (DESIGN §4): urgent strategy-discussion requests in hours; out
    of hours the control-room alert and the out-of-hours contacts. `configured`: the
    optional contacts the LA has (the NSPCC is asked only where configured)."""
    if in_hours:
        audiences = [*STRATEGY_IN_HOURS, *(a for a in OPTIONAL_IN_HOURS if a in configured)]
        return [Notify("immediate_safety", a, "urgent") for a in audiences], []
    return [Notify("immediate_safety", a, "urgent") for a in STRATEGY_OUT_OF_HOURS], ["immediate_safety"]


def strategy_timers(raised_at: datetime, t: EscalationTimings) -> list[TimerSpec]:
    """Strategy-discussion-by = raised + N minutes, wall clock: a reminder at half time, then the breach."""
    by = raised_at + timedelta(minutes=t.strategy_discussion_minutes)
    return [TimerSpec(STRATEGY_REMINDER, 1, raised_at + (by - raised_at) / 2), TimerSpec(STRATEGY_BREACH, 1, by)]


def plan_receipt(
    ev: ReferralReceived, calendar: WorkingCalendar, timings: EscalationTimings, *,
    acknowledged: bool = False, decided: bool = False, checks_done: bool = False, closed: bool = False,
    strategy_done: bool = False, configured: Collection[str] = (), la_closed: bool = False,
    ctp_closed: bool = False,
) -> Plan:
    """Timers and immediate actions for a receipt. Flags say what already happened
    (events that arrived before the receipt): their clocks are not started."""
    if closed:
        return Plan()
    notes = [Notify("receipt", "la:mash_team"), Notify("referral_acknowledgement", "referrer", with_contacts=True)]
    alerts: list[AlertKind] = []
    timers: list[TimerSpec] = []
    if ev.immediate_risk:
        urgent, alerts = immediate_safety(not ev.out_of_hours, configured)
        notes += urgent
        timers += [] if strategy_done else strategy_timers(ev.received_at, timings)
    elif ev.out_of_hours:
        alerts.append("out_of_hours_concern")
    timers += [] if acknowledged else ack_timers(ev, calendar, timings)
    timers += [] if decided else decide_timers(ev, calendar, timings)
    timers += [] if checks_done else checks_timers(ev, calendar, timings)
    timers += hold_review_timer(ev, calendar)
    timers = [t for t in timers if not (la_closed and t.kind in LA_KINDS or ctp_closed and t.kind in CTP_KINDS)]
    return Plan(notes, alerts, sorted(timers, key=lambda s: (s.due_at, s.kind)))
