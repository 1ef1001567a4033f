"""Test data, one place for every suite: referrals for the `safeguard keys init` dev set-up.

- `referral(...)` / `referral_body(...)`: a submission as a client posts it (dict / JSON bytes),
  `referral_post_headers(body, key, authority=...)` its signed headers for `POST SUBMIT_PATH`;
  `referral(canary="CANARY-x")` puts a unique marker in every content and contact string
  (emails as `<canary>.n@example.org`, phones as the digits of `canary_phone`), so a test can
  prove none of it ever appears in clear anywhere.
- `referral_received(at, ...)`: intake's `referral.received` event; `referral_event(cls, ...)`
  a later event about the same referral.
- `escalation_referral(...)` / `escalation_referrals(n, ...)`: rows of escalation's referral table.
- `intake_referral_row(received_at, ...)`: a row of intake's `intake_referrals` table.
"""
from __future__ import annotations

import copy
import itertools
import json
import secrets
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from nacl.signing import SigningKey

from shared.httpsig import sign_request
from shared.messages import Holding, Message, ReferralReceived
from shared.worktime import WorkingCalendar, compute_deadlines

LONDON = ZoneInfo("Europe/London")
SUBMIT_PATH = "/v1/referrals"

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


def years_ago(years: int, today: date | None = None) -> date:
    """The date `years` before today (Europe/London); 29 February becomes the 28th."""
    today = today or datetime.now(ZoneInfo("Europe/London")).date()
    try:
        return today.replace(year=today.year - years)
    except ValueError:
        return today.replace(year=today.year - years, day=28)


def referral(canary: str | None = None, phone: str | None = None, **overrides: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    # A 13-year-old whatever the date, so that the age band (11-15) agrees with the date of birth.
    doc["content"]["subject"]["date_of_birth"] = (years_ago(13) - timedelta(days=100)).isoformat()
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


def referral_body(canary: str | None = None, phone: str | None = None, **overrides: Any) -> bytes:
    """`referral(...)` as the JSON body a client posts."""
    return json.dumps(referral(canary, phone, **overrides)).encode()


def referral_post_headers(body: bytes, key: SigningKey, *, authority: str, client_id: str = "dev-mash",
                          idempotency_key: str | None = None) -> dict[str, str]:
    """Headers for POSTing `body` to intake's `SUBMIT_PATH` at `authority` (host:port) as
    `client_id`: RFC 9421-signed (a fresh nonce each call, so a retry signs again), JSON,
    with an Idempotency-Key if given."""
    headers = sign_request(method="POST", path=SUBMIT_PATH, body=body, key_id=client_id, key=key,
                           authority=authority)
    headers["Content-Type"] = "application/json"
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return headers


def london(*args: int) -> datetime:
    """A Europe/London wall-clock time (year, month, day, hour...) as UTC."""
    return datetime(*args, tzinfo=LONDON).astimezone(UTC)


def referral_received(received_at: datetime, *, immediate_risk: bool = False, reference: str | None = None,
                      referral_id: str | None = None, contacts_sealed: dict | None = None,
                      **fields: Any) -> ReferralReceived:
    """intake's `referral.received` for a dev-force referral received (and the event sent) at
    `received_at`, its deadlines by the real working-time rules, holds on; `fields` replace any
    of the event's fields (`at`, `out_of_hours`, `holding`...)."""
    d = compute_deadlines(received_at, WorkingCalendar())
    rid = referral_id or uuid.uuid4().hex
    values: dict[str, Any] = dict(
        referral_id=rid, reference=reference or f"SR-{rid[:8].upper()}", force="dev-force", la_code="E99999999",
        at=received_at, received_at=received_at, received_via="mash", out_of_hours=d.out_of_hours,
        immediate_risk=immediate_risk, age_band="11-15", concern_types=("online",),
        holding=Holding(no_further_sharing=True, no_family_contact=True), acknowledge_by=d.acknowledge_by,
        checks_due_by=d.checks_due_by, contacts_sealed=contacts_sealed)
    return ReferralReceived(**{**values, **fields})


def referral_event(cls: type[Message], received: ReferralReceived, at: datetime, **extra: Any) -> Message:
    """A later event of type `cls` about the referral of `received`, at `at`."""
    return cls(referral_id=received.referral_id, reference=received.reference, force=received.force,
               la_code=received.la_code, at=at, **extra)


def escalation_referral(referral_id: str | None = None, *, now: datetime, reference: str | None = None,
                        force: str = "dev-force", **values: Any) -> dict[str, Any]:
    """A row of escalation's `escalation_referrals`: the columns every row has, then `values`
    (received_at, deadlines, holding...; `escalation_referrals` gives a received one)."""
    rid = referral_id or uuid.uuid4().hex
    return {"referral_id": rid, "reference": reference or f"SR-{rid}", "force": force, "la_code": "E99999999",
            "created_at": now, "updated_at": now, **values}


def escalation_referrals(n: int, prefix: str, now: datetime) -> list[dict[str, Any]]:
    """`n` rows for escalation's referral table, received at `now` in hours, holds on:
    what timers in bulk (process tests, timer benchmarks) refer to."""
    return [escalation_referral(now=now, reference=f"SR-{prefix}-{i:05d}", received_at=now, out_of_hours=False,
                                immediate_risk=False, acknowledge_by=now + timedelta(days=1),
                                checks_due_by=now + timedelta(days=28),
                                holding={"no_further_sharing": True, "no_family_contact": True})
            for i in range(n)]


_INTAKE_ROWS = itertools.count(1)


def intake_referral_row(received_at: datetime, **values: Any) -> dict[str, Any]:
    """A row of intake's `intake_referrals`: a dev-mash referral received in hours at
    `received_at`, not yet acknowledged (acknowledge by a day later, checks due in 28 days),
    content and contacts sealed to nobody; `values` replace any column."""
    n = next(_INTAKE_ROWS)
    row: dict[str, Any] = {
        "id": str(uuid.uuid4()), "reference": f"PRV-{received_at.year:04d}-{n:06d}", "client_id": "dev-mash",
        "client_reference": f"MASH-ROW-{n:06d}", "force": "dev-force", "la_code": "E99999999", "received_via": "mash",
        "immediate_risk": False, "age_band": "11-15", "concern_types": ["mixed_unclear_unstable"],
        "referral_source_sector": None, "gender": None,
        "no_further_sharing": True, "no_family_contact": True, "holding_review_by": None,
        "received_at": received_at, "out_of_hours": False, "acknowledge_by": received_at + timedelta(days=1),
        "checks_due_by": received_at + timedelta(days=28), "status": "received",
        "acknowledged_at": None, "acknowledged_by": None, "pathway": None, "decided_at": None, "decided_by": None,
        "checks_outcome": None, "checks_at": None, "checks_by": None,
        "family_contact_hold": True, "family_contact_lifted": False, "closed_at": None, "closed_by": None,
        "feedback_at": None, "la_closed_at": None, "ctp_closed_at": None,
        "content_sealed": {"v": 1, "recipients": {}}, "contacts_sealed": {"v": 1, "recipients": {}},
    }
    return {**row, **values}
