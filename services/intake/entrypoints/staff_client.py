"""The reference client for staff systems (`safeguard referral …`, DESIGN §3.1): the signed calls
of DESIGN §3.3 a case-management or police system makes — list, status and the lifecycle
actions — optionally naming the person it acts for (the signed `On-Behalf-Of` field).

Each call returns (HTTP status, parsed reply): a reply or a problem document. Nothing here
prints; `referral_cli` turns replies and failures into lines."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from services.intake.entrypoints.client import DEFAULT_URL, check_reference, signed_request
from shared.web.identity import ON_BEHALF_OF

ACTIONS = {"ack": "acknowledgement", "decide": "decision", "strategy": "strategy-discussion", "checks": "checks",
           "feedback": "feedback", "close": "close"}


@dataclass(frozen=True)
class Caller:
    """Who calls: the client id, its Ed25519 key file, intake's URL, and optionally the person
    (`iss="…", sub="…", name="…"`) it acts for."""
    client_id: str
    key_file: str | Path
    url: str = DEFAULT_URL
    on_behalf_of: str | None = None

    async def call(self, method: str, path: str, *, query: str = "", body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        covered = {ON_BEHALF_OF: self.on_behalf_of} if self.on_behalf_of else None
        return await signed_request(method, self.url, path, client_id=self.client_id, key_file=self.key_file,
                                    body=data, query=query, covered=covered)


def list_query(*, status: str | None = None, overdue: bool = False, updated_since: str | None = None,
               cursor: str | None = None, limit: int | None = None) -> str:
    """The query string, every value percent-encoded (`+` as %2B): signed exactly as sent."""
    pairs = [(k, v) for k, v in (("status", status), ("overdue", "true" if overdue else None),
                                 ("updated_since", updated_since), ("cursor", cursor),
                                 ("limit", str(limit) if limit is not None else None)) if v is not None]
    return urlencode(pairs, quote_via=quote, safe="")


async def list_referrals(caller: Caller, *, all_pages: bool = False, **filters: Any) -> tuple[int, Any]:
    """One page, or with `all_pages` every page followed by `next_cursor` (one reply with all the
    items; the first problem ends it)."""
    items: list[Any] = []
    while True:
        status, reply = await caller.call("GET", "/v1/referrals", query=list_query(**filters))
        if status != 200 or not all_pages:
            return status, reply
        items += reply["items"]
        if not reply["next_cursor"]:
            return status, {"items": items, "next_cursor": None}
        filters["cursor"] = reply["next_cursor"]


def _about(reference: str, outcome: tuple[int, Any]) -> tuple[int, Any]:
    """A 2xx reply must name the referral asked for (`client.WrongReply` otherwise)."""
    if 200 <= outcome[0] < 300:
        check_reference(outcome[1], reference)
    return outcome


async def status(caller: Caller, reference: str) -> tuple[int, Any]:
    return _about(reference, await caller.call("GET", f"/v1/referrals/{quote(reference, safe='')}"))


async def act(caller: Caller, reference: str, command: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """A lifecycle action by its command name (`ack`, `decide`, …; see ACTIONS)."""
    return _about(reference, await caller.call(
        "POST", f"/v1/referrals/{quote(reference, safe='')}/{ACTIONS[command]}", body=body))
