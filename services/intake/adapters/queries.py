"""Reads: a referral's status and timeline (no content; with the concerns the LA raised for
the control room), its sealed envelopes (recipient teams only), and performance statistics
(no personal data). Every read is audited."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Row

from services.intake.adapters import repository as repo
from services.intake.adapters.effects import record
from services.intake.context import Context
from services.intake.domain import figures, tracks
from services.intake.domain.access import performance_scope, recipient_team, staff_of
from services.intake.domain.errors import Gone
from shared.clock import LONDON
from shared.web.identity import Person


def _iso(v: datetime | None) -> str | None:
    return v.astimezone(LONDON).isoformat() if v is not None else None


def timeline(row: Any, concerns: Sequence[Any] = (), people: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Each step with when and by whom: `by` the client or person id; for a person, `by_name`
    (their display name, role and organisation) too."""
    steps = [("received", row.received_at, row.client_id), ("acknowledged", row.acknowledged_at, row.acknowledged_by),
             ("decided", row.decided_at, row.decided_by), ("checks_completed", row.checks_at, row.checks_by),
             ("feedback_released", row.feedback_at, row.feedback_by),
             ("strategy_discussion_recorded", row.strategy_at, row.strategy_by),
             ("la_track_closed", row.la_closed_at, row.la_closed_by),
             ("ctp_track_closed", row.ctp_closed_at, row.ctp_closed_by),
             ("closed", row.closed_at, row.closed_by),
             *(("concern_raised", c.raised_at, c.raised_by) for c in concerns)]
    people = people or {}
    return sorted(({"event": e, "at": _iso(at), "by": by,
                    **({"by_name": _display(people[by])} if by in people else {})}
                   for e, at, by in steps if at is not None), key=lambda s: s["at"])


def _display(person: Any) -> str:
    return Person(person.issuer, person.subject, person.name, person.role, person.organisation).display


def by_ids(row: Any, concerns: Sequence[Any] = ()) -> set[str]:
    """Every actor id the referral's `*_by` columns and concerns name."""
    cols = ("acknowledged_by", "decided_by", "checks_by", "feedback_by", "strategy_by", "la_closed_by",
            "ctp_closed_by", "closed_by")
    return {getattr(row, c) for c in cols if getattr(row, c)} | {c.raised_by for c in concerns}


def strategy_discussion(row: Any) -> dict[str, Any] | None:
    """The strategy discussion's record, metadata only (its notes stay sealed); None before one."""
    if row.strategy_at is None:
        return None
    return {"held_at": _iso(row.strategy_held_at), "agencies": list(row.strategy_agencies),
            "legal_advice_sought": row.strategy_legal_advice_sought, "decision": row.strategy_decision,
            "parents_informed": row.strategy_parents_informed,
            "family_contact_lifted": row.strategy_family_contact_lifted,
            "recorded_at": _iso(row.strategy_at), "recorded_by": row.strategy_by}


def concern(c: Any) -> dict[str, Any]:
    """One concern raised for the control room: its id, category, when and by whom."""
    return {"concern_id": c.id, "category": c.category, "raised_at": _iso(c.raised_at), "raised_by": c.raised_by}


def facts(row: Any) -> dict[str, Any]:
    """What the status reply and the list API's items both say of a referral: ids, codes,
    holds, receipt, outcome so far, both tracks, whether its content is shredded."""
    return {
        "referral_id": row.id, "reference": row.reference, "status": row.status,
        "client_reference": row.client_reference, "force": row.force, "la_code": row.la_code,
        "received_via": row.received_via, "immediate_risk": row.immediate_risk, "age_band": row.age_band,
        "concern_types": list(row.concern_types),
        "holding": {"no_further_sharing": row.no_further_sharing, "no_family_contact": row.family_contact_hold,
                    "review_by": row.holding_review_by.isoformat() if row.holding_review_by else None},
        "received_at": _iso(row.received_at), "out_of_hours": row.out_of_hours,
        "pathway": row.pathway, "checks_outcome": row.checks_outcome,
        "family_contact_lifted": row.family_contact_lifted,
        "tracks": tracks.summary(row._mapping, _iso), "shredded": row.shredded_at is not None,
    }


def summary(row: Any, concerns: Sequence[Any] = (), people: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {
        **facts(row), "acknowledge_by": _iso(row.acknowledge_by), "checks_due_by": _iso(row.checks_due_by),
        "strategy_discussion": strategy_discussion(row), "concerns": [concern(c) for c in concerns],
        "timeline": timeline(row, concerns, people),
    }


def _reader(person: Person | None, client_id: str) -> dict[str, Any] | None:
    """The audit detail of a read by a named person."""
    if person is None:
        return None
    return {"person": person.as_dict(), **({"client_id": client_id} if client_id != person.id else {})}


async def _read(ctx: Context, client_id: str, reference: str, check: Callable[[Any, Row | None], None],
                action: str, build: Callable[[Row], dict[str, Any]], person: Person | None = None) -> dict[str, Any]:
    client = ctx.principal(client_id, person)
    async with ctx.engine.begin() as conn:
        row = await repo.get_referral(conn, reference)
        check(client, row)  # role first; absent and another organisation's: the same 403
        reply = build(row)
        await record(conn, actor=person.id if person else client_id, action=action, reference=reference,
                     detail=_reader(person, client_id), at=ctx.clock())
    return reply


async def get_referral(ctx: Context, client_id: str, reference: str, person: Person | None = None) -> dict[str, Any]:
    """Any staff role of the LA or the force: status, concerns and timeline, never content."""
    client = ctx.principal(client_id, person)
    async with ctx.engine.begin() as conn:
        row = await repo.get_referral(conn, reference)
        staff_of(client, row)  # role first; absent and another organisation's: the same 403
        concerns = await repo.concerns_of(conn, row.id)
        reply = summary(row, concerns, await repo.names_of(conn, by_ids(row, concerns)))
        await record(conn, actor=person.id if person else client_id, action="referral.read", reference=reference,
                     detail=_reader(person, client_id), at=ctx.clock())
    return reply


def sealed_of(row: Any) -> dict[str, Any]:
    if row.shredded_at is not None or not row.content_sealed.get("recipients"):
        raise Gone("The sealed content of this referral has been destroyed")
    return {"referral_id": row.id, "reference": row.reference,
            "content_sealed": row.content_sealed, "contacts_sealed": row.contacts_sealed}


async def get_sealed(ctx: Context, client_id: str, reference: str, person: Person | None = None) -> dict[str, Any]:
    """Recipient teams only (social care of the LA, CTP Prevent of the force)."""
    return await _read(ctx, client_id, reference, recipient_team, "referral.sealed_read", sealed_of, person)


async def _performance_rows(ctx: Context, actor: str, org: str | None, start: date, end: date,
                            action: str, via: str | None = None,
                            person: Person | None = None) -> tuple[list[Any], datetime]:
    lo = datetime.combine(start, datetime.min.time(), LONDON)
    hi = datetime.combine(end + timedelta(days=1), datetime.min.time(), LONDON)
    now = ctx.clock()
    detail = {"from": start.isoformat(), "to": end.isoformat(), **({"via": via} if via else {}),
              **({"person": person.as_dict()} if person else {})}
    async with ctx.engine.begin() as conn:
        rows = await repo.stats_rows(conn, lo, hi, org)
        await record(conn, actor=actor, action=action, detail=detail, at=now)
    return rows, now


async def stats(ctx: Context, client_id: str, start: date, end: date) -> dict[str, Any]:
    """Counts for [start, end] (London dates). ops sees all; staff see their organisation."""
    org = performance_scope(ctx.settings.client(client_id))
    rows, now = await _performance_rows(ctx, client_id, org, start, end, "stats.read")
    return figures.stats(rows, start, end, now)


async def report(ctx: Context, actor: str, start: date, end: date, *, org: str | None = None,
                 via: str = "http", person: Person | None = None) -> dict[str, Any]:
    """The performance data report (small numbers suppressed) over the same rows as `stats`.
    `org` limits it to one organisation (None: all); callers decide who may see what. A page's
    read names the signed-in `person` in the audit."""
    rows, now = await _performance_rows(ctx, actor, org, start, end, "report.read", via, person)
    threshold = ctx.settings.file.system.small_number_threshold
    return figures.build(rows, start, end, now, threshold, scope=org or "all")
