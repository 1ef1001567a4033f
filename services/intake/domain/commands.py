"""What clients ask intake to do: submit a referral (MASH systems) and the lifecycle actions
of staff systems, with the JSON bodies those actions take."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.messages import ChecksOutcome, Pathway


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


Action = Literal["acknowledgement", "decision", "checks", "feedback", "close"]
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


class EmptyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
