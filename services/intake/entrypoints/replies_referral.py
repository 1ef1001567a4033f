"""One referral's replies (DESIGN §3.3): its status and timeline, its sealed envelopes, and each
lifecycle action's reply (`reference`, `status`, `action` and what that action recorded; a
repeat answers the same). Pydantic models, for the OpenAPI document's schemas."""
from __future__ import annotations

from typing import Literal

from services.intake.entrypoints.replies import DateTime, Reference, Reply, Status, Tracks, Metadata
from shared.messages import Agency, ChecksOutcome, ConcernCategory, Pathway, StrategyDecision


class StrategyRecord(Reply):
    held_at: DateTime
    agencies: list[Agency]
    legal_advice_sought: bool
    decision: StrategyDecision
    parents_informed: bool
    family_contact_lifted: bool | None
    recorded_at: DateTime
    recorded_by: str


class Concern(Reply):
    concern_id: str
    category: ConcernCategory
    raised_at: DateTime
    raised_by: str


class Step(Reply):
    event: Literal["received", "acknowledged", "decided", "checks_completed", "feedback_released",
                   "strategy_discussion_recorded", "la_track_closed", "ctp_track_closed", "closed", "concern_raised"]
    at: DateTime
    by: str | None  # a client id, or a person's id (`person:…`)
    by_name: str | None = None  # a person: display name, role and organisation


class ReferralStatus(Metadata):
    """`GET /v1/referrals/{reference}`: status, clocks' deadlines, holds, the strategy discussion's
    record (no notes), concerns and the timeline — never content."""
    acknowledge_by: DateTime
    checks_due_by: DateTime
    strategy_discussion: StrategyRecord | None
    concerns: list[Concern]
    timeline: list[Step]


class Recipient(Reply):
    key_id: str
    sealed_key: str  # base64: the data key sealed (X25519 sealed box) to this team's key


class Envelope(Reply):
    """A sealed section. Version 2 binds `reference` and `section` (with the referral id and key
    version) in the associated data; version 1 (sealed before) names neither."""
    v: Literal[1, 2]
    alg: Literal["XChaCha20-Poly1305"]
    key_version: int
    reference: str | None = None  # version 2: the referral's reference, e.g. PRV-2026-000001
    section: str | None = None  # version 2: "content" or "contacts"
    nonce: str
    ciphertext: str
    recipients: list[Recipient]  # empty once shredded


class Sealed(Reply):
    """`GET /v1/referrals/{reference}/sealed`: the envelopes only the teams' keys open."""
    referral_id: str
    reference: Reference
    content_sealed: Envelope
    contacts_sealed: Envelope


class ActionReply(Reply):
    reference: Reference
    status: Status


class AcknowledgementReply(ActionReply):
    action: Literal["acknowledgement"]
    acknowledged_at: DateTime


class DecisionReply(ActionReply):
    action: Literal["decision"]
    pathway: Pathway
    decided_at: DateTime


class ChecksReply(ActionReply):
    action: Literal["checks"]
    outcome: ChecksOutcome
    checks_at: DateTime


class FeedbackReply(ActionReply):
    action: Literal["feedback"]
    family_contact_lifted: bool  # this release lifted the hold
    audiences: list[Literal["social_care", "referrer", "guardians"]]  # guardians: only once the hold is off
    feedback_at: DateTime


class StrategyReply(ActionReply):
    action: Literal["strategy-discussion"]
    held_at: DateTime  # in UTC
    agencies: list[Agency]
    legal_advice_sought: bool
    decision: StrategyDecision
    parents_informed: bool
    family_contact_lifted: bool  # this record lifted the hold
    strategy_at: DateTime


class CloseReply(ActionReply):
    action: Literal["close"]
    track: Literal["la", "ctp"]  # the caller's own track
    tracks: Tracks
    referral_closed: bool  # both tracks are closed
    closed_at: DateTime | None  # the referral's (both tracks), else null


ACTION_REPLIES: dict[str, type[ActionReply]] = {
    "acknowledgement": AcknowledgementReply, "decision": DecisionReply, "checks": ChecksReply,
    "feedback": FeedbackReply, "strategy-discussion": StrategyReply, "close": CloseReply}
