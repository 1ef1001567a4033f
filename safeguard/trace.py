"""`safeguard trace REFERENCE` — one referral's path across the three services, in time order.

Reads the services' audit tables (`shared.audit`: actor, action, outcome and a `detail` of
codes and ids — never content, names or contacts), each in the database its service is
configured with, exactly as `safeguard audit verify` opens them; and the notifier's
delivery states, for the notifications and status callbacks not final yet (a final
outcome is in the audit).
`trace_command` takes the settings and output stream so tests run it in-process.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from typing import Any, TextIO

from shared.clock import LONDON
from shared.config import SERVICES, Settings, load_settings

# (service, audit action) → the step a reader looks for
STEPS: dict[tuple[str, str], str] = {
    ("intake", "referral.submit"): "received (sealed, event queued for publishing)",
    ("intake", "referral.acknowledgement"): "acknowledged",
    ("intake", "referral.decision"): "decided",
    ("intake", "referral.checks"): "checks completed",
    ("intake", "referral.feedback"): "feedback released",
    ("intake", "referral.strategy-discussion"): "strategy discussion recorded",
    ("intake", "referral.close"): "closed its track (detail: which; referral_closed with the second)",
    ("intake", "referral.concern"): "concern raised for the control room",
    ("intake", "referral.read"): "metadata read",
    ("intake", "referral.rewrapped"): "envelopes re-sealed to the team's new key",
    ("intake", "referral.sealed_read"): "sealed content fetched",
    ("escalation", "referral.received"): "consumed; clocks scheduled",
    ("escalation", "notification.requested"): "notification requested",
    ("escalation", "alert.raised"): "control-room alert raised",
    ("escalation", "alert.escalated"): "alert re-escalated",
    ("escalation", "alert.acknowledged"): "alert acknowledged",
    ("escalation", "alert.acknowledge"): "alert acknowledgement refused",
    ("escalation", "referral.concern_raised"): "concern consumed",
    ("escalation", "alert.outcome_recorded"): "control-room outcome recorded",
    ("escalation", "alert.outcome"): "control-room outcome refused",
    ("escalation", "alert.notes_shredded"): "outcome notes shredded (retention)",
    ("escalation", "alert.notes_rewrapped"): "outcome notes re-sealed to the team's new key",
    ("escalation", "clock.stopped"): "clock stopped",
    ("escalation", "referral.decided"): "decision consumed",
    ("escalation", "referral.feedback_released"): "feedback consumed",
    ("escalation", "referral.closed"): "close consumed; timers cancelled",
    ("escalation", "referral.track_closed"): "track closed; its clocks stopped",
    ("escalation", "strategy_discussion.requested"): "strategy discussion asked for; its clock started",
    ("escalation", "deadline.reminder"): "reminder fired",
    ("escalation", "deadline.breached"): "deadline breached",
    ("notifier", "hold_recorded"): "consumed; holding instructions recorded",
    ("notifier", "hold_updated"): "holding instructions updated",
    ("notifier", "notification_sent"): "notified (delivered)",
    ("notifier", "notification_failed"): "notification failed",
    ("notifier", "notification_refused"): "notification refused (holding instruction)",
    ("notifier", "callback_sent"): "status callback delivered",
    ("notifier", "callback_failed"): "status callback failed",
}
PENDING = ("created", "sending", "temporary-failure")  # a delivery not final yet


# Refusals audited under their own action, the reason as the outcome: the step names it.
REFUSALS = {("escalation", "alert.acknowledge"), ("escalation", "alert.outcome")}


def step_of(service: str, action: str, outcome: str) -> str:
    step = STEPS.get((service, action), action)
    if outcome in ("rejected", "duplicate", "repeated", "replayed") or (service, action) in REFUSALS:
        step += f" [{outcome}]"
    return step


async def _service_entries(settings: Settings, service: str, reference: str) -> list[dict[str, Any]] | None:
    """The service's audit entries about `reference`; None when it has no audit table yet."""
    import sqlalchemy as sa

    from safeguard.audit_db import service_audit

    async with service_audit(settings, service) as audit:
        if audit is None:
            return None
        table = audit.table
        rows = (await audit.conn.execute(sa.select(table).where(table.c.reference == reference)
                                         .order_by(table.c.seq))).all()
    return [{"at": r.at.astimezone(LONDON).isoformat(), "service": service, "seq": r.seq,
             "step": step_of(service, r.action, r.outcome), "action": r.action, "outcome": r.outcome,
             "actor": r.actor, "detail": r.detail or {}} for r in rows]


async def _pending_deliveries(settings: Settings, reference: str) -> list[dict[str, Any]]:
    """The notifier's deliveries for `reference` that are not final yet (waiting for a retry,
    being sent, deferred), from its state table: their final outcome is audited, not this."""
    import sqlalchemy as sa

    from safeguard.audit_db import service_table
    from services.notifier.adapters.tables import deliveries as table

    async with service_table(settings, "notifier", table) as conn:
        if conn is None:
            return []
        rows = (await conn.execute(sa.select(table).where(table.c.reference == reference,
                                                          table.c.status.in_(PENDING)).order_by(table.c.id))).all()
    return [{"at": r.updated_at.astimezone(LONDON).isoformat(), "service": "notifier", "seq": r.id,
             "step": f"{'status callback' if r.channel.startswith('webhook:') else 'notification'} pending "
                     f"({r.status}; state now, not audited)",
             "action": "delivery.pending", "outcome": r.status, "actor": "notifier",
             "detail": {"notification_id": r.notification_id, "template": r.template, "audience": r.audience,
                        "channel": r.channel, "attempts": r.attempts, "reason": r.reason,
                        "next_attempt_at": r.next_attempt_at.isoformat() if r.next_attempt_at else None}}
            for r in rows]


async def collect(settings: Settings, reference: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Every service's entries for `reference` in time order, each service's status, and the
    notifier's deliveries still in progress."""
    entries: list[dict[str, Any]] = []
    status: dict[str, str] = {}
    for svc in SERVICES:
        found = await _service_entries(settings, svc, reference)
        status[svc] = "no audit table" if found is None else f"{len(found)} entries"
        entries += found or []
    entries += await _pending_deliveries(settings, reference)
    order = {svc: i for i, svc in enumerate(SERVICES)}
    entries.sort(key=lambda e: (datetime.fromisoformat(e["at"]), order[e["service"]], e["seq"]))
    return entries, status


def _detail(detail: dict[str, Any]) -> str:
    return " ".join(f"{k}={v if not isinstance(v, (list, dict)) else json.dumps(v)}" for k, v in detail.items())


def _when(at: str) -> str:
    """2026-11-30 14:05:09.123 GMT: to the millisecond, with the zone abbreviation."""
    t = datetime.fromisoformat(at).astimezone(LONDON)
    return f"{t:%Y-%m-%d %H:%M:%S}.{t.microsecond // 1000:03d} {t:%Z}"


def table(entries: list[dict[str, Any]]) -> str:
    head = ("TIME (Europe/London)", "SERVICE", "STEP", "ACTOR", "DETAIL")
    rows = [(_when(e["at"]), e["service"], e["step"], e["actor"], _detail(e["detail"])) for e in entries]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(4)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
    return "\n".join(fmt.format(*r).rstrip() for r in [head, *rows])


async def trace_command(settings: Settings, reference: str, *, as_json: bool = False,
                        out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    entries, status = await collect(settings, reference)
    if as_json:
        print(json.dumps({"reference": reference, "services": status, "entries": entries}, indent=2), file=out)
    elif entries:
        print(table(entries), file=out)
    if not entries:
        print(f"safeguard trace: no audit entries for {reference} ("
              + ", ".join(f"{k}: {v}" for k, v in status.items()) + ")", file=err)
        return 1
    return 0


def _cmd(args: argparse.Namespace) -> int:
    return asyncio.run(trace_command(load_settings(), args.reference, as_json=args.json))


def register(sub: Any) -> None:
    p = sub.add_parser("trace", help="print one referral's timeline across the services (from the audit)")
    p.add_argument("reference", metavar="REFERENCE")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd)
