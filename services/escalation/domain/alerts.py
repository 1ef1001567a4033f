"""Control-room alerts (DESIGN §3.5, §4): levels, re-escalation and the safe summary.

An alert starts at the first configured level. While nobody acknowledges it, it is
raised again one level up every `alert_reescalate_minutes`, up to the top level,
where it stays open and visible. Summaries carry the reference, kind, LA and times
only — never names or narrative.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from shared.clock import LONDON
from shared.messages import ControlRoomAlert

KIND_LABELS = {
    "immediate_safety": "Immediate safety concern",
    "out_of_hours_concern": "Out-of-hours concern",
    "deadline_breach": "Deadline breach",
}
# Console order: the most urgent kind first.
KIND_URGENCY = {"immediate_safety": 0, "deadline_breach": 1, "out_of_hours_concern": 2}


def next_level(levels: tuple[str, ...], index: int) -> int | None:
    """The index one level up, or None at the top."""
    return index + 1 if index + 1 < len(levels) else None


def reescalate_at(raised_at: datetime, minutes: float) -> datetime:
    return raised_at + timedelta(minutes=minutes)


def acknowledge_url(console_base_url: str, alert_id: str) -> str:
    return f"{console_base_url.rstrip('/')}/v1/alerts/{alert_id}/acknowledgement"


def _london(at: datetime) -> str:
    return at.astimezone(LONDON).strftime("%a %d %b %Y %H:%M")


def summary(kind: str, reference: str, la_code: str, raised_at: datetime,
            acknowledge_by: datetime | None = None) -> str:
    """Non-sensitive one-line text: reference, kind, LA, times."""
    text = f"{KIND_LABELS.get(kind, kind)}: referral {reference} for LA {la_code}, raised {_london(raised_at)}"
    if acknowledge_by is not None:
        text += f"; social care to acknowledge by {_london(acknowledge_by)}"
    return text + " (Europe/London)."


def alert_body(*, alert_id: str, kind: str, level: str, reference: str, force: str, la_code: str,
               raised_at: datetime, console_base_url: str, acknowledge_by: datetime | None) -> ControlRoomAlert:
    return ControlRoomAlert(
        alert_id=alert_id, kind=kind, level=level, reference=reference, force=force, la_code=la_code,
        raised_at=raised_at, acknowledge_url=acknowledge_url(console_base_url, alert_id),
        summary=summary(kind, reference, la_code, raised_at, acknowledge_by),
    )


def console_order(alert: dict) -> tuple:
    """Sort key: most urgent kind, highest level, newest first."""
    return (KIND_URGENCY.get(alert["kind"], 9), -alert["level_index"], -alert["raised_at"].timestamp())
