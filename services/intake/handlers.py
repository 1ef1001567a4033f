"""Commands and their handlers: the one path every entrypoint (HTTP, AMQP) goes through.

A handler takes a command and the `Deps`, and returns a result or raises an
`IntakeError`. Accepted work commits in one transaction with its audit entry and
its outbox event; the entrypoint audits rejections (see `deps.audit_rejection`).
"""
from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ValidationError

from services.intake import metrics
from services.intake.adapters import repository as repo
from services.intake.deps import Deps, publish, record, seal_json
from services.intake.domain.errors import Conflict, Forbidden, MalformedJson, SchemaInvalid
from services.intake.domain.lifecycle import format_reference
from services.intake.domain.referral import Referral
from shared.logging import get_logger, sensitive_scope
from shared.messages import Holding, ReferralReceived
from shared.worktime import LONDON, compute_deadlines

log = get_logger(__name__)
_KEY = re.compile(r"[\x21-\x7e]{1,200}")
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class SubmitReferral:
    client_id: str
    body: bytes
    idempotency_key: str | None = None
    correlation_id: str | None = None
    via: str = "http"


@dataclass(frozen=True)
class Submitted:
    reply: dict[str, Any]
    replayed: bool = False


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedJson("The body is not valid JSON") from None


_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
UNKNOWN_NAME = "(field name withheld)"


def _loc(parts: tuple[Any, ...]) -> str:
    """A field location for an error reply and the audit. A name the client sent that is not
    a plain snake_case identifier (an unknown key such as a person's name) is withheld."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p if _NAME.fullmatch(str(p)) else UNKNOWN_NAME}"
    return out.lstrip(".") or "(body)"


def validate(model: type[M], data: Any) -> M:
    """Validate; on failure list field locations and messages, never the values."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{"loc": _loc(e["loc"]), "type": e["type"], "msg": e["msg"]}
                  for e in exc.errors(include_input=False, include_url=False, include_context=False)[:50]]
        raise SchemaInvalid(errors) from None


def strings_of(value: Any) -> list[str]:
    """Every string inside a JSON-like value (to scrub them from any log line)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_of(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings_of(v)]
    return []


def _replay(row: Any, body_sha: str) -> Submitted:
    if row.body_sha256 != body_sha:
        raise Conflict("This Idempotency-Key was used with a different body", reason="idempotency_conflict")
    return Submitted(dict(row.response), replayed=True)


async def submit_referral(cmd: SubmitReferral, deps: Deps) -> Submitted:
    client = deps.settings.client(cmd.client_id)
    if client is None or client.role != "referrer":
        raise Forbidden("Only referrer clients may submit referrals", reason="wrong_role")
    if cmd.idempotency_key is not None and not _KEY.fullmatch(cmd.idempotency_key):
        raise MalformedJson("Idempotency-Key must be 1-200 visible ASCII characters", reason="bad_idempotency_key")
    data = parse_json(cmd.body)
    with sensitive_scope(strings_of(data)):
        referral = validate(Referral, data)
        if client.organisation != referral.force:
            raise Forbidden("The referral's force is not this client's organisation", reason="wrong_organisation")
        recipients = deps.team_keys(referral.la_code, referral.force)
        body_sha = hashlib.sha256(cmd.body).hexdigest()
        if cmd.idempotency_key:
            async with deps.engine.connect() as conn:
                row = await repo.get_idempotent(conn, client.id, cmd.idempotency_key)
            if row is not None:
                return await _audited_replay(deps, cmd, row, body_sha)
        referral_id = str(uuid.uuid4())
        content = seal_json(referral.content.model_dump(mode="json", exclude_unset=True), referral_id, recipients)
        contacts = seal_json(referral.contacts.model_dump(mode="json", exclude_unset=True), referral_id,
                             {**recipients, **deps.notifier_key()})
        try:
            reply = await _store(deps, cmd, referral, referral_id, content, contacts, body_sha)
        except repo.IntegrityError:
            if not cmd.idempotency_key:
                raise
            async with deps.engine.connect() as conn:  # a concurrent request with the same key won
                row = await repo.get_idempotent(conn, client.id, cmd.idempotency_key)
            if row is None:
                raise
            return await _audited_replay(deps, cmd, row, body_sha)
    deps.notify()
    metrics.ACCEPTED.labels(via=cmd.via).inc()
    log.info("referral_accepted", reference=reply["reference"], client_id=client.id, via=cmd.via)
    return Submitted(reply)


async def _audited_replay(deps: Deps, cmd: SubmitReferral, row: Any, body_sha: str) -> Submitted:
    result = _replay(row, body_sha)
    async with deps.engine.begin() as conn:
        await record(conn, actor=cmd.client_id, action="referral.submit", reference=result.reply["reference"],
                     outcome="replayed", detail={"via": cmd.via}, at=deps.clock())
    return result


async def _store(deps: Deps, cmd: SubmitReferral, r: Referral, referral_id: str,
                 content: dict, contacts: dict, body_sha: str) -> dict[str, Any]:
    now = deps.clock()
    deadlines = compute_deadlines(now, deps.calendar(r.la_code))
    hold = r.holding_instructions
    year = now.astimezone(ZoneInfo(LONDON)).year
    # The number is taken in its own short transaction: the counter row is locked for one
    # statement, not for the whole store (which would serialise every submission). A store
    # that then fails leaves a gap in the numbers; references stay unique and increasing.
    async with deps.engine.begin() as conn:
        reference = format_reference(year, await repo.next_sequence(conn, year))
    async with deps.engine.begin() as conn:
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
