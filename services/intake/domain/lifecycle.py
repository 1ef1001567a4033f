"""The referral lifecycle as pure rules: references, states and transitions.

The LA's actions (acknowledge, decide, the strategy discussion) run on its track and CTP
Prevent's (checks, feedback) on its own (`domain/tracks.py`); each agency closes only its
own track, and `status` becomes `closed` when both are. The LA's strategy discussion is
recorded once, before or after acknowledgement.
Every action is idempotent: repeating an action that already happened returns the
recorded result and changes nothing (`Change.new` is False, so no new event);
an action that contradicts what happened, or comes after close, is a `Conflict`.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.intake.domain import tracks
from services.intake.domain.errors import Conflict, SchemaInvalid

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
    received_at: datetime | None = None
    strategy: Mapping[str, Any] | None = None  # the recorded strategy discussion (STRATEGY_FIELDS)
    la_closed_at: datetime | None = None
    ctp_closed_at: datetime | None = None


@dataclass(frozen=True)
class Change:
    new: bool
    values: dict[str, Any] = field(default_factory=dict)


_SAME = Change(False)


def _open(s: State, what: str, track: tracks.Track = "la") -> None:
    tracks.require_open(s.la_closed_at if track == "la" else s.ctp_closed_at, track, what)


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
    _open(s, "recording CTP checks", "ctp")
    # DESIGN §4: the checks outcome lifts no_further_sharing (the family-contact hold stays).
    return Change(True, {"checks_outcome": outcome, "checks_at": now, "no_further_sharing": False})


def release_feedback(s: State, now: datetime, family_contact: str = "lift") -> Change:
    """`family_contact` "lift" lifts the family-contact hold with the release; "keep"
    releases feedback to social care and the referrer only and leaves the hold on."""
    if s.feedback_at is not None:
        kept = family_contact == "lift" and s.family_contact_hold  # the release kept the hold
        lifted = family_contact == "keep" and s.family_contact_lifted  # the release lifted it
        if kept or lifted:
            raise Conflict("Feedback was already released with the other family-contact choice",
                           reason="already_released")
        return _SAME
    _open(s, "releasing feedback", "ctp")
    if s.checks_outcome is None:
        raise Conflict("CTP checks must be completed before feedback", reason="checks_pending")
    lifts = s.family_contact_hold and family_contact == "lift"
    return Change(True, {"feedback_at": now, "family_contact_hold": s.family_contact_hold and not lifts,
                         "family_contact_lifted": lifts})


def feedback_audiences(family_contact_hold: bool) -> tuple[str, ...]:
    """Guardians hear only once the family-contact hold is off (lifted now or before, or never set)."""
    return ("social_care", "referrer") if family_contact_hold else ("social_care", "referrer", "guardians")


STRATEGY_FIELDS = ("held_at", "agencies", "legal_advice_sought", "decision", "parents_informed")
HELD_AT_SKEW = timedelta(minutes=5)  # a client's clock may run a little ahead of ours
HELD_AT_EARLIEST = timedelta(days=1)  # a discussion may start before the MASH's submission arrives


def _strategy_key(d: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(tuple(d[f]) if f == "agencies" else d[f] for f in STRATEGY_FIELDS)


def _held_at(s: State, held_at: datetime, now: datetime) -> None:
    if held_at > now + HELD_AT_SKEW:
        raise SchemaInvalid([{"loc": "held_at", "type": "future", "msg": "held_at is in the future"}])
    if s.received_at is not None and held_at < s.received_at - HELD_AT_EARLIEST:
        raise SchemaInvalid([{"loc": "held_at", "type": "too_early",
                              "msg": "held_at is more than a day before the referral was received"}])


def record_strategy(s: State, d: Mapping[str, Any], now: datetime) -> Change:
    """The LA's strategy discussion (`d`: STRATEGY_FIELDS), recorded once: the same record
    again is a repeat, another one a conflict. It needs no acknowledgement (immediate safety
    does not wait). With `ctp_prevent` among the agencies and the parents informed it lifts
    the family-contact hold (DESIGN §4); `strategy_family_contact_lifted` says this record did."""
    _held_at(s, d["held_at"], now)
    if s.strategy is not None:
        if _strategy_key(s.strategy) == _strategy_key(d):
            return _SAME
        raise Conflict("A different strategy discussion is already recorded", reason="already_recorded")
    _open(s, "recording a strategy discussion")
    lifts = s.family_contact_hold and d["parents_informed"] and "ctp_prevent" in d["agencies"]
    return Change(True, {
        "strategy_at": now, "strategy_held_at": d["held_at"], "strategy_agencies": list(d["agencies"]),
        "strategy_legal_advice_sought": d["legal_advice_sought"], "strategy_decision": d["decision"],
        "strategy_parents_informed": d["parents_informed"], "strategy_family_contact_lifted": lifts,
        "family_contact_hold": s.family_contact_hold and not lifts})


def close(s: State, track: tracks.Track | None, client_id: str, now: datetime) -> Change:
    """Close the caller's own track; the referral closes with the second (DESIGN §3.3)."""
    values = tracks.close(s.la_closed_at, s.ctp_closed_at, track, client_id, now)
    return _SAME if values is None else Change(True, values)
