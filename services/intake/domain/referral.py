"""The referral a MASH system submits (DESIGN §4), modelled on the national
Prevent referral form.

Clear metadata (routing and reporting, no personal data) sits at the top level;
`content` is sealed at intake to the recipient teams; `contacts` (referrer and
guardian email/phone) is sealed separately so the notifier can open it without
ever being able to open `content`. Every model forbids unknown fields.
"""
from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.messages import AgeBand

ConcernType = Literal[
    "islamist", "extreme_right_wing", "left_wing_anarchist_single_issue", "mixed_unclear_unstable",
    "school_massacre", "incel", "conflicted", "other",
]
ReceivedVia = Literal["mash", "out_of_hours_control_room", "ctp_prevent", "police_other"]
YesNoUnknown = Literal["yes", "no", "unknown"]
# Clear reporting codes the national form asks for (optional; never free text).
ReferralSourceSector = Literal["education", "health", "police", "local_authority", "community", "family_friend",
                               "other"]
Gender = Literal["male", "female", "other", "not_known"]

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class HoldingInstructions(_Strict):
    no_further_sharing: bool
    no_family_contact: bool
    reason: str = Field(min_length=1, max_length=500)
    review_by: date | None = None


class Address(_Strict):
    lines: list[str] = Field(min_length=1, max_length=6)
    postcode: str = Field(max_length=10)


class Subject(_Strict):
    given_names: str = Field(min_length=1, max_length=200)
    family_name: str = Field(min_length=1, max_length=200)
    date_of_birth: date | None = None  # may be unknown to the referrer (the national form allows it)
    gender: str | None = Field(default=None, max_length=50)
    address: Address | None = None
    school: str | None = Field(default=None, max_length=300)
    languages: list[str] = Field(default_factory=list, max_length=10)


class Guardian(_Strict):
    name: str = Field(min_length=1, max_length=200)
    relationship: str = Field(max_length=100)
    address: Address | None = None
    parental_responsibility: bool | None = None


class Referrer(_Strict):
    name: str = Field(min_length=1, max_length=200)
    organisation: str = Field(max_length=300)
    role: str | None = Field(default=None, max_length=200)


class OtherAgency(_Strict):
    agency: str = Field(max_length=300)
    involvement: str | None = Field(default=None, max_length=2000)


class ReferralContent(_Strict):
    """Sealed at intake; only the recipient teams can open it."""

    subject: Subject
    parents_guardians: list[Guardian] = Field(default_factory=list, max_length=10)
    referrer: Referrer
    concerns: str = Field(min_length=1, max_length=20000)
    # What the national Prevent referral form also asks.
    how_concern_came_to_light: str | None = Field(default=None, max_length=5000)
    person_aware_of_referral: YesNoUnknown | None = None
    family_aware_of_referral: YesNoUnknown | None = None
    previous_prevent_involvement: YesNoUnknown | None = None
    previous_channel_involvement: YesNoUnknown | None = None
    vulnerabilities: list[str] = Field(default_factory=list, max_length=50)
    other_agencies: list[OtherAgency] = Field(default_factory=list, max_length=20)


class ContactRoute(_Strict):
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9 ]{7,20}$")


class Contacts(_Strict):
    """Sealed separately: the notifier's key and the recipient teams can open it."""

    referrer: ContactRoute
    guardians: list[ContactRoute] = Field(default_factory=list, max_length=10)


class Referral(_Strict):
    client_reference: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._/-]+$")
    force: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    la_code: str = Field(pattern=r"^[EW]\d{8}$")
    received_via: ReceivedVia
    immediate_risk: bool
    age_band: AgeBand
    concern_types: list[ConcernType] = Field(min_length=1, max_length=8)
    referral_source_sector: ReferralSourceSector | None = None
    gender: Gender | None = None
    holding_instructions: HoldingInstructions
    content: ReferralContent
    contacts: Contacts
