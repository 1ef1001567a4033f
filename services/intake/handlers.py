"""The command handlers: the one path every entrypoint (HTTP, AMQP) goes through.

A handler takes a command and the `Context`, and returns a result or raises an
`IntakeError`. Accepted work commits in one transaction with its audit entry and
its outbox event; the entrypoint audits rejections (`effects.audit_rejection`).
`act` runs every lifecycle action from its row in `domain.actions.ACTIONS`; a repeated
action returns the recorded result and publishes nothing. `raise_concern` is not
once-only: each call raises a new concern (an `Idempotency-Key` makes a retry safe).
"""
from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.intake import metrics
from services.intake.adapters import repository as repo
from services.intake.adapters.effects import publish, record, seal_json
from services.intake.context import Context
from services.intake.domain import lifecycle as rules
from services.intake.domain.access import authorise
from services.intake.domain import tracks
from services.intake.domain.actions import ACTIONS, SOCIAL_CARE, facts
from services.intake.domain.commands import ConcernBody, LifecycleCommand, RaiseConcern, SubmitReferral, Submitted
from services.intake.domain.errors import Conflict, Forbidden
from services.intake.domain.parsing import check_age, check_idempotency_key, parse_json, strings_of, validate
from services.intake.domain.referral import Referral
from services.intake.domain.tracks import TRACK_OF_ROLE
from shared.clock import LONDON
from shared.logging import get_logger, sensitive_scope
from shared.messages import Actor, ConcernRaised, Holding, ReferralReceived
from shared.web.identity import Person
from shared.worktime import compute_deadlines

log = get_logger(__name__)


async def submit_referral(cmd: SubmitReferral, ctx: Context) -> Submitted:
    client = ctx.settings.client(cmd.client_id)
    if client is None or client.role != "referrer":
        raise Forbidden("Only referrer clients may submit referrals", reason="wrong_role")
    check_idempotency_key(cmd.idempotency_key)
    data = parse_json(cmd.body)
    with sensitive_scope(strings_of(data)):
        referral = validate(Referral, data)
        check_age(referral.age_band, referral.content.subject.date_of_birth, ctx.clock().astimezone(LONDON).date())
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

        def sealed(reference: str) -> dict[str, dict]:
            """The two envelopes, bound to the referral's id, reference and column (once it has a number)."""
            # The hold's reason is free text: sealed with the content, shown to the recipient teams only.
            content = {**referral.content.model_dump(mode="json", exclude_unset=True),
                       "holding_reason": referral.holding_instructions.reason}
            return {"content_sealed": seal_json(content, referral_id, recipients, reference=reference,
                                                column="content_sealed"),
                    "contacts_sealed": seal_json(referral.contacts.model_dump(mode="json", exclude_unset=True),
                                                 referral_id, {**recipients, **ctx.notifier_key()},
                                                 reference=reference, column="contacts_sealed")}
        try:
            reply = await _store(ctx, cmd, referral, referral_id, sealed, body_sha)
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
    result = Submitted(dict(row.response))
    async with ctx.engine.begin() as conn:
        await record(conn, actor=cmd.client_id, action="referral.submit", reference=result.reply["reference"],
                     outcome="replayed", detail={"via": cmd.via}, at=ctx.clock())
    return result


async def _store(ctx: Context, cmd: SubmitReferral, r: Referral, referral_id: str,
                 sealed: Callable[[str], dict[str, dict]], body_sha: str) -> dict[str, Any]:
    now = ctx.clock()
    deadlines = compute_deadlines(now, ctx.settings.calendar(r.la_code))
    hold = r.holding_instructions
    year = now.astimezone(LONDON).year
    # The number is taken in its own short transaction: the counter row is locked for one
    # group of numbers, not for the whole store (which would serialise every submission). A
    # store that then fails leaves a gap in the numbers; references stay unique and increasing.
    async def number(conn: AsyncConnection) -> int:
        return await repo.next_sequence(conn, year)

    reference = rules.format_reference(year, await ctx.numbers.run(number))
    envelopes = sealed(reference)

    async def store(conn: AsyncConnection) -> dict[str, Any]:
        await repo.insert_referral(conn, {
            "id": referral_id, "reference": reference, "client_id": cmd.client_id,
            "client_reference": r.client_reference, "force": r.force, "la_code": r.la_code,
            "received_via": r.received_via, "immediate_risk": r.immediate_risk, "age_band": r.age_band,
            "concern_types": list(r.concern_types), "referral_source_sector": r.referral_source_sector,
            "gender": r.gender, "no_further_sharing": hold.no_further_sharing,
            "no_family_contact": hold.no_family_contact, "holding_review_by": hold.review_by,
            "received_at": deadlines.received_at, "out_of_hours": deadlines.out_of_hours,
            "acknowledge_by": deadlines.acknowledge_by, "checks_due_by": deadlines.checks_due_by,
            "status": "received", "family_contact_hold": hold.no_family_contact,
            "family_contact_lifted": False, **envelopes,
        }, at=now)
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
            contacts_sealed=envelopes["contacts_sealed"], holding_review_by=hold.review_by,
        ), correlation_id=cmd.correlation_id, at=now)
        await record(conn, actor=cmd.client_id, action="referral.submit", reference=reference,
                     outcome="accepted", detail={"via": cmd.via, "referral_id": referral_id,
                                                 "la_code": r.la_code, "force": r.force}, at=now)
        return reply

    # With the other submissions of the moment; an IntegrityError (a concurrent request with the
    # same Idempotency-Key won) is this submission's own, raised after its group ran again without it.
    return await ctx.stores.run(store)


def actor_of(client: Any, person: Person | None) -> Actor:
    """The event's and the audit's "who": the named person (relayed by `client` when it is a
    system naming them On-Behalf-Of), else the client."""
    if person is None:
        return Actor(id=client.id, role=client.role, organisation=client.organisation)
    return Actor(id=person.id, role=person.role, organisation=person.organisation, issuer=person.issuer,
                 subject=person.subject, name=person.name, client_id=None if client.id == person.id else client.id)


def _who(actor: Actor) -> dict[str, Any]:
    """The audit detail naming a person (issuer, subject, name, role, organisation, relaying client)."""
    if actor.subject is None:
        return {}
    return {"person": actor.model_dump(exclude={"id", "client_id"}),
            **({"client_id": actor.client_id} if actor.client_id else {})}


async def act(cmd: LifecycleCommand, ctx: Context) -> dict[str, Any]:
    action = ACTIONS[cmd.action]
    client = ctx.principal(cmd.client_id, cmd.person)
    now = ctx.clock()
    async with ctx.engine.begin() as conn:
        await repo.begin_write(conn)
        found = await repo.get_referral(conn, cmd.reference, for_update=True)
        authorise(client, found, action.who)  # role first; absent and another organisation's: the same 403
        actor = actor_of(client, cmd.person)
        cmd = replace(cmd, track=TRACK_OF_ROLE.get(client.role) if client else None, client_id=actor.id)
        change = action.rule(repo.state_of(found), cmd, now)
        row = dict(found._mapping)
        if change.new:
            if cmd.person is not None:
                await repo.remember_person(conn, cmd.person, now)
            values = {**change.values, **({action.by: actor.id} if action.by else {})}
            if cmd.sensitive_note and action.sealed_note:
                values[action.sealed_note] = seal_json(cmd.sensitive_note, row["id"],
                                                       ctx.team_keys(row["la_code"], row["force"]),
                                                       reference=row["reference"], column=action.sealed_note)
            await repo.update_referral(conn, row["id"], values, at=now)
            row |= values
        known = facts(row, cmd.client_id, cmd.action, cmd.track)
        if change.new:
            event = action.event(referral_id=row["id"], reference=row["reference"], force=row["force"],
                                 la_code=row["la_code"], at=now, by=actor,
                                 **{f: known[f] for f in action.event_fields})
            await publish(conn, event, correlation_id=cmd.correlation_id, at=now)
        reply = {"reference": row["reference"], "status": row["status"], "action": cmd.action,
                 **{f: known[f] for f in action.reply_fields}}
        detail = {k: reply[k] for k in ("pathway", "outcome", "decision", "family_contact_lifted", "track",
                                        "referral_closed") if k in reply}
        await record(conn, actor=actor.id, action=f"referral.{cmd.action}", reference=cmd.reference,
                     outcome="ok" if change.new else "repeated", detail={**detail, **_who(actor)} or None, at=now)
    if change.new:
        ctx.notify()
        log.info("referral_action", action=cmd.action, reference=cmd.reference, client_id=cmd.client_id)
    return reply



def _key_conflict() -> Conflict:
    return Conflict("This Idempotency-Key was used with a different body or referral", reason="idempotency_conflict")


def _concern_sha(reference: str, body: bytes) -> str:
    """What an Idempotency-Key of a concern stands for: this referral and this body."""
    return hashlib.sha256(f"concern {reference}\n".encode() + body).hexdigest()


async def raise_concern(cmd: RaiseConcern, body: ConcernBody, ctx: Context) -> dict[str, Any]:
    """Social care of the referral's LA (its emergency duty team out of hours) raises a concern
    for the force's control room: a new concern each time, refused once the LA track is closed.
    With an `Idempotency-Key`, the same key and body give the first reply again (audited
    `replayed`, nothing published); the same key with another body or referral is a 409."""
    check_idempotency_key(cmd.idempotency_key)
    try:
        reply, new = await _raise_concern(cmd, body, ctx)
    except repo.IntegrityError:
        if not cmd.idempotency_key:
            raise
        # The same key at the same moment for another referral (a retry of one referral's
        # concern waits for the first on the referral's row lock): that one won.
        raise _key_conflict() from None
    if new:
        ctx.notify()
        log.info("concern_raised", reference=cmd.reference, client_id=cmd.client_id, category=body.category)
    return reply


async def _raise_concern(cmd: RaiseConcern, body: ConcernBody, ctx: Context) -> tuple[dict[str, Any], bool]:
    """(the reply, whether a concern was raised) in one transaction."""
    client = ctx.principal(cmd.client_id, cmd.person)
    body_sha = _concern_sha(cmd.reference, cmd.body)
    now = ctx.clock()
    async with ctx.engine.begin() as conn:
        await repo.begin_write(conn)  # with the row lock: one key's retries are taken one at a time
        found = await repo.get_referral(conn, cmd.reference, for_update=True)
        client = authorise(client, found, SOCIAL_CARE)  # role first; absent and another organisation's: 403
        assert found is not None
        actor = actor_of(client, cmd.person)
        if cmd.idempotency_key:
            stored = await repo.get_idempotent(conn, client.id, cmd.idempotency_key)
            if stored is not None:
                if stored.body_sha256 != body_sha:
                    raise _key_conflict()
                reply = dict(stored.response)
                await record(conn, actor=client.id, action="referral.concern", reference=cmd.reference,
                             outcome="replayed", detail={"concern_id": reply["concern_id"]}, at=now)
                return reply, False
        tracks.require_open(found.la_closed_at, "la", "raising a concern")
        concern_id = str(uuid.uuid4())
        if cmd.person is not None:
            await repo.remember_person(conn, cmd.person, now)
        await repo.insert_concern(conn, {"id": concern_id, "referral_id": found.id, "reference": found.reference,
                                         "category": body.category, "raised_at": now, "raised_by": actor.id})
        await repo.update_referral(conn, found.id, {}, at=now)  # a new concern: the referral changed
        reply = {"reference": found.reference, "status": found.status, "action": "concern",
                 "concern_id": concern_id, "category": body.category, "raised_at": now.isoformat(),
                 "raised_by": actor.id}
        if cmd.idempotency_key:
            await repo.save_idempotent(conn, client.id, cmd.idempotency_key, body_sha, reply, now)
        await publish(conn, ConcernRaised(
            referral_id=found.id, reference=found.reference, force=found.force, la_code=found.la_code, at=now,
            concern_id=concern_id, category=body.category, client_id=client.id, by=actor,
        ), correlation_id=cmd.correlation_id, at=now)
        await record(conn, actor=actor.id, action="referral.concern", reference=cmd.reference,
                     detail={"concern_id": concern_id, "category": body.category, **_who(actor)}, at=now)
    return reply, True
