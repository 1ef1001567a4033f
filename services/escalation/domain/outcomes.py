"""What a force control room did about an alert (DESIGN §3.5), as pure rules: the body of
`POST /v1/alerts/{alert_id}/outcome`, how it is validated (error replies name fields, never
values) and the once-only rule (the same action again is a repeat, another one a conflict)."""
from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.messages import OutcomeAction

_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


class OutcomeBody(BaseModel):
    """`notes` is sealed to the LA's and the force's team keys; never stored or logged in clear."""
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    action: OutcomeAction
    notes: str | None = Field(default=None, max_length=10000)


class OutcomeRefused(Exception):
    """A refused outcome: HTTP status, problem slug, audit reason; `errors` name fields only."""

    def __init__(self, status: int, reason: str, detail: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.detail, self.errors = status, reason, detail, errors


def _loc(parts: tuple[Any, ...], error_type: str, data: Any) -> str:
    """A field's location; a key the client made up (it may be a name) by its position only."""
    if error_type == "extra_forbidden" and parts and isinstance(data, dict):
        try:
            return f"(unknown field #{list(data).index(parts[-1]) + 1})"
        except ValueError:
            return "(unknown field)"
    return ".".join(str(p) if _NAME.fullmatch(str(p)) else "(field name withheld)" for p in parts) or "(body)"


def parse(content_type: str, body: bytes) -> OutcomeBody:
    """The outcome body; `OutcomeRefused` (415, 400 or 422) when it is not one."""
    if content_type != "application/json":
        raise OutcomeRefused(415, "unsupported_media_type", "Send application/json")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise OutcomeRefused(400, "malformed_json", "The body is not valid JSON") from None
    try:
        return OutcomeBody.model_validate(data)
    except ValidationError as exc:
        errors = [{"loc": _loc(e["loc"], e["type"], data), "type": e["type"], "msg": e["msg"]}
                  for e in exc.errors(include_input=False, include_url=False, include_context=False)[:20]]
        raise OutcomeRefused(422, "schema_invalid", "The request body failed validation; see errors",
                             errors) from None


def is_new(recorded: str | None, action: str) -> bool:
    """True: nothing recorded yet; False: the same action again (a repeat, nothing changes);
    `OutcomeRefused` 409 when a different outcome is already recorded."""
    if recorded is None:
        return True
    if recorded == action:
        return False
    raise OutcomeRefused(409, "already_recorded", "A different outcome is already recorded for this alert")
