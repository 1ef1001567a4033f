"""Lifecycle commands of staff systems: acknowledge, decide, record CTP checks,
release feedback, close. Each is authorised by role and organisation, applied by
the pure rules in `domain.lifecycle`, audited, and published through the outbox in
one transaction. A repeat returns the recorded result and publishes nothing."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.intake.adapters import repository as repo
from services.intake.deps import Deps, publish, record, seal_json
from services.intake.domain import lifecycle as rules
from services.intake.domain.errors import Forbidden, NotFound
from shared.config import Client
from shared.logging import get_logger
from shared.messages import (
    ChecksCompleted, ChecksOutcome, FeedbackReleased, Pathway, ReferralAcknowledged, ReferralClosed,
    ReferralDecided,
)

log = get_logger(__name__)


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    pathway: Pathway
    rationale: str | None = Field(default=None, max_length=10000)


class ChecksBody(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    outcome: ChecksOutcome
    notes: str | None = Field(default=None, max_length=10000)


class EmptyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


Action = Literal["acknowledgement", "decision", "checks", "feedback", "close"]


@dataclass(frozen=True)
class LifecycleCommand:
    action: Action
    client_id: str
    reference: str
    pathway: str | None = None
    outcome: str | None = None
    sensitive_note: str | None = None  # rationale or CTP notes: sealed, never stored in clear
    correlation_id: str | None = None


def authorise(client: Client | None, row: Any, roles: dict[str, str]) -> Client:
    """`roles` maps a permitted role to the referral field its organisation must match."""
    if client is None or client.role not in roles:
        raise Forbidden("This client's role may not do this", reason="wrong_role", actor=client and client.id)
    if client.organisation != getattr(row, roles[client.role]):
        raise Forbidden("This referral is not for this client's organisation", reason="wrong_organisation",
                        actor=client.id)
    return client


WHO = {
    "acknowledgement": {"social_care": "la_code"},
    "decision": {"social_care": "la_code"},
    "checks": {"prevent": "force"},
    "feedback": {"prevent": "force"},
    "close": {"social_care": "la_code", "prevent": "force"},
}
BY = {"acknowledgement": "acknowledged_by", "decision": "decided_by", "checks": "checks_by",
      "feedback": "feedback_by", "close": "closed_by"}


def _change(cmd: LifecycleCommand, state: rules.State, now: Any) -> rules.Change:
    if cmd.action == "acknowledgement":
        return rules.acknowledge(state, now)
    if cmd.action == "decision":
        return rules.decide(state, cmd.pathway or "", now)
    if cmd.action == "checks":
        return rules.complete_checks(state, cmd.outcome or "", now)
    if cmd.action == "feedback":
        return rules.release_feedback(state, now)
    return rules.close(state, now)


def _event(action: str, row: dict[str, Any], client_id: str, now: Any):
    base = {"referral_id": row["id"], "reference": row["reference"], "force": row["force"],
            "la_code": row["la_code"], "at": now}
    if action == "acknowledgement":
        return ReferralAcknowledged(**base, client_id=client_id)
    if action == "decision":
        return ReferralDecided(**base, pathway=row["pathway"])
    if action == "checks":
        return ChecksCompleted(**base, outcome=row["checks_outcome"])
    if action == "feedback":
        lifted = row["family_contact_lifted"]
        return FeedbackReleased(**base, family_contact_lifted=lifted, audiences=rules.feedback_audiences(lifted))
    return ReferralClosed(**base)


def result(action: str, row: dict[str, Any]) -> dict[str, Any]:
    iso = lambda v: v.isoformat() if v is not None else None  # noqa: E731
    out: dict[str, Any] = {"reference": row["reference"], "status": row["status"], "action": action}
    if action == "acknowledgement":
        out["acknowledged_at"] = iso(row["acknowledged_at"])
    elif action == "decision":
        out |= {"pathway": row["pathway"], "decided_at": iso(row["decided_at"])}
    elif action == "checks":
        out |= {"outcome": row["checks_outcome"], "checks_at": iso(row["checks_at"])}
    elif action == "feedback":
        lifted = row["family_contact_lifted"]
        out |= {"family_contact_lifted": lifted, "audiences": list(rules.feedback_audiences(lifted)),
                "feedback_at": iso(row["feedback_at"])}
    else:
        out["closed_at"] = iso(row["closed_at"])
    return out


async def act(cmd: LifecycleCommand, deps: Deps) -> dict[str, Any]:
    client = deps.settings.client(cmd.client_id)
    now = deps.clock()
    async with deps.engine.begin() as conn:
        await repo.begin_write(conn)
        found = await repo.get_referral(conn, cmd.reference, for_update=True)
        if found is None:
            raise NotFound("No such referral", reason="not_found", actor=cmd.client_id)
        authorise(client, found, WHO[cmd.action])
        change = _change(cmd, repo.state_of(found), now)
        row = dict(found._mapping)
        if change.new:
            values = {**change.values, BY[cmd.action]: cmd.client_id}
            if cmd.sensitive_note:
                column = "rationale_sealed" if cmd.action == "decision" else "checks_notes_sealed"
                values[column] = seal_json(cmd.sensitive_note, row["id"], deps.team_keys(row["la_code"], row["force"]))
            await repo.update_referral(conn, row["id"], values)
            row |= values
            await publish(conn, _event(cmd.action, row, cmd.client_id, now), correlation_id=cmd.correlation_id, at=now)
        reply = result(cmd.action, row)
        detail = {k: reply[k] for k in ("pathway", "outcome", "family_contact_lifted") if k in reply}
        await record(conn, actor=cmd.client_id, action=f"referral.{cmd.action}", reference=cmd.reference,
                     outcome="ok" if change.new else "repeated", detail=detail or None, at=now)
    if change.new:
        deps.notify()
        log.info("referral_action", action=cmd.action, reference=cmd.reference, client_id=cmd.client_id)
    return reply
