"""The command handlers: the one path every entrypoint (HTTP, AMQP) goes through.

A handler takes a command and the `Context`, and returns a result or raises an
`IntakeError`. Accepted work commits in one transaction with its audit entry and
its outbox event; the entrypoint audits rejections (`effects.audit_rejection`).
Lifecycle actions are one table, `ACTIONS`; a repeated action returns the recorded
result and publishes nothing.
"""
from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from services.intake import metrics
from services.intake.adapters import repository as repo
from services.intake.adapters.effects import publish, record, seal_json
from services.intake.context import Context
from services.intake.domain import lifecycle as rules
from services.intake.domain.access import authorise
from services.intake.domain.commands import (
    Action, ChecksBody, DecisionBody, LifecycleCommand, SubmitReferral, Submitted,
)
from services.intake.domain.errors import Conflict, Forbidden, NotFound
from services.intake.domain.parsing import check_idempotency_key, parse_json, strings_of, validate
from services.intake.domain.referral import Referral
from shared.logging import get_logger, sensitive_scope
from shared.messages import (
    ChecksCompleted, FeedbackReleased, Holding, Message, ReferralAcknowledged, ReferralClosed, ReferralDecided,
    ReferralReceived,
)
from shared.worktime import LONDON, compute_deadlines

log = get_logger(__name__)


async def submit_referral(cmd: SubmitReferral, ctx: Context) -> Submitted:
    client = ctx.settings.client(cmd.client_id)
    if client is None or client.role != "referrer":
        raise Forbidden("Only referrer clients may submit referrals", reason="wrong_role")
    check_idempotency_key(cmd.idempotency_key)
    data = parse_json(cmd.body)
    with sensitive_scope(strings_of(data)):
        referral = validate(Referral, data)
        if client.organisation != referral.force:
            raise Forbidden("The referral's force is not this client's organisation", reason="wrong_organisation")
        recipients = ctx.team_keys(referral.la_code, referral.force)
        body_sha = hashlib.sha256(cmd.body).hexdigest()
        if cmd.idempotency_key:
            async with ctx.engine.connect() as conn:
                row = await repo.get_idempotent(conn, client.id, cmd.idempotency_key)
            if row is not None:
                return await _replay(ctx, cmd, row, body_sha)
        referral_id = str(uuid.uuid4())
        content = seal_json(referral.content.model_dump(mode="json", exclude_unset=True), referral_id, recipients)
        contacts = seal_json(referral.contacts.model_dump(mode="json", exclude_unset=True), referral_id,
                             {**recipients, **ctx.notifier_key()})
        try:
            reply = await _store(ctx, cmd, referral, referral_id, content, contacts, body_sha)
        except repo.IntegrityError:
            if not cmd.idempotency_key:
                raise
            async with ctx.engine.connect() as conn:  # a concurrent request with the same key won
                row = await repo.get_idempotent(conn, client.id, cmd.idempotency_key)
            if row is None:
                raise
            return await _replay(ctx, cmd, row, body_sha)
    ctx.notify()
    metrics.ACCEPTED.labels(via=cmd.via).inc()
    log.info("referral_accepted", reference=reply["reference"], client_id=client.id, via=cmd.via)
    return Submitted(reply)


async def _replay(ctx: Context, cmd: SubmitReferral, row: Any, body_sha: str) -> Submitted:
    """The stored reply to an Idempotency-Key already used with the same body (audited)."""
    if row.body_sha256 != body_sha:
        raise Conflict("This Idempotency-Key was used with a different body", reason="idempotency_conflict")
    result = Submitted(dict(row.response), replayed=True)
    async with ctx.engine.begin() as conn:
        await record(conn, actor=cmd.client_id, action="referral.submit", reference=result.reply["reference"],
                     outcome="replayed", detail={"via": cmd.via}, at=ctx.clock())
    return result


async def _store(ctx: Context, cmd: SubmitReferral, r: Referral, referral_id: str,
                 content: dict, contacts: dict, body_sha: str) -> dict[str, Any]:
    now = ctx.clock()
    deadlines = compute_deadlines(now, ctx.calendar(r.la_code))
    hold = r.holding_instructions
    year = now.astimezone(ZoneInfo(LONDON)).year
    # The number is taken in its own short transaction: the counter row is locked for one
    # statement, not for the whole store (which would serialise every submission). A store
    # that then fails leaves a gap in the numbers; references stay unique and increasing.
    async with ctx.engine.begin() as conn:
        reference = rules.format_reference(year, await repo.next_sequence(conn, year))
    async with ctx.engine.begin() as conn:
        await repo.insert_referral(conn, {
            "id": referral_id, "reference": reference, "client_id": cmd.client_id,
            "client_reference": r.client_reference, "force": r.force, "la_code": r.la_code,
            "received_via": r.received_via, "immediate_risk": r.immediate_risk, "age_band": r.age_band,
            "concern_types": list(r.concern_types), "no_further_sharing": hold.no_further_sharing,
            "no_family_contact": hold.no_family_contact, "holding_review_by": hold.review_by,
            "received_at": deadlines.received_at, "out_of_hours": deadlines.out_of_hours,
            "acknowledge_by": deadlines.acknowledge_by, "checks_due_by": deadlines.checks_due_by,
            "status": "received", "family_contact_hold": hold.no_family_contact,
            "family_contact_lifted": False, "content_sealed": content, "contacts_sealed": contacts,
        })
        reply = {"referral_id": referral_id, "reference": reference, "status": "received",
                 **deadlines.as_json()}
        reply = {k: reply[k] for k in ("referral_id", "reference", "status", "received_at", "out_of_hours",
                                       "acknowledge_by", "checks_due_by")}
        if cmd.idempotency_key:
            await repo.save_idempotent(conn, cmd.client_id, cmd.idempotency_key, body_sha, reply, now)
        await publish(conn, ReferralReceived(
            referral_id=referral_id, reference=reference, force=r.force, la_code=r.la_code, at=now,
            received_at=deadlines.received_at, received_via=r.received_via,
            out_of_hours=deadlines.out_of_hours, immediate_risk=r.immediate_risk, age_band=r.age_band,
            concern_types=tuple(r.concern_types),
            holding=Holding(no_further_sharing=hold.no_further_sharing, no_family_contact=hold.no_family_contact),
            acknowledge_by=deadlines.acknowledge_by, checks_due_by=deadlines.checks_due_by,
            contacts_sealed=contacts,
        ), correlation_id=cmd.correlation_id, at=now)
        await record(conn, actor=cmd.client_id, action="referral.submit", reference=reference,
                     outcome="accepted", detail={"via": cmd.via, "referral_id": referral_id,
                                                 "la_code": r.la_code, "force": r.force}, at=now)
    return reply


@dataclass(frozen=True)
class LifecycleAction:
    """One lifecycle action of staff systems."""

    who: Mapping[str, str]  # a permitted role -> the referral field its organisation must match
    rule: Callable[[rules.State, LifecycleCommand, datetime], rules.Change]
    event: type[Message]
    event_fields: tuple[str, ...]  # from `_facts`, beside the referral's ids, organisations and time
    by: str  # the column naming the client that did it
    reply_fields: tuple[str, ...]  # from `_facts`, after reference, status and action
    body: type[BaseModel] | None = None  # the JSON body the action takes (None: none or `{}`)
    sealed_note: str | None = None  # the column the command's sensitive note is sealed into


ACTIONS: dict[Action, LifecycleAction] = {
    "acknowledgement": LifecycleAction(
        {"social_care": "la_code"}, lambda s, _c, now: rules.acknowledge(s, now), ReferralAcknowledged,
        ("client_id",), "acknowledged_by", ("acknowledged_at",)),
    "decision": LifecycleAction(
        {"social_care": "la_code"}, lambda s, c, now: rules.decide(s, c.pathway or "", now), ReferralDecided,
        ("pathway",), "decided_by", ("pathway", "decided_at"), DecisionBody, "rationale_sealed"),
    "checks": LifecycleAction(
        {"prevent": "force"}, lambda s, c, now: rules.complete_checks(s, c.outcome or "", now), ChecksCompleted,
        ("outcome",), "checks_by", ("outcome", "checks_at"), ChecksBody, "checks_notes_sealed"),
    "feedback": LifecycleAction(
        {"prevent": "force"}, lambda s, _c, now: rules.release_feedback(s, now), FeedbackReleased,
        ("family_contact_lifted", "audiences"), "feedback_by", ("family_contact_lifted", "audiences", "feedback_at")),
    "close": LifecycleAction(
        {"social_care": "la_code", "prevent": "force"}, lambda s, _c, now: rules.close(s, now), ReferralClosed,
        (), "closed_by", ("closed_at",)),
}


def _facts(row: dict[str, Any], client_id: str) -> dict[str, Any]:
    """What an action's event and reply may name, from the referral row after the action."""
    lifted = row["family_contact_lifted"]
    times = ("acknowledged_at", "decided_at", "checks_at", "feedback_at", "closed_at")
    return {"client_id": client_id, "pathway": row["pathway"], "outcome": row["checks_outcome"],
            "family_contact_lifted": lifted, "audiences": list(rules.feedback_audiences(lifted)),
            **{t: row[t].isoformat() if row[t] is not None else None for t in times}}


async def act(cmd: LifecycleCommand, ctx: Context) -> dict[str, Any]:
    action = ACTIONS[cmd.action]
    client = ctx.settings.client(cmd.client_id)
    now = ctx.clock()
    async with ctx.engine.begin() as conn:
        await repo.begin_write(conn)
        found = await repo.get_referral(conn, cmd.reference, for_update=True)
        if found is None:
            raise NotFound("No such referral", reason="not_found", actor=cmd.client_id)
        authorise(client, found, action.who)
        change = action.rule(repo.state_of(found), cmd, now)
        row = dict(found._mapping)
        if change.new:
            values = {**change.values, action.by: cmd.client_id}
            if cmd.sensitive_note and action.sealed_note:
                values[action.sealed_note] = seal_json(cmd.sensitive_note, row["id"],
                                                       ctx.team_keys(row["la_code"], row["force"]))
            await repo.update_referral(conn, row["id"], values)
            row |= values
        facts = _facts(row, cmd.client_id)
        if change.new:
            event = action.event(referral_id=row["id"], reference=row["reference"], force=row["force"],
                                 la_code=row["la_code"], at=now, **{f: facts[f] for f in action.event_fields})
            await publish(conn, event, correlation_id=cmd.correlation_id, at=now)
        reply = {"reference": row["reference"], "status": row["status"], "action": cmd.action,
                 **{f: facts[f] for f in action.reply_fields}}
        detail = {k: reply[k] for k in ("pathway", "outcome", "family_contact_lifted") if k in reply}
        await record(conn, actor=cmd.client_id, action=f"referral.{cmd.action}", reference=cmd.reference,
                     outcome="ok" if change.new else "repeated", detail=detail or None, at=now)
    if change.new:
        ctx.notify()
        log.info("referral_action", action=cmd.action, reference=cmd.reference, client_id=cmd.client_id)
    return reply

