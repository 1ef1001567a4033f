"""The referral page's forms (pure): a posted form becomes the same body the signed API takes
(`domain/commands.py`, validated by the same pydantic models), and a refusal becomes a GOV.UK
error summary — each message linked to its field. A note (rationale, notes) is returned apart,
to be sealed; it is never kept for showing the form again."""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from services.intake.domain.commands import ChecksBody, ConcernBody, DecisionBody, FeedbackBody, StrategyBody
from services.intake.domain.errors import SchemaInvalid
from services.intake.domain.parsing import validate
from shared.clock import LONDON

BODIES: dict[str, type[BaseModel] | None] = {
    "acknowledgement": None, "decision": DecisionBody, "strategy-discussion": StrategyBody,
    "concerns": ConcernBody, "checks": ChecksBody, "feedback": FeedbackBody, "close": None}
NOTES = ("rationale", "notes")
# a body field -> (the id of the element an error links to, the GOV.UK error message)
FIELDS = {
    "pathway": ("decision-pathway", "Select the next step for this referral"),
    "rationale": ("decision-rationale", "The rationale must be 10,000 characters or fewer"),
    "outcome": ("checks-outcome", "Select the outcome of the CTP checks"),
    "family_contact": ("feedback-family-contact", "Select whether to keep or lift the family-contact hold"),
    "held_at": ("strategy-held-at-day", "Enter the date and time the discussion was held, for example 27 3 2026 and 14:30"),
    "agencies": ("strategy-agencies", "Select the agencies that took part"),
    "legal_advice_sought": ("strategy-legal-advice", "Select yes if legal advice was sought"),
    "decision": ("strategy-decision", "Select what the strategy discussion decided"),
    "parents_informed": ("strategy-parents-informed", "Select yes if the parents were informed"),
    "category": ("concern-category", "Select what the concern is about"),
    "confirm": ("close-confirm", "Confirm that you want to close your track"),
}
HELD_AT = {"future": "The date and time the discussion was held must be in the past",
           "too_early": "The discussion was held more than a day before the referral was received"}
_TIME = re.compile(r"^\s*(\d{1,2})[:.](\d{2})\s*$")


@dataclass
class Posted:
    action: str
    body: BaseModel | None
    note: str | None
    raw: bytes = b""  # the JSON body (a concern's Idempotency-Key covers it)


@dataclass
class Refusal:
    """The error summary of a refused form, and the values to show the form again with."""
    errors: list[dict[str, str]]  # [{"text", "href"}]
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def by_id(self) -> dict[str, str]:
        return {e["href"][1:]: e["text"] for e in self.errors}


def _held_at(form: Mapping[str, str]) -> str | None:
    parts = [form.get(f"held_at-{p}", "").strip() for p in ("day", "month", "year")]
    clock = _TIME.match(form.get("held_at-time", ""))
    if not (all(p.isdigit() for p in parts) and clock):
        return None
    day, month, year = map(int, parts)
    try:
        return datetime(year, month, day, int(clock[1]), int(clock[2]), tzinfo=LONDON).isoformat()
    except ValueError:
        return None


def _yes_no(value: str | None) -> bool | None:
    return {"yes": True, "no": False}.get(value or "")


def data_of(action: str, form: Mapping[str, str], agencies: list[str]) -> dict[str, Any]:
    """The JSON body `action` takes, from the posted form (empty fields left out)."""
    if action == "strategy-discussion":
        data: dict[str, Any] = {"held_at": _held_at(form), "agencies": agencies,
                                "legal_advice_sought": _yes_no(form.get("legal_advice_sought")),
                                "decision": form.get("decision") or None,
                                "parents_informed": _yes_no(form.get("parents_informed")), "notes": form.get("notes")}
    else:
        names = {"decision": ("pathway", "rationale"), "checks": ("outcome", "notes"),
                 "feedback": ("family_contact",), "concerns": ("category",)}.get(action, ())
        data = {n: form.get(n) for n in names}
    return {k: v for k, v in data.items() if v not in (None, "")}


def parse(action: str, form: Mapping[str, str], agencies: list[str]) -> Posted:
    """The posted form as a validated body; `SchemaInvalid` (as the API's) when it is not one."""
    if action == "close" and form.get("confirm") != "yes":
        raise SchemaInvalid([{"loc": "confirm", "type": "missing", "msg": "Confirm closing the track"}])
    model = BODIES[action]
    if model is None:
        return Posted(action, None, None)
    data = data_of(action, form, agencies)
    if action == "strategy-discussion" and "held_at" not in data:
        raise SchemaInvalid([{"loc": "held_at", "type": "missing", "msg": "Enter the date and time"}])
    body = validate(model, data)
    note = next((getattr(body, n) for n in NOTES if getattr(body, n, None)), None)
    return Posted(action, body, note, json.dumps(data, sort_keys=True).encode())


def refusal(err: SchemaInvalid, action: str, form: Mapping[str, str], agencies: list[str]) -> Refusal:
    """The error summary for a body the API would answer 422; the form's values (never a note)."""
    errors, seen = [], set()
    for e in err.extensions.get("errors", []):
        name = re.split(r"[.\[]", str(e["loc"]))[0]
        if name in seen:
            continue
        seen.add(name)
        href, text = FIELDS.get(name, ("actions", "Check the answers and try again"))
        if name in NOTES:
            href = "decision-rationale" if action == "decision" else f"{action.split('-')[0]}-notes"
            text = "Notes must be 10,000 characters or fewer" if name == "notes" else text
        if name == "held_at":
            text = HELD_AT.get(e.get("type", ""), text)
        errors.append({"text": text, "href": f"#{href}"})
    values = {k: v for k, v in form.items() if k not in (*NOTES, "csrf_token")}
    return Refusal(errors, {**values, "agencies": agencies, "note_dropped": any(form.get(n) for n in NOTES)})


def conflict(detail: str | None) -> Refusal:
    """The error summary for an action the referral's state does not allow (the API's 409)."""
    return Refusal([{"text": detail or "This cannot be done now", "href": "#actions"}])
