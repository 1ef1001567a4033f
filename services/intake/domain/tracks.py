"""The two tracks of a referral (DESIGN §1, §3.3): the local authority's (received →
acknowledged → decided → closed, with the strategy discussion beside it) and CTP
Prevent's (checks pending → checks completed → feedback released → closed). Each agency
closes only its own track; the referral is closed when both are. Pure."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal

from services.intake.domain.errors import Conflict

Track = Literal["la", "ctp"]
TRACK_OF_ROLE: dict[str, Track] = {"social_care": "la", "prevent": "ctp"}
NAMES: dict[Track, str] = {"la": "local authority", "ctp": "CTP Prevent"}


LA_STATUSES = ("received", "acknowledged", "decided", "closed")
CTP_STATUSES = ("checks_pending", "checks_completed", "feedback_released", "closed")


def la_status(*, closed_at: datetime | None, pathway: str | None, acknowledged_at: datetime | None) -> str:
    if closed_at is not None:
        return "closed"
    if pathway is not None:
        return "decided"
    return "acknowledged" if acknowledged_at is not None else "received"


def ctp_status(*, closed_at: datetime | None, feedback_at: datetime | None, checks_at: datetime | None) -> str:
    if closed_at is not None:
        return "closed"
    if feedback_at is not None:
        return "feedback_released"
    return "checks_completed" if checks_at is not None else "checks_pending"


def statuses(row: Any) -> tuple[str, str]:
    """(LA track, CTP track) of a referral row (attribute access: a Row or a namespace)."""
    return (la_status(closed_at=row.la_closed_at, pathway=row.pathway, acknowledged_at=row.acknowledged_at),
            ctp_status(closed_at=row.ctp_closed_at, feedback_at=row.feedback_at, checks_at=row.checks_at))


def _iso(v: datetime | None) -> str | None:
    return v.isoformat() if v is not None else None


def summary(row: Mapping[str, Any], iso: Callable[[datetime | None], str | None] = _iso) -> dict[str, dict[str, Any]]:
    """Both tracks as the status reply and the action replies show them."""
    la = la_status(closed_at=row["la_closed_at"], pathway=row["pathway"], acknowledged_at=row["acknowledged_at"])
    ctp = ctp_status(closed_at=row["ctp_closed_at"], feedback_at=row["feedback_at"], checks_at=row["checks_at"])
    return {"la": {"status": la, "closed_at": iso(row["la_closed_at"])},
            "ctp": {"status": ctp, "closed_at": iso(row["ctp_closed_at"])}}


def require_open(closed_at: datetime | None, track: Track, what: str) -> None:
    if closed_at is not None:
        raise Conflict(f"The {NAMES[track]} track is closed: {what} is no longer possible", reason="closed")


def close(la_closed_at: datetime | None, ctp_closed_at: datetime | None, track: Track | None, client_id: str,
          now: datetime) -> dict[str, Any] | None:
    """The values that close `track` (None: it is already closed, nothing changes). The
    referral itself closes with the second track."""
    if track is None:
        raise Conflict("Only the local authority or CTP Prevent can close a track", reason="no_track")
    mine, other = (la_closed_at, ctp_closed_at) if track == "la" else (ctp_closed_at, la_closed_at)
    if mine is not None:
        return None
    values: dict[str, Any] = {f"{track}_closed_at": now, f"{track}_closed_by": client_id}
    if other is not None:
        values |= {"status": "closed", "closed_at": now, "closed_by": client_id}
    return values
