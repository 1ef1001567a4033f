"""Message schemas on the bus: the contract between the three services.

Events are named in the past tense; each model knows its routing key and the one service
that produces it (`producer`), which is what consumers' dispatch tables
(`shared/bus/dispatch.py`) and the AsyncAPI document read. Bodies carry
ids, codes and times — never names, narrative or contact details. The only content
that travels is *sealed* (the contact section, which only the notifier and the
recipient teams can open).
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

# Bounded strings: the widths of the consumers' columns, so an oversized value is refused
# as schema_invalid at the door instead of failing the database insert on every retry.
Id = Annotated[str, Field(min_length=1, max_length=64)]
Reference = Annotated[str, Field(min_length=1, max_length=40)]
OrgCode = Annotated[str, Field(min_length=1, max_length=64)]
LaCode = Annotated[str, Field(min_length=1, max_length=9)]
Code = Annotated[str, Field(min_length=1, max_length=40)]

AgeBand = Literal["0-10", "11-15", "16-17"]
Pathway = Literal["immediate_protection", "section_47", "section_17", "early_help", "no_further_action"]
ChecksOutcome = Literal["suitable_for_prevent", "not_suitable", "channel_referral", "police_led"]
AlertKind = Literal["out_of_hours_concern", "immediate_safety", "deadline_breach"]
Agency = Literal["local_authority", "police", "ctp_prevent", "health", "nspcc", "other"]
StrategyDecision = Literal["immediate_safeguarding_action", "section_47_enquiry", "no_immediate_action"]
ConcernCategory = Literal["welfare", "missing", "new_information", "other"]
# What a force control room did about an alert (DESIGN §3.5).
OutcomeAction = Literal["welfare_check_completed", "passed_to_patrol", "referred_to_la_edt", "no_action_needed"]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    routing_key: ClassVar[str]  # a key ending in "." is a prefix (e.g. the retry queues)
    producer: ClassVar[str]  # the one service that publishes it

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Message":
        return cls.model_validate_json(data)


class Holding(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    no_further_sharing: bool
    no_family_contact: bool


class Actor(BaseModel):
    """Who took a step: a system client (`id` its client id), or a named person (`id`
    `person:…`, with the identity provider's issuer and subject and the display name) —
    signed in to the pages, or named by a staff system's `On-Behalf-Of` header (`client_id`:
    the system that relayed it). Staff identities only, never anything about the child."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: Annotated[str, Field(min_length=1, max_length=100)]
    role: Code
    organisation: OrgCode | None = None
    issuer: Annotated[str, Field(max_length=300)] | None = None
    subject: Annotated[str, Field(max_length=200)] | None = None
    name: Annotated[str, Field(max_length=100)] | None = None
    client_id: Annotated[str, Field(max_length=100)] | None = None


class ReferralEvent(Message):
    producer: ClassVar[str] = "intake"
    referral_id: Id
    reference: Reference
    force: OrgCode
    la_code: LaCode
    at: datetime
    by: Actor | None = None  # who took the step (staff actions); None for a submission


class ReferralReceived(ReferralEvent):
    routing_key: ClassVar[str] = "referral.received"
    received_at: datetime
    received_via: Code
    out_of_hours: bool
    immediate_risk: bool
    age_band: AgeBand
    concern_types: tuple[Code, ...] = Field(max_length=20)
    holding: Holding
    acknowledge_by: datetime
    checks_due_by: datetime
    contacts_sealed: dict[str, Any] | None = None  # sealed envelope; the notifier opens it
    holding_review_by: date | None = None  # when CTP Prevent is reminded that a hold is still on


class ReferralAcknowledged(ReferralEvent):
    routing_key: ClassVar[str] = "referral.acknowledged"
    client_id: Annotated[str, Field(min_length=1, max_length=100)]


class ReferralDecided(ReferralEvent):
    routing_key: ClassVar[str] = "referral.decided"
    pathway: Pathway


class ChecksCompleted(ReferralEvent):
    routing_key: ClassVar[str] = "referral.checks_completed"
    outcome: ChecksOutcome


class FeedbackReleased(ReferralEvent):
    routing_key: ClassVar[str] = "referral.feedback_released"
    family_contact_lifted: bool  # this release lifted the family-contact hold
    audiences: tuple[Literal["social_care", "referrer", "guardians"], ...]
    contacts_sealed: dict[str, Any] | None = None  # sealed envelope; the notifier opens it


class StrategyDiscussionRecorded(ReferralEvent):
    """intake: the LA recorded the strategy discussion (its notes stay sealed in intake)."""

    routing_key: ClassVar[str] = "referral.strategy_discussion_recorded"
    held_at: datetime
    agencies: tuple[Agency, ...] = Field(min_length=1, max_length=6)
    legal_advice_sought: bool
    decision: StrategyDecision
    parents_informed: bool
    family_contact_lifted: bool  # with ctp_prevent present and the parents informed (DESIGN §4)


class TrackClosed(ReferralEvent):
    """intake: one agency closed its own track (DESIGN §3.3); `referral_closed` when it was
    the second, so the referral is closed."""

    routing_key: ClassVar[str] = "referral.track_closed"
    track: Literal["la", "ctp"]
    referral_closed: bool


class ConcernRaised(ReferralEvent):
    """intake: the LA (its emergency duty team out of hours) raised a concern about a referral
    for its force's control room (DESIGN §3.3). Not once-only: each concern has its own id.
    The category is a code; what the concern is about is never on the bus."""

    routing_key: ClassVar[str] = "referral.concern_raised"
    concern_id: Id
    category: ConcernCategory
    client_id: Annotated[str, Field(min_length=1, max_length=100)]


class ReferralClosed(ReferralEvent):
    """Before two tracks: one close for the whole referral (still consumed, for events in flight)."""

    routing_key: ClassVar[str] = "referral.closed"


class NotificationRequested(Message):
    """escalation → notifier: send one message to one audience."""

    routing_key: ClassVar[str] = "notification.requested"
    producer: ClassVar[str] = "escalation"
    notification_id: Id
    referral_id: Id
    reference: Reference
    template: Code  # e.g. "receipt", "ack_reminder", "immediate_safety", "feedback"
    audience: Annotated[str, Field(min_length=1, max_length=60)]  # "la:mash_team", "referrer", "guardians"
    la_code: LaCode
    force: OrgCode
    priority: Literal["normal", "urgent"] = "normal"
    holding: Holding
    times: dict[str, datetime] = Field(default_factory=dict)
    contacts_sealed: dict[str, Any] | None = None
    requested_at: datetime


class NotificationOutcome(Message):
    producer: ClassVar[str] = "notifier"
    notification_id: Id
    reference: Reference
    channel: Code
    status: Literal["delivered", "permanent-failure", "technical-failure", "refused"]
    reason: str | None = None
    at: datetime


class NotificationSent(NotificationOutcome):
    routing_key: ClassVar[str] = "notification.sent"


class NotificationFailed(NotificationOutcome):
    routing_key: ClassVar[str] = "notification.failed"


class ControlRoomAlert(Message):
    """The body of a message on `control-room.<force>` (DESIGN §3.5)."""

    routing_key: ClassVar[str] = "control-room."  # the real key is control-room.<force>
    producer: ClassVar[str] = "escalation"
    alert_id: Id
    kind: AlertKind
    level: Code
    reference: Reference
    force: OrgCode
    la_code: LaCode
    raised_at: datetime
    acknowledge_url: str
    summary: str


class StatusCallback(BaseModel):
    """One status callback (DESIGN §3.6) the notifier owes one subscription: the event's
    metadata as the Standard Webhooks body will carry it (`data`: reference, la_code, force,
    status, tracks, clocks, pathway?, outcome? — never content). It travels only inside a
    notifier retry copy; `template`, `audience` and `priority` let the notifier's delivery
    lifecycle treat it like a request (`notification_id`: one per event, from its message id)."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    notification_id: Id
    subscription: Annotated[str, Field(min_length=1, max_length=32)]
    type: Code  # the event's routing key, e.g. "referral.acknowledged"
    referral_id: Id
    reference: Reference
    la_code: LaCode
    force: OrgCode
    timestamp: datetime  # when the event happened
    data: dict[str, Any]

    @property
    def template(self) -> str:
        return self.type

    @property
    def audience(self) -> str:
        return f"subscription:{self.subscription}"

    @property
    def priority(self) -> str:
        return "normal"


class RetryCopy(Message):
    """notifier → itself through a `notifier.retry.<s>s` delay queue: one channel's retry
    (or a deferred first attempt) of a request, or of a status callback."""

    routing_key: ClassVar[str] = "notifier.retry."  # notifier.retry.<s>s
    producer: ClassVar[str] = "notifier"
    channel: str
    attempt: int
    request: NotificationRequested | StatusCallback


class DeadlineEvent(Message):
    """escalation: a clock's reminder or breach fired (ids, codes and times only)."""

    producer: ClassVar[str] = "escalation"
    timer_id: int
    referral_id: str
    reference: str
    la_code: str
    force: str
    kind: str  # ack_reminder, ack_breach, ...
    clock: str  # acknowledge_by | decide_by | checks_due_by
    due_at: datetime
    deadline: datetime | None
    at: datetime


class DeadlineReminder(DeadlineEvent):
    routing_key: ClassVar[str] = "deadline.reminder"


class DeadlineBreached(DeadlineEvent):
    routing_key: ClassVar[str] = "deadline.breached"


class AlertEvent(Message):
    """escalation: a control-room alert's lifecycle."""

    producer: ClassVar[str] = "escalation"
    alert_id: str
    referral_id: str
    reference: str
    force: str
    la_code: str
    kind: AlertKind
    level: str
    at: datetime
    by: Actor | None = None  # the signed-in person who acknowledged or recorded it (the console)


class AlertRaised(AlertEvent):
    routing_key: ClassVar[str] = "alert.raised"


class AlertEscalated(AlertEvent):
    routing_key: ClassVar[str] = "alert.escalated"


class AlertAcknowledged(AlertEvent):
    routing_key: ClassVar[str] = "alert.acknowledged"
    acknowledged_by: str


class AlertOutcomeRecorded(AlertEvent):
    """escalation: the control room recorded what it did about an alert (DESIGN §3.5); its
    notes, if any, stay sealed in escalation (`notes` only says whether there are some)."""

    routing_key: ClassVar[str] = "alert.outcome_recorded"
    action: OutcomeAction
    recorded_by: Annotated[str, Field(min_length=1, max_length=100)]
    notes: bool


# The events a status-callback subscription may ask for (DESIGN §3.6), in that order.
CALLBACK_EVENTS: tuple[str, ...] = tuple(m.routing_key for m in (
    ReferralReceived, ReferralAcknowledged, ReferralDecided, StrategyDiscussionRecorded, ChecksCompleted,
    FeedbackReleased, TrackClosed, DeadlineReminder, DeadlineBreached, AlertRaised, AlertAcknowledged,
))
DEADLINE_EVENTS: dict[str, type[DeadlineEvent]] = {
    DeadlineReminder.routing_key: DeadlineReminder, DeadlineBreached.routing_key: DeadlineBreached,
}
# Every message on the bus, by routing key (or routing-key prefix): the one table of who
# produces what, read by the consumers' dispatch tables and the AsyncAPI generator.
CATALOGUE: dict[str, type[Message]] = {
    m.routing_key: m
    for m in (
        ReferralReceived, ReferralAcknowledged, ReferralDecided, StrategyDiscussionRecorded, ChecksCompleted,
        FeedbackReleased, TrackClosed, ConcernRaised, ReferralClosed, NotificationRequested, NotificationSent,
        NotificationFailed, DeadlineReminder, DeadlineBreached, AlertRaised, AlertEscalated, AlertAcknowledged,
        AlertOutcomeRecorded, ControlRoomAlert, RetryCopy,
    )
}
