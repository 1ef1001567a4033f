"""The list API's query (pure): `GET /v1/referrals?status=&overdue=&updated_since=&cursor=&limit=`
(DESIGN §3.3). Each bad parameter is a 422 naming the parameter, never its value; a parameter
this API does not know is named by its position only (its name is the client's text).

The cursor is opaque to clients: base64url of the keyset position after the last referral of
a page (its `received_at` and `id`; pages run newest first) and a fingerprint of the filters
it was made for. Referrals received after the first page came out are not in later pages,
older ones are; none is skipped or repeated, whatever is inserted between two pages."""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from services.intake.domain.errors import SchemaInvalid
from services.intake.domain.tracks import LA_STATUSES

STATUSES = LA_STATUSES  # a referral's `status`: received, acknowledged, decided, closed
DEFAULT_LIMIT, MAX_LIMIT = 50, 200
PARAMETERS = ("status", "overdue", "updated_since", "cursor", "limit")
_OFFSET_AS_SPACE = re.compile(r" (\d\d(:?\d\d)?)$")  # an unencoded "+" in a query string reads as " "


@dataclass(frozen=True)
class Position:
    received_at: datetime
    id: str


@dataclass(frozen=True)
class ListQuery:
    status: str | None = None
    overdue: bool = False
    updated_since: datetime | None = None
    after: Position | None = None  # from `cursor`: the page starts after this referral
    limit: int = DEFAULT_LIMIT

    def filters(self) -> dict[str, Any]:
        """The filters (no cursor, no limit): in the audit, and fingerprinted into each cursor."""
        return {"status": self.status, "overdue": self.overdue,
                "updated_since": self.updated_since.isoformat() if self.updated_since else None}

    def cursor_after(self, received_at: datetime, referral_id: str) -> str:
        raw = json.dumps({"t": received_at.astimezone(UTC).isoformat(), "i": referral_id,
                          "f": _fingerprint(self.filters())}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _fingerprint(filters: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(filters, sort_keys=True).encode()).hexdigest()[:16]


def _bad(name: str, kind: str, msg: str) -> SchemaInvalid:
    return SchemaInvalid([{"loc": name, "type": kind, "msg": msg}], detail=f"Bad query parameter: {name}")


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(_OFFSET_AS_SPACE.sub(r"+\1", text))
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("no offset")
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise _bad("updated_since", "datetime_parsing",
                   "Expected an ISO 8601 date-time with an offset (send + as %2B)") from None


def _position(text: str, filters: dict[str, Any]) -> Position:
    try:
        raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        position = Position(datetime.fromisoformat(raw["t"]).astimezone(UTC), str(raw["i"]))
        fingerprint = raw["f"]
    except (ValueError, TypeError, KeyError, binascii.Error, OverflowError, UnicodeDecodeError):
        raise _bad("cursor", "cursor_invalid", "Not a cursor this API gave out") from None
    if fingerprint != _fingerprint(filters):
        raise _bad("cursor", "cursor_mismatch", "This cursor was made for other filters: keep them for every page")
    return position


def _limit(text: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 4) or not 1 <= int(text) <= MAX_LIMIT:
        raise _bad("limit", "limit_range", f"Expected a whole number from 1 to {MAX_LIMIT}")
    return int(text)


def parse(pairs: Iterable[tuple[str, str]]) -> ListQuery:
    """The query from the request's (name, value) pairs, in order, repeats included."""
    given: dict[str, str] = {}
    for n, (name, value) in enumerate(pairs, start=1):
        if name not in PARAMETERS:
            raise _bad(f"(unknown parameter #{n})", "unknown_parameter", f"Known parameters: {', '.join(PARAMETERS)}")
        if name in given:
            raise _bad(name, "repeated", "Give this parameter once")
        given[name] = value
    status = given.get("status") or None
    if status is not None and status not in STATUSES:
        raise _bad("status", "enum", f"Expected one of {', '.join(STATUSES)}")
    if given.get("overdue", "false") not in ("true", "false"):
        raise _bad("overdue", "bool_parsing", "Expected true or false")
    query = ListQuery(status=status, overdue=given.get("overdue") == "true",
                      updated_since=_instant(given["updated_since"]) if "updated_since" in given else None,
                      limit=_limit(given["limit"]) if "limit" in given else DEFAULT_LIMIT)
    if given.get("cursor"):
        if len(given["cursor"]) > 400:
            raise _bad("cursor", "cursor_invalid", "Not a cursor this API gave out")
        query = replace(query, after=_position(given["cursor"], query.filters()))
    return query
