"""What clients ask intake to do: submit a referral (MASH systems) and the lifecycle actions
of staff systems, with the JSON bodies those actions take."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, field_validator

from shared.web.identity import Person
from shared.messages import Agency, ChecksOutcome, ConcernCategory, Pathway, StrategyDecision


@dataclass(frozen=True)
class SubmitReferral:
    client_id: str
    body: bytes
    idempotency_key: str | None = None
    correlation_id: str | None = None
    via: str = "http"


@dataclass(frozen=True)
class Submitted:
    reply: dict[str, Any]  # the 202 reply (a replayed submission gets the stored one)


Action = Literal["acknowledgement", "decision", "checks", "feedback", "strategy-discussion", "close"]
FamilyContact = Literal["lift", "keep"]


@dataclass(frozen=True)
class LifecycleCommand:
    action: Action
    client_id: str
    reference: str
    pathway: str | None = None
    outcome: str | None = None
    sensitive_note: str | None = None  # rationale or CTP notes: sealed, never stored in clear
    family_contact: FamilyContact = "lift"  # feedback: lift the family-contact hold, or keep it
    correlation_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)  # the body's other fields (not the note)
    track: str | None = None  # the caller's track ("la" | "ctp"), from its role (set by `handlers.act`)
    person: Person | None = None  # the named person: signed in (client_id is theirs) or On-Behalf-Of


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    pathway: Pathway
    rationale: str | None = Field(default=None, max_length=10000)


class ChecksBody(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    outcome: ChecksOutcome
    notes: str | None = Field(default=None, max_length=10000)


class FeedbackBody(BaseModel):
    """Optional: without a body (or with `{}`) a release lifts the family-contact hold."""
    model_config = ConfigDict(extra="forbid")
    family_contact: FamilyContact = "lift"


AGENCIES: tuple[str, ...] = get_args(Agency)


class StrategyBody(BaseModel):
    """The strategy discussion the LA records (DESIGN §1 step 3, §3.3): who took part, whether
    legal advice was sought, the decision, and whether the parents were informed; `notes` is
    sealed to the recipient teams like a decision's rationale. `held_at` must carry an offset
    (it is kept in UTC); `agencies` must not repeat and are kept in the order listed here."""
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    held_at: AwareDatetime
    agencies: list[Agency] = Field(min_length=1, max_length=len(AGENCIES), json_schema_extra={"uniqueItems": True})
    legal_advice_sought: StrictBool
    decision: StrategyDecision
    parents_informed: StrictBool
    notes: str | None = Field(default=None, max_length=10000)

    @field_validator("held_at", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if not isinstance(value, str):  # not a number of seconds: an ISO 8601 date-time with offset
            raise ValueError("held_at must be an ISO 8601 date-time with an offset")
        return value

    @field_validator("held_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("held_at is out of range") from None

    @field_validator("agencies")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("agencies must not repeat")
        return sorted(value, key=AGENCIES.index)


@dataclass(frozen=True)
class RaiseConcern:
    """The LA raises an out-of-hours concern about a referral for its force's control room
    (DESIGN §3.3). Each one is new; an `Idempotency-Key` makes a retry return the first reply."""
    client_id: str
    reference: str
    body: bytes
    idempotency_key: str | None = None
    correlation_id: str | None = None
    person: Person | None = None


class ConcernBody(BaseModel):
    """What kind of concern it is, as a code: what it is about never reaches intake."""
    model_config = ConfigDict(extra="forbid")
    category: ConcernCategory


class EmptyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
