"""Test data: valid referrals for the `safeguard keys init` dev set-up.

`referral(canary="CANARY-x")` puts a unique marker in every content and contact
string (emails as `<canary>.n@example.org`, phones as the digits of `canary_phone`),
so a test can prove none of it ever appears in clear anywhere.
"""
from __future__ import annotations

import copy
import itertools
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

BASE: dict[str, Any] = {
    "client_reference": "MASH-TEST-0001",
    "force": "dev-force",
    "la_code": "E99999999",
    "received_via": "mash",
    "immediate_risk": False,
    "age_band": "11-15",
    "concern_types": ["mixed_unclear_unstable"],
    "holding_instructions": {"no_further_sharing": True, "no_family_contact": True,
                             "reason": "CTP checks pending", "review_by": "2026-12-22"},
    "content": {
        "subject": {"given_names": "Sam", "family_name": "Example", "date_of_birth": "2012-05-14",
                    "gender": "not stated",
                    "address": {"lines": ["1 Example Street", "Dev Borough"], "postcode": "ZZ1 1ZZ"},
                    "school": "Dev Borough Academy", "languages": ["English"]},
        "parents_guardians": [{"name": "Alex Example", "relationship": "mother",
                               "address": {"lines": ["1 Example Street"], "postcode": "ZZ1 1ZZ"},
                               "parental_responsibility": True}],
        "referrer": {"name": "PC Dev Officer", "organisation": "Dev Force MASH", "role": "MASH officer"},
        "concerns": "Fictional example narrative for tests only.",
        "vulnerabilities": ["fictional example"],
        "other_agencies": [{"agency": "Dev Borough Academy", "involvement": "school"}],
    },
    "contacts": {"referrer": {"email": "referrer@dev-force.example", "phone": "+44 20 7946 0000"},
                 "guardians": [{"email": "guardian@dev-borough.example", "phone": "07700 900000"}]},
}


def new_canary() -> str:
    return f"CANARY{secrets.token_hex(6)}"


def canary_phone() -> str:
    return "0" + "".join(str(secrets.randbelow(10)) for _ in range(10))


def _mark(value: Any, canary: str, phone: str, n: itertools.count, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _mark(v, canary, phone, n, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_mark(v, canary, phone, n, key) for v in value]
    if not isinstance(value, str) or key in ("date_of_birth",):
        return value
    if key == "email":
        return f"{canary}.{next(n)}@example.org"
    if key == "phone":
        return phone
    if key == "postcode":
        return postcode_of(canary)
    return f"{canary}-{next(n)}"


def referral(canary: str | None = None, phone: str | None = None, **overrides: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    if canary:
        n = itertools.count()
        doc["content"] = _mark(doc["content"], canary, phone or canary_phone(), n)
        doc["contacts"] = _mark(doc["contacts"], canary, phone or canary_phone(), n)
    for key, value in overrides.items():
        doc[key] = value
    return doc


def postcode_of(canary: str) -> str:
    """The canary's postcode form (postcodes are at most 10 characters)."""
    return "ZQ" + canary[-6:].upper()


def escalation_referrals(n: int, prefix: str, now: datetime) -> list[dict[str, Any]]:
    """`n` rows for escalation's referral table, received at `now` in hours, holds on:
    what timers in bulk (process tests, timer benchmarks) refer to."""
    return [dict(referral_id=uuid.uuid4().hex, reference=f"SR-{prefix}-{i:05d}", force="dev-force",
                 la_code="E99999999", received_at=now, out_of_hours=False, immediate_risk=False,
                 acknowledge_by=now + timedelta(days=1), checks_due_by=now + timedelta(days=28),
                 holding={"no_further_sharing": True, "no_family_contact": True}, created_at=now, updated_at=now)
            for i in range(n)]
