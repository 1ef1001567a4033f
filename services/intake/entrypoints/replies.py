"""What intake's HTTP API answers (DESIGN §3.3), as pydantic models: the OpenAPI document's reply
schemas are generated from them (entrypoints/openapi.py) and the tests check real replies against
those schemas. Times are ISO 8601 with an offset (Europe/London); none of these carries content.
One referral's replies (status, sealed, actions): replies_referral.py."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.intake.domain.referral import ConcernType, ReceivedVia
from shared.messages import AgeBand, ChecksOutcome, ConcernCategory, Pathway

REFERENCE = r"^PRV-\d{4}-\d{6,11}$"
DateTime = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
Reference = Annotated[str, Field(pattern=REFERENCE)]
Status = Literal["received", "acknowledged", "decided", "closed"]


class Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Accepted(Reply):
    """202 to a submission (a repeat with the same Idempotency-Key and body: the first reply)."""
    referral_id: str
    reference: Reference
    status: Literal["received"]
    received_at: DateTime
    out_of_hours: bool
    acknowledge_by: DateTime
    checks_due_by: DateTime


class ConcernRaised(Reply):
    """The reply to a concern: a new one (or, for a repeated Idempotency-Key, the first reply)."""
    reference: Reference
    status: Status
    action: Literal["concern"]
    concern_id: str
    category: ConcernCategory
    raised_at: DateTime
    raised_by: str


class Problem(BaseModel):
    """RFC 9457; `reason` is a stable code; 422: `errors` name fields, never values; a 401 in a
    sandbox (`[system] sandbox = true`) also gives the `signature_base` intake computed."""
    type: str
    title: str
    status: int
    detail: str | None = None
    reason: str | None = None
    errors: list[dict[str, str]] | None = None
    signature_base: str | None = None


class Holding(Reply):
    no_further_sharing: bool
    no_family_contact: bool  # the family-contact hold as it is now
    review_by: Annotated[str, Field(json_schema_extra={"format": "date"})] | None


class TrackState(Reply):
    status: Literal["received", "acknowledged", "decided", "closed", "checks_pending", "checks_completed",
                    "feedback_released"]
    closed_at: DateTime | None


class Tracks(Reply):
    la: TrackState  # received → acknowledged → decided → closed
    ctp: TrackState  # checks_pending → checks_completed → feedback_released → closed


class Metadata(Reply):
    referral_id: str
    reference: Reference
    status: Status
    client_reference: str
    force: str
    la_code: str
    received_via: ReceivedVia
    immediate_risk: bool
    age_band: AgeBand
    concern_types: list[ConcernType]
    holding: Holding
    received_at: DateTime
    out_of_hours: bool
    pathway: Pathway | None
    checks_outcome: ChecksOutcome | None
    family_contact_lifted: bool
    tracks: Tracks
    shredded: bool  # the sealed content was destroyed (retention): /sealed answers 410


class ClockState(Reply):
    clock: Literal["acknowledge_by", "decide_by", "strategy_discussion_by", "checks_due_by"]
    due: DateTime
    state: Literal["running", "overdue", "met", "met_late", "stopped"]  # stopped: its track closed first
    done_at: DateTime | None


class ListItem(Metadata):
    updated_at: DateTime  # when its metadata last changed (what `updated_since` compares)
    strategy_discussion_recorded: bool
    clocks: list[ClockState]  # every clock of both tracks, as of the request
    overdue: bool  # a running clock is past its deadline
    next_due: DateTime | None  # the earliest deadline still running


class ReferralList(Reply):
    """`GET /v1/referrals`: one page, newest first; `next_cursor` null on the last page."""
    items: list[ListItem]
    next_cursor: str | None
