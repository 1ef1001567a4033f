"""What the control-room console shows of an alert (pure): plain-English kinds, levels and
outcomes, Europe/London clock times and ages. Metadata only: reference, kind, council,
level, times and the staff who acted — never anything about the child."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from services.escalation.domain.alerts import KIND_LABELS, console_order
from shared.clock import LONDON

LEVEL_LABELS = {"control_room": "Control room", "duty_inspector": "Duty inspector",
                "superintendent": "Superintendent"}
# DESIGN §3.5 `action`, in the order the form offers them
OUTCOME_LABELS = {
    "welfare_check_completed": "Welfare check completed",
    "passed_to_patrol": "Passed to a patrol",
    "referred_to_la_edt": "Referred to the council's emergency duty team",
    "no_action_needed": "No action needed",
}


def level_label(level: str) -> str:
    return LEVEL_LABELS.get(level, level.replace("_", " ").capitalize())


def clock(at: datetime, now: datetime) -> str:
    """"14:02" today (UK time), else "Fri 6 Nov 14:02"."""
    local, today = at.astimezone(LONDON), now.astimezone(LONDON).date()
    hhmm = local.strftime("%H:%M")
    return hhmm if local.date() == today else f"{local.strftime('%a')} {local.day} {local.strftime('%b')} {hhmm}"


def age(at: datetime, now: datetime) -> str:
    """"12 min ago", "2 h 5 min ago"."""
    minutes = max(int((now - at).total_seconds() // 60), 0)
    return f"{minutes // 60} h {minutes % 60} min ago" if minutes >= 60 else f"{minutes} min ago"


def item(alert: Mapping[str, Any], now: datetime, council: Callable[[str], str],
         names: Mapping[str, str]) -> dict[str, Any]:
    """One alert as the page and its live updates show it (strings ready to display)."""
    acknowledged = alert["status"] == "acknowledged"
    by = alert.get("acknowledged_by")
    return {
        "alert_id": alert["alert_id"], "kind": alert["kind"], "kind_label": KIND_LABELS.get(alert["kind"], alert["kind"]),
        "urgent": alert["kind"] == "immediate_safety", "reference": alert["reference"],
        "council": council(alert["la_code"]), "level": level_label(alert["level"]),
        "raised_at": alert["raised_at"].isoformat(), "raised": clock(alert["raised_at"], now),
        "raised_age": age(alert["raised_at"], now), "acknowledged": acknowledged,
        "acknowledged_by": names.get(by, by) if acknowledged and by else None,  # a person's name, or a system's id
        "acknowledged_at": clock(alert["acknowledged_at"], now) if acknowledged and alert["acknowledged_at"] else None,
    }


def ordered(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Open alerts first, most urgent first; then those acknowledged and awaiting an outcome."""
    return sorted(alerts, key=lambda a: (a["status"] != "open", *console_order(a)))
