"""Who may do what to a referral (pure): a client's role, and its organisation against the
referral's local authority (`la_code`) or police force (`force`).

The role is checked first; then a referral that does not exist (`row` None) and one of
another organisation get the one same refusal, so no client can learn which references
exist (DESIGN §3.3: 403 for the wrong organisation)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.intake.domain.errors import Forbidden
from shared.config import Client

STAFF = ("referrer", "social_care", "prevent", "control_room")
RECIPIENT_TEAMS = {"social_care": "la_code", "prevent": "force"}
WELFARE_CHECK = {"control_room": "force"}  # the force's control room holds the force's key too


def not_yours(client: Client) -> Forbidden:
    """The one refusal for a referral that is absent or of another organisation."""
    return Forbidden("No referral with this reference for this client's organisation",
                     reason="wrong_organisation", actor=client.id)


def authorise(client: Client | None, row: Any | None, roles: Mapping[str, str]) -> Client:
    """`roles` maps a permitted role to the referral field its organisation must match;
    `row` None: no such referral (refused as another organisation's)."""
    if client is None or client.role not in roles:
        raise Forbidden("This client's role may not do this", reason="wrong_role", actor=client and client.id)
    if row is None or client.organisation != getattr(row, roles[client.role]):
        raise not_yours(client)
    return client


def staff_of(client: Client | None, row: Any | None) -> None:
    """Any staff role of the referral's local authority or force (status and timeline reads)."""
    if client is None or client.role not in STAFF:
        raise Forbidden("This client's role may not read referrals", reason="wrong_role")
    if row is None or client.organisation not in (row.la_code, row.force):
        raise not_yours(client)


def recipient_team(client: Client | None, row: Any | None) -> None:
    """Social care of the referral's local authority or CTP Prevent of its force (sealed reads)."""
    authorise(client, row, RECIPIENT_TEAMS)


def welfare_check(client: Client | None, row: Any | None) -> None:
    """The control room of the referral's force, for an audited welfare check (the person's
    live welfare-check grant is checked apart, by the caller)."""
    authorise(client, row, WELFARE_CHECK)


def performance_scope(client: Client | None) -> str | None:
    """The organisation a client's performance reads are limited to (None: all, for ops)."""
    if client is None:
        raise Forbidden(reason="wrong_role")
    return None if client.role == "ops" else client.organisation
