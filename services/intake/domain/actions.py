"""The lifecycle actions of staff systems as one table (pure): for each action, who may
take it, which rule of `domain.lifecycle` applies it, which event it publishes, which
columns it writes besides the rule's, and what its reply says. `handlers.act` runs them
all the same way; `entrypoints.http` routes `POST /v1/referrals/{reference}/<action>`."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from services.intake.domain import lifecycle as rules
from services.intake.domain import tracks
from services.intake.domain.access import RECIPIENT_TEAMS
from services.intake.domain.commands import (
    Action, ChecksBody, DecisionBody, FeedbackBody, LifecycleCommand, StrategyBody,
)
from shared.messages import (
    ChecksCompleted, FeedbackReleased, Message, ReferralAcknowledged, ReferralDecided, StrategyDiscussionRecorded,
    TrackClosed,
)


@dataclass(frozen=True)
class LifecycleAction:
    who: Mapping[str, str]  # a permitted role -> the referral field its organisation must match
    rule: Callable[[rules.State, LifecycleCommand, datetime], rules.Change]
    event: type[Message]
    event_fields: tuple[str, ...]  # from `facts`, beside the referral's ids, organisations and time
    by: str | None  # the column naming the client that took the action (None: the rule names it)
    reply_fields: tuple[str, ...]  # from `facts`, after reference, status and action
    body: type[BaseModel] | None = None  # the JSON body it takes (None: no body, or `{}`)
    sealed_note: str | None = None  # the column the command's sensitive note is sealed into


SOCIAL_CARE = {"social_care": "la_code"}
PREVENT = {"prevent": "force"}
STRATEGY = (*rules.STRATEGY_FIELDS, "family_contact_lifted")

ACTIONS: dict[Action, LifecycleAction] = {
    "acknowledgement": LifecycleAction(
        who=SOCIAL_CARE, rule=lambda s, _cmd, now: rules.acknowledge(s, now),
        event=ReferralAcknowledged, event_fields=("client_id",),
        by="acknowledged_by", reply_fields=("acknowledged_at",)),
    "decision": LifecycleAction(
        who=SOCIAL_CARE, rule=lambda s, cmd, now: rules.decide(s, cmd.pathway or "", now),
        event=ReferralDecided, event_fields=("pathway",),
        by="decided_by", reply_fields=("pathway", "decided_at"), body=DecisionBody, sealed_note="rationale_sealed"),
    "checks": LifecycleAction(
        who=PREVENT, rule=lambda s, cmd, now: rules.complete_checks(s, cmd.outcome or "", now),
        event=ChecksCompleted, event_fields=("outcome",),
        by="checks_by", reply_fields=("outcome", "checks_at"), body=ChecksBody, sealed_note="checks_notes_sealed"),
    "feedback": LifecycleAction(
        who=PREVENT, rule=lambda s, cmd, now: rules.release_feedback(s, now, cmd.family_contact),
        event=FeedbackReleased, event_fields=("family_contact_lifted", "audiences", "contacts_sealed"),
        by="feedback_by", reply_fields=("family_contact_lifted", "audiences", "feedback_at"), body=FeedbackBody),
    "strategy-discussion": LifecycleAction(
        who=SOCIAL_CARE, rule=lambda s, cmd, now: rules.record_strategy(s, cmd.details, now),
        event=StrategyDiscussionRecorded, event_fields=STRATEGY,
        by="strategy_by", reply_fields=(*STRATEGY, "strategy_at"), body=StrategyBody,
        sealed_note="strategy_notes_sealed"),
    "close": LifecycleAction(
        who=RECIPIENT_TEAMS, rule=lambda s, cmd, now: rules.close(s, cmd.track, cmd.client_id, now),  # type: ignore[arg-type]
        event=TrackClosed, event_fields=("track", "referral_closed"),
        by=None, reply_fields=("track", "tracks", "referral_closed", "closed_at")),
}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def facts(row: Mapping[str, Any], client_id: str, action: Action, track: str | None = None) -> dict[str, Any]:
    """What `action`'s event and reply may name, from the referral row after the action.
    `family_contact_lifted` is what that action did: the feedback release's or the strategy
    discussion's own (a repeat of either says the same as the first time)."""
    times = ("acknowledged_at", "decided_at", "checks_at", "feedback_at", "strategy_at", "closed_at")
    contacts = None if row["shredded_at"] is not None else row["contacts_sealed"]
    lifted = row["strategy_family_contact_lifted" if action == "strategy-discussion" else "family_contact_lifted"]
    return {"client_id": client_id, "pathway": row["pathway"], "outcome": row["checks_outcome"],
            "family_contact_lifted": bool(lifted),
            "audiences": list(rules.feedback_audiences(row["family_contact_hold"])),
            "contacts_sealed": contacts,  # sealed: the notifier opens it for the referrer and guardians
            "held_at": _iso(row["strategy_held_at"]), "agencies": list(row["strategy_agencies"] or ()),
            "legal_advice_sought": row["strategy_legal_advice_sought"], "decision": row["strategy_decision"],
            "parents_informed": row["strategy_parents_informed"],
            "track": track, "tracks": tracks.summary(row), "referral_closed": row["status"] == "closed",
            **{t: _iso(row[t]) for t in times}}
