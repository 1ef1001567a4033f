"""Who a notification goes to, on which channels (pure: routes and opened contacts in).

- `la:<role>` / `force:<role>`: the route in settings (`contacts[role]`), every configured
  channel of it (email and Teams); SMS only when an SMS channel is enabled.
- `referrer` / `guardians`: only from the opened contact section of the request
  (`{"referrer": {"email", "phone"}, "guardians": [{"email", "phone"}, ...]}`), by email.
Delivery keys are unique per notification: `email`, `teams`, and `email.2`… for a second
guardian; `email+fallback` / `teams+fallback` for an urgent message moved to the other
channel; `none` when the notification ends before any channel (refused, unresolvable).
Addresses never leave this module except to the channel that sends.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from shared.config import Route

CHANNEL_ORDER = ("teams", "email", "sms")
NO_TARGET = "none"
FALLBACK = "+fallback"


class ResolutionError(Exception):
    """`kind` is "technical" or "permanent"; `reason` a fixed code."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind, self.reason = kind, reason


@dataclass(frozen=True)
class Target:
    key: str            # delivery key, unique within the notification
    channel: str        # "email" | "teams" | "sms"
    address: str        # email address, webhook URL or phone number (sensitive)
    audience_kind: str  # "team" | "referrer" | "guardians"

    def __repr__(self) -> str:  # never print the address
        return f"Target(key={self.key!r}, channel={self.channel!r})"


def audience_kind(audience: str) -> str:
    if audience.startswith(("la:", "force:")):
        return "team"
    if audience in ("referrer", "guardians"):
        return audience
    raise ResolutionError("technical", "unknown_audience")


def route_targets(route: Route | None, enabled: Collection[str]) -> list[Target]:
    if route is None:
        raise ResolutionError("technical", "unknown_audience")
    found = {"email": route.email, "teams": route.teams_webhook, "sms": route.sms}
    targets = [Target(ch, ch, found[ch], "team") for ch in CHANNEL_ORDER if found[ch] and ch in enabled]
    if not targets:
        raise ResolutionError("permanent", "no_channel")
    return targets


def contact_targets(audience: str, contacts: Mapping[str, Any], enabled: Collection[str]) -> list[Target]:
    entry = contacts.get(audience)
    people = entry if isinstance(entry, list) else [entry] if isinstance(entry, Mapping) else []
    targets: list[Target] = []
    for i, person in enumerate(p for p in people if isinstance(p, Mapping)):
        suffix = "" if i == 0 else f".{i + 1}"
        email, phone = person.get("email"), person.get("phone") or person.get("sms")
        if isinstance(email, str) and "@" in email and "email" in enabled:
            targets.append(Target("email" + suffix, "email", email, audience))
        if isinstance(phone, str) and phone and "sms" in enabled:
            targets.append(Target("sms" + suffix, "sms", phone, audience))
    if not targets:
        raise ResolutionError("permanent", "no_channel")
    return targets


def fallback_channel(channel: str, available: Collection[str]) -> str | None:
    """The other channel of an urgent message: Teams → email, email → Teams."""
    other = {"teams": "email", "email": "teams"}.get(channel)
    return other if other in available else None
