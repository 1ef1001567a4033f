"""The referral lifecycle as pure rules: references, states and transitions.

`status` moves received → acknowledged → decided → closed (close is allowed from
any state). CTP checks and the feedback release run on their own track beside it.
Every action is idempotent: repeating an action that already happened returns the
recorded result and changes nothing (`Change.new` is False, so no new event);
an action that contradicts what happened, or comes after close, is a `Conflict`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.intake.domain.errors import Conflict

# At most 20 characters: the width of the reference columns (longer ones are never issued).
REFERENCE = re.compile(r"^PRV-(\d{4})-(\d{6,11})$")


def format_reference(year: int, sequence: int) -> str:
    """`PRV-<year>-<6-digit sequence>` (more digits only past 999999 in a year)."""
    return f"PRV-{year:04d}-{sequence:06d}"


def is_reference(text: str) -> bool:
    return bool(REFERENCE.fullmatch(text or ""))


@dataclass(frozen=True)
class State:
    status: str
    acknowledged_at: datetime | None = None
    pathway: str | None = None
    checks_outcome: str | None = None
    feedback_at: datetime | None = None
    family_contact_hold: bool = False
    family_contact_lifted: bool = False
    closed_at: datetime | None = None


@dataclass(frozen=True)
class Change:
    new: bool
    values: dict[str, Any] = field(default_factory=dict)


_SAME = Change(False)


def _open(s: State, what: str) -> None:
    if s.status == "closed":
        raise Conflict(f"The referral is closed: {what} is no longer possible", reason="closed")


def acknowledge(s: State, now: datetime) -> Change:
    if s.acknowledged_at is not None:
        return _SAME
    _open(s, "acknowledgement")
    return Change(True, {"status": "acknowledged", "acknowledged_at": now})


def decide(s: State, pathway: str, now: datetime) -> Change:
    if s.pathway is not None:
        if s.pathway == pathway:
            return _SAME
        raise Conflict("The referral already has a different decision", reason="already_decided")
    _open(s, "a decision")
    if s.acknowledged_at is None:
        raise Conflict("Acknowledge the referral before deciding", reason="not_acknowledged")
    return Change(True, {"status": "decided", "pathway": pathway, "decided_at": now})


def complete_checks(s: State, outcome: str, now: datetime) -> Change:
    if s.checks_outcome is not None:
        if s.checks_outcome == outcome:
            return _SAME
        raise Conflict("CTP checks already have a different outcome", reason="already_checked")
    _open(s, "recording CTP checks")
    # DESIGN §4: the checks outcome lifts no_further_sharing (the family-contact hold stays).
    return Change(True, {"checks_outcome": outcome, "checks_at": now, "no_further_sharing": False})


def release_feedback(s: State, now: datetime, family_contact: str = "lift") -> Change:
    """`family_contact` "lift" lifts the family-contact hold with the release; "keep"
    releases feedback to social care and the referrer only and leaves the hold on."""
    if s.feedback_at is not None:
        return _SAME
    _open(s, "releasing feedback")
    if s.checks_outcome is None:
        raise Conflict("CTP checks must be completed before feedback", reason="checks_pending")
    lifts = s.family_contact_hold and family_contact == "lift"
    return Change(True, {"feedback_at": now, "family_contact_hold": s.family_contact_hold and not lifts,
                         "family_contact_lifted": lifts})


def feedback_audiences(family_contact_hold: bool) -> tuple[str, ...]:
    """Guardians hear only once the family-contact hold is off (lifted now or before, or never set)."""
    return ("social_care", "referrer") if family_contact_hold else ("social_care", "referrer", "guardians")


def close(s: State, now: datetime) -> Change:
    if s.status == "closed":
        return _SAME
    return Change(True, {"status": "closed", "closed_at": now})
