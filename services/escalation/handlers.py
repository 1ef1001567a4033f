"""Plain async handlers: one per referral event, one per timer firing, one per command,
and the two alert steps they share (raise an alert, schedule its re-escalation).

Each runs inside the caller's transaction (the group commit's `run_once` for bus events,
the fire loop's batch for timers), so its state change, outbox rows and audit entries commit
together or not at all. Events may arrive in any order: an event for a referral not
yet received creates a placeholder row that records what happened, and the receipt,
when it comes, starts only the clocks still running.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.escalation import metrics
from services.escalation.adapters import repository as repo
from services.escalation.adapters import people
from services.escalation.adapters.effects import alert_event, audit, emit, named, new_id, notify, publish_alert
from services.escalation.context import Context
from services.escalation.domain import alerts as alert_rules
from services.escalation.domain import ladder
from services.escalation.domain import outcomes as outcome_rules
from services.escalation.domain.timers import MissingRecord, UnknownTimerKind
from shared.crypto import seal
from shared.messages import (
    DEADLINE_EVENTS, AlertAcknowledged, AlertEscalated, AlertOutcomeRecorded, AlertRaised, ChecksCompleted,
    ConcernRaised, FeedbackReleased, ReferralAcknowledged, ReferralClosed, ReferralDecided, ReferralEvent,
    ReferralReceived, StrategyDiscussionRecorded, TrackClosed,
)
from shared.web.identity import Person

OUTCOME_NOTES = "outcome_notes"  # the section an alert's outcome notes are sealed as (bound in the AEAD)


async def _ensure(conn: AsyncConnection, ev: ReferralEvent, now: datetime) -> Row[Any]:
    return await repo.ensure_referral(conn, referral_id=ev.referral_id, reference=ev.reference,
                                      force=ev.force, la_code=ev.la_code, now=now)


def _holding_after(holding: dict[str, Any], *, checks_done: bool, earlier: dict[str, Any] | None = None) -> dict[str, Any]:
    """DESIGN §4, in whichever order the receipt and the other events arrive: the CTP checks
    outcome lifts no_further_sharing; a family-contact lift recorded before the receipt
    (`earlier`, the placeholder row's holding) stays lifted."""
    out = {**holding, "no_further_sharing": False} if checks_done else dict(holding)
    if earlier is not None and earlier.get("no_family_contact") is False:
        out["no_family_contact"] = False
    return out


def _lift_family_hold(holding: dict[str, Any] | None) -> dict[str, Any]:
    """The family-contact hold lifted; before the receipt only the lift is known (the
    receipt fills in the rest, see `_holding_after`)."""
    return {**(holding or {}), "no_family_contact": False}


def _early(row: Row[Any]) -> dict:
    return {"before_receipt": True} if row.received_at is None else {}


async def on_received(conn: AsyncConnection, ev: ReferralReceived, ctx: Context, now: datetime) -> None:
    row = await _ensure(conn, ev, now)
    if row.received_at is not None:  # the same referral again under another message id
        await audit(conn, "referral.received", ev.reference, now, outcome="duplicate")
        return
    plan = ladder.plan_receipt(ev, ctx.settings.calendar(ev.la_code), ctx.timings,
                               acknowledged=row.acknowledged_at is not None, decided=row.decided_at is not None,
                               checks_done=row.checks_completed_at is not None, closed=row.closed_at is not None,
                               strategy_done=row.strategy_recorded_at is not None,
                               configured=_configured(ctx, ev.la_code), la_closed=row.la_closed_at is not None,
                               ctp_closed=row.ctp_closed_at is not None)
    strategy = [t.due_at for t in plan.timers if t.kind == ladder.STRATEGY_BREACH]
    referral = await repo.update_referral(
        conn, ev.referral_id, now, reference=ev.reference, force=ev.force, la_code=ev.la_code,
        received_at=ev.received_at, out_of_hours=ev.out_of_hours, immediate_risk=ev.immediate_risk,
        acknowledge_by=ev.acknowledge_by, checks_due_by=ev.checks_due_by,
        holding=_holding_after(ev.holding.model_dump(), checks_done=row.checks_completed_at is not None,
                               earlier=row.holding),
        **({"strategy_by": strategy[0]} if strategy else {}))
    await audit(conn, "referral.received", ev.reference, now, detail={
        "out_of_hours": ev.out_of_hours, "immediate_risk": ev.immediate_risk, "timers": len(plan.timers),
        "alerts": list(plan.alerts), "acknowledge_by": ev.acknowledge_by.isoformat(),
        "checks_due_by": ev.checks_due_by.isoformat()})
    for note in plan.notifications:
        await notify(conn, referral, note.template, note.audience, now, priority=note.priority,
                     contacts_sealed=ev.contacts_sealed if note.with_contacts else None)
    for kind in plan.alerts:
        await raise_alert(conn, ctx, referral, kind, now)
    await repo.add_timers(conn, ev.referral_id, ev.reference, plan.timers, now)


async def on_acknowledged(conn: AsyncConnection, ev: ReferralAcknowledged, ctx: Context, now: datetime) -> None:
    row = await _ensure(conn, ev, now)
    if row.acknowledged_at is not None:
        await audit(conn, "clock.stopped", ev.reference, now, outcome="duplicate", detail={"clock": "acknowledge_by"})
        return
    cancelled = await repo.cancel_timers(conn, ev.referral_id, ladder.ACK_KINDS)
    await repo.update_referral(conn, ev.referral_id, now, acknowledged_at=ev.at)
    metrics.count_deadline_met("acknowledge_by", row.acknowledge_by, ev.at)
    await audit(conn, "clock.stopped", ev.reference, now,
                detail={"clock": "acknowledge_by", "cancelled": cancelled, **_early(row)})


async def on_decided(conn: AsyncConnection, ev: ReferralDecided, ctx: Context, now: datetime) -> None:
    row = await _ensure(conn, ev, now)
    if row.decided_at is not None:
        await audit(conn, "clock.stopped", ev.reference, now, outcome="duplicate", detail={"clock": "decide_by"})
        return
    cancelled = await repo.cancel_timers(conn, ev.referral_id, ladder.DECIDE_KINDS)
    # An LA decision `immediate_protection` asks for a strategy discussion unless one is
    # already asked for or recorded (its clock: strategy-discussion-by from the decision).
    asks = (ev.pathway == "immediate_protection" and row.strategy_by is None and row.strategy_recorded_at is None
            and row.closed_at is None and row.la_closed_at is None)
    timers = ladder.strategy_timers(ev.at, ctx.timings) if asks else []
    referral = await repo.update_referral(conn, ev.referral_id, now, decided_at=ev.at, pathway=ev.pathway,
                                          **({"strategy_by": timers[-1].due_at} if timers else {}))
    metrics.count_deadline_met("decide_by", row.acknowledge_by, ev.at)
    await audit(conn, "referral.decided", ev.reference, now, detail={"pathway": ev.pathway, **_early(row)})
    await audit(conn, "clock.stopped", ev.reference, now,
                detail={"clock": "decide_by", "cancelled": cancelled, **_early(row)})
    if timers:
        await _immediate_safety(conn, ctx, referral, ev.at, timers, now)


async def _immediate_safety(conn: AsyncConnection, ctx: Context, referral: Row[Any], raised_at: datetime,
                            timers: list[ladder.TimerSpec], now: datetime) -> None:
    """An LA decision `immediate_protection`: the same alert, requests and strategy-discussion
    clock as a submitter's `immediate_risk` (DESIGN §4), in or out of hours as it is now."""
    in_hours = ctx.settings.calendar(referral.la_code).is_working_time(raised_at)
    notes, alerts = ladder.immediate_safety(in_hours, _configured(ctx, referral.la_code))
    for note in notes:
        await notify(conn, referral, note.template, note.audience, now, priority=note.priority)
    for kind in alerts:
        await raise_alert(conn, ctx, referral, kind, now)
    await repo.add_timers(conn, referral.referral_id, referral.reference, timers, now)
    await audit(conn, "strategy_discussion.requested", referral.reference, now,
                detail={"by": timers[-1].due_at.isoformat(), "in_hours": in_hours, "notifications": len(notes)})


async def on_strategy_discussion_recorded(conn: AsyncConnection, ev: StrategyDiscussionRecorded, ctx: Context,
                                          now: datetime) -> None:
    row = await _ensure(conn, ev, now)
    if row.strategy_recorded_at is not None:
        await audit(conn, "clock.stopped", ev.reference, now, outcome="duplicate",
                    detail={"clock": "strategy_discussion_by"})
        return
    cancelled = await repo.cancel_timers(conn, ev.referral_id, ladder.STRATEGY_KINDS)
    values: dict[str, Any] = {"strategy_recorded_at": ev.at}
    if ev.family_contact_lifted:
        values["holding"] = _lift_family_hold(row.holding)
    await repo.update_referral(conn, ev.referral_id, now, **values)
    metrics.count_deadline_met("strategy_discussion_by", row.strategy_by, ev.at)
    await audit(conn, "clock.stopped", ev.reference, now, detail={
        "clock": "strategy_discussion_by", "cancelled": cancelled, "decision": ev.decision,
        "family_contact_lifted": ev.family_contact_lifted, **_early(row)})


async def on_concern_raised(conn: AsyncConnection, ev: ConcernRaised, ctx: Context, now: datetime) -> None:
    """The LA raised a concern for the force's control room: one `out_of_hours_concern` alert
    per concern (re-escalated, shown on the console and counted like every alert)."""
    referral = await _ensure(conn, ev, now)
    detail = {"concern_id": ev.concern_id, "category": ev.category, "raised_by": ev.client_id}
    if await repo.alert_for_concern(conn, ev.concern_id) is not None:  # the same concern again
        await audit(conn, "referral.concern_raised", ev.reference, now, outcome="duplicate", detail=detail)
        return
    await audit(conn, "referral.concern_raised", ev.reference, now, detail={**detail, **_early(referral)})
    await raise_alert(conn, ctx, referral, "out_of_hours_concern", now, concern_id=ev.concern_id)


def _configured(ctx: Context, la_code: str) -> frozenset[str]:
    """The LA's configured contacts as audiences (`la:<name>`), for the optional ones."""
    la = ctx.settings.local_authority(la_code)
    return frozenset(f"la:{name}" for name in la.contacts) if la is not None else frozenset()


async def on_checks_completed(conn: AsyncConnection, ev: ChecksCompleted, ctx: Context, now: datetime) -> None:
    row = await _ensure(conn, ev, now)
    if row.checks_completed_at is not None:
        await audit(conn, "clock.stopped", ev.reference, now, outcome="duplicate", detail={"clock": "checks_due_by"})
        return
    cancelled = await repo.cancel_timers(conn, ev.referral_id, ladder.CHECKS_KINDS)
    holding = {} if row.holding is None else {"holding": _holding_after(row.holding, checks_done=True)}
    await repo.update_referral(conn, ev.referral_id, now, checks_completed_at=ev.at, checks_outcome=ev.outcome,
                               **holding)
    metrics.count_deadline_met("checks_due_by", row.checks_due_by, ev.at)
    await audit(conn, "clock.stopped", ev.reference, now,
                detail={"clock": "checks_due_by", "outcome": ev.outcome, "cancelled": cancelled, **_early(row)})


async def on_feedback_released(conn: AsyncConnection, ev: FeedbackReleased, ctx: Context, now: datetime) -> None:
    row = await _ensure(conn, ev, now)
    if row.feedback_released_at is not None:  # the same release again under another message id
        await audit(conn, "referral.feedback_released", ev.reference, now, outcome="duplicate")
        return
    values: dict[str, Any] = {"feedback_released_at": ev.at}
    # What the release itself tells, whatever order this service sees the events in: intake
    # releases feedback only after the CTP checks (so no_further_sharing is off) and names
    # guardians only once the family hold is off (lifted now, or before by a strategy discussion).
    if row.holding is not None:
        values["holding"] = _holding_after(row.holding, checks_done=True)
    if ev.family_contact_lifted or "guardians" in ev.audiences:
        values["holding"] = _lift_family_hold(values.get("holding", row.holding))
    referral = await repo.update_referral(conn, ev.referral_id, now, **values)
    notes = ladder.plan_feedback()
    await audit(conn, "referral.feedback_released", ev.reference, now,
                detail={"family_contact_lifted": ev.family_contact_lifted, "notifications": len(notes), **_early(row)})
    for note in notes:
        await notify(conn, referral, note.template, note.audience, now, priority=note.priority,
                     contacts_sealed=ev.contacts_sealed if note.with_contacts else None)


async def on_track_closed(conn: AsyncConnection, ev: TrackClosed, ctx: Context, now: datetime) -> None:
    """One agency closed its own track: that track's clocks stop, the other's run on; the
    second close closes the referral (and its open alerts)."""
    row = await _ensure(conn, ev, now)
    column = f"{ev.track}_closed_at"
    if getattr(row, column) is not None:
        await audit(conn, "referral.track_closed", ev.reference, now, outcome="duplicate", detail={"track": ev.track})
        return
    kinds = ladder.LA_KINDS if ev.track == "la" else ladder.CTP_KINDS
    cancelled = await repo.cancel_timers(conn, ev.referral_id, kinds)
    await repo.update_referral(conn, ev.referral_id, now, **{column: ev.at})
    await audit(conn, "referral.track_closed", ev.reference, now,
                detail={"track": ev.track, "cancelled": cancelled, **_early(row)})
    if ev.referral_closed:
        await on_closed(conn, ReferralClosed(referral_id=ev.referral_id, reference=ev.reference, force=ev.force,
                                             la_code=ev.la_code, at=ev.at), ctx, now)


async def on_closed(conn: AsyncConnection, ev: ReferralClosed, ctx: Context, now: datetime) -> None:
    row = await _ensure(conn, ev, now)
    if row.closed_at is not None:
        await audit(conn, "referral.closed", ev.reference, now, outcome="duplicate")
        return
    cancelled = await repo.cancel_timers(conn, ev.referral_id)
    for alert in await repo.open_alerts(conn, referral_id=ev.referral_id):
        await repo.update_alert(conn, alert.alert_id, status="closed")
    await repo.update_referral(conn, ev.referral_id, now, closed_at=ev.at)
    await audit(conn, "referral.closed", ev.reference, now, detail={"cancelled": cancelled, **_early(row)})


# --- timers ----------------------------------------------------------------------

async def fire_timer(conn: AsyncConnection, timer: Row[Any], ctx: Context, now: datetime, *,
                     referrals: dict[str, Row[Any]] | None = None) -> str:
    """Carry out one due timer; returns "fired", or "cancelled" when its clock has stopped.
    `referrals`: the batch's referral rows, read once by the caller (a reminder changes none)."""
    if timer.kind == ladder.ALERT_REESCALATE:
        return await _reescalate(conn, timer, ctx, now)
    if timer.kind not in ladder.TIMER_ACTIONS:
        raise UnknownTimerKind(timer.kind)
    referral = (referrals.get(timer.referral_id) if referrals is not None
                else await repo.get_referral(conn, timer.referral_id))
    if referral is None:
        raise MissingRecord("referral")
    if ladder.clock_stopped(timer.kind, referral):
        return "cancelled"
    template, audiences, routing_key = ladder.TIMER_ACTIONS[timer.kind]
    priority = "urgent" if routing_key == "deadline.breached" else "normal"
    for audience in audiences:
        await notify(conn, referral, template, audience, now, priority=priority)
    clock = ladder.CLOCK_OF[timer.kind]
    if timer.kind in ladder.BREACH_KINDS:
        metrics.DEADLINES.labels(clock=clock, outcome="breached").inc()
    await emit(conn, DEADLINE_EVENTS[routing_key](
        timer_id=timer.id, referral_id=referral.referral_id, reference=referral.reference,
        la_code=referral.la_code, force=referral.force, kind=timer.kind, clock=clock, due_at=timer.due_at,
        deadline=getattr(referral, ladder.DEADLINE_COLUMN[clock]) if clock in ladder.DEADLINE_COLUMN else timer.due_at,
        at=now), now)
    await audit(conn, routing_key, referral.reference, now,
                detail={"kind": timer.kind, "seq": timer.seq, "timer_id": timer.id, "due_at": timer.due_at.isoformat()})
    return "fired"


async def _reescalate(conn: AsyncConnection, timer: Row[Any], ctx: Context, now: datetime) -> str:
    alert = await repo.get_alert(conn, timer.alert_id or "", lock=True)
    if alert is None:
        raise MissingRecord("alert")
    if alert.status != "open":
        return "cancelled"
    levels = ctx.timings.alert_levels
    index = min(timer.seq, len(levels) - 1)
    await repo.update_alert(conn, alert.alert_id, level_index=index, level=levels[index], last_raised_at=now)
    alert = await repo.get_alert(conn, alert.alert_id)
    referral = await repo.get_referral(conn, alert.referral_id)
    await publish_alert(conn, ctx.settings.file.system.console_base_url, alert, now,
                        referral.acknowledge_by if referral else None)
    await emit(conn, alert_event(AlertEscalated, alert, now), now)
    force = ctx.settings.force(alert.force)
    if referral is not None and force is not None and alert.level in force.contacts:
        await notify(conn, referral, "alert_escalated", f"force:{alert.level}", now, priority="urgent")
    await schedule_reescalation(conn, ctx, alert, now)
    await audit(conn, "alert.escalated", alert.reference, now,
                detail={"alert_id": alert.alert_id, "kind": alert.kind, "level": alert.level})
    metrics.ALERTS_ESCALATED.inc()
    return "fired"


# --- alerts ----------------------------------------------------------------------

async def raise_alert(conn: AsyncConnection, ctx: Context, referral: Row[Any], kind: str,
                      now: datetime, *, concern_id: str | None = None) -> str | None:
    """Open a control-room alert at the first level; None if the force has no queue.
    `concern_id`: the LA's concern it is raised for (one alert per concern)."""
    concern = {"concern_id": concern_id} if concern_id else {}
    if ctx.settings.force(referral.force) is None:
        await audit(conn, "alert.raised", referral.reference, now, outcome="unknown_force",
                    detail={"kind": kind, **concern})
        return None
    alert_id = new_id()
    values = dict(alert_id=alert_id, referral_id=referral.referral_id, reference=referral.reference, kind=kind,
                  force=referral.force, la_code=referral.la_code, level_index=0, level=ctx.timings.alert_levels[0],
                  status="open", raised_at=now, last_raised_at=now, concern_id=concern_id)
    alert = await repo.insert_alert(conn, **values)
    await publish_alert(conn, ctx.settings.file.system.console_base_url, alert, now, referral.acknowledge_by)
    await emit(conn, alert_event(AlertRaised, alert, now), now)
    await schedule_reescalation(conn, ctx, alert, now)
    await audit(conn, "alert.raised", referral.reference, now,
                detail={"alert_id": alert_id, "kind": kind, "level": alert.level, **concern})
    metrics.ALERTS_RAISED.labels(kind=kind).inc()
    return alert_id


async def schedule_reescalation(conn: AsyncConnection, ctx: Context, alert: Row[Any], now: datetime) -> None:
    up = alert_rules.next_level(ctx.timings.alert_levels, alert.level_index)
    if up is not None:
        due = alert_rules.reescalate_at(now, ctx.timings.alert_reescalate_minutes)
        await repo.add_timers(conn, alert.referral_id, alert.reference,
                              [ladder.TimerSpec(ladder.ALERT_REESCALATE, up, due)], now, alert_id=alert.alert_id)


# --- commands --------------------------------------------------------------------

async def acknowledge_alert(conn: AsyncConnection, alert_id: str, actor: str, now: datetime,
                            person: Person | None = None) -> Row[Any] | None:
    """Stop an alert's re-escalation. Idempotent: a second call changes nothing. `person`: the
    signed-in person acting (then `actor` is their id), named in the event and the audit."""
    alert, _ = await _acknowledge(conn, alert_id, actor, now, person=person)
    return alert


async def _acknowledge(conn: AsyncConnection, alert_id: str, actor: str, now: datetime,
                       via: str | None = None, person: Person | None = None) -> tuple[Row[Any] | None, bool]:
    """(the alert, whether this call acknowledged it). Timers are locked before the alert (the
    fire loop's order), so the two never deadlock."""
    alert = await repo.get_alert(conn, alert_id)
    if alert is None:
        return None, False
    if alert.status != "open":
        return alert, False
    cancelled = await repo.cancel_timers(conn, alert.referral_id, [ladder.ALERT_REESCALATE], alert_id=alert_id)
    alert = await repo.get_alert(conn, alert_id, lock=True)
    if alert.status != "open":
        return alert, False
    by, who = named(person)
    if person is not None:
        await people.remember(conn, person, now)
    await repo.update_alert(conn, alert_id, status="acknowledged", acknowledged_at=now, acknowledged_by=actor)
    alert = await repo.get_alert(conn, alert_id)
    await emit(conn, alert_event(AlertAcknowledged, alert, now, acknowledged_by=actor, by=by), now)
    detail = {"alert_id": alert_id, "level": alert.level, "cancelled": cancelled, **({"via": via} if via else {}),
              **who}
    await audit(conn, "alert.acknowledged", alert.reference, now, actor=actor, detail=detail)
    return alert, True


async def record_outcome(conn: AsyncConnection, ctx: Context, alert_id: str, action: str, notes: str | None,
                         actor: str, now: datetime, person: Person | None = None) -> tuple[Row[Any], bool, bool]:
    """What the control room did about an alert, recorded once (DESIGN §3.5); it also
    acknowledges the alert if still open (stopping its re-escalation). The same action again
    changes nothing; a different one is refused (`OutcomeRefused` 409) before any write.
    `notes` are sealed (as JSON, like intake's notes) to the LA's and the force's team keys. Returns (alert, new, acknowledged
    by this call). Lock order as `acknowledge_alert`: the alert's timers, then the alert."""
    alert = await repo.get_alert(conn, alert_id)
    assert alert is not None
    if not outcome_rules.is_new(alert.outcome_action, action):
        await audit(conn, "alert.outcome_recorded", alert.reference, now, actor=actor, outcome="repeated",
                    detail={"alert_id": alert_id, "action": action})
        return alert, False, False
    _, acknowledged = await _acknowledge(conn, alert_id, actor, now, via="outcome", person=person)
    alert = await repo.get_alert(conn, alert_id, lock=True)
    assert alert is not None
    if not outcome_rules.is_new(alert.outcome_action, action):  # another call recorded it meanwhile
        await audit(conn, "alert.outcome_recorded", alert.reference, now, actor=actor, outcome="repeated",
                    detail={"alert_id": alert_id, "action": action})
        return alert, False, acknowledged
    sealed = None
    if notes:
        sealed = seal(json.dumps(notes, ensure_ascii=False).encode(), referral_id=alert.referral_id,
                      recipients=ctx.team_keys(alert.la_code, alert.force), reference=alert.reference,
                      section=OUTCOME_NOTES)
    by, who = named(person)
    if person is not None:
        await people.remember(conn, person, now)
    await repo.update_alert(conn, alert_id, outcome_action=action, outcome_at=now, outcome_by=actor,
                            outcome_notes_sealed=sealed)
    alert = await repo.get_alert(conn, alert_id)
    assert alert is not None
    await emit(conn, alert_event(AlertOutcomeRecorded, alert, now, action=action, recorded_by=actor,
                                 notes=sealed is not None, by=by), now)
    await audit(conn, "alert.outcome_recorded", alert.reference, now, actor=actor, detail={
        "alert_id": alert_id, "kind": alert.kind, "action": action, "notes": sealed is not None,
        "acknowledged": acknowledged, **who})
    return alert, True, acknowledged
