"""Reads: a referral's status and timeline (no content), its sealed envelopes (recipient
teams only), and performance statistics (no personal data). Every read is audited."""
from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.intake.actions import authorise
from services.intake.adapters import repository as repo
from services.intake.deps import Deps, record
from services.intake.domain.errors import Forbidden, Gone, NotFound
from services.intake.reporting import figures
from shared.worktime import LONDON

_LONDON = ZoneInfo(LONDON)
STAFF = ("referrer", "social_care", "prevent", "control_room")


def _iso(v: datetime | None) -> str | None:
    return v.astimezone(_LONDON).isoformat() if v is not None else None


def timeline(row: Any) -> list[dict[str, Any]]:
    steps = [("received", row.received_at, row.client_id), ("acknowledged", row.acknowledged_at, row.acknowledged_by),
             ("decided", row.decided_at, row.decided_by), ("checks_completed", row.checks_at, row.checks_by),
             ("feedback_released", row.feedback_at, row.feedback_by), ("closed", row.closed_at, row.closed_by)]
    return sorted(({"event": e, "at": _iso(at), "by": by} for e, at, by in steps if at is not None),
                  key=lambda s: s["at"])


def summary(row: Any) -> dict[str, Any]:
    return {
        "referral_id": row.id, "reference": row.reference, "status": row.status,
        "client_reference": row.client_reference, "force": row.force, "la_code": row.la_code,
        "received_via": row.received_via, "immediate_risk": row.immediate_risk, "age_band": row.age_band,
        "concern_types": list(row.concern_types),
        "holding": {"no_further_sharing": row.no_further_sharing, "no_family_contact": row.family_contact_hold,
                    "review_by": row.holding_review_by.isoformat() if row.holding_review_by else None},
        "received_at": _iso(row.received_at), "out_of_hours": row.out_of_hours,
        "acknowledge_by": _iso(row.acknowledge_by), "checks_due_by": _iso(row.checks_due_by),
        "pathway": row.pathway, "checks_outcome": row.checks_outcome,
        "family_contact_lifted": row.family_contact_lifted, "shredded": row.shredded_at is not None,
        "timeline": timeline(row),
    }


def _staff_of(client: Any, row: Any) -> None:
    if client is None or client.role not in STAFF:
        raise Forbidden("This client's role may not read referrals", reason="wrong_role")
    if client.organisation not in (row.la_code, row.force):
        raise Forbidden("This referral is not for this client's organisation", reason="wrong_organisation")


def _recipient_team(client: Any, row: Any) -> None:
    authorise(client, row, {"social_care": "la_code", "prevent": "force"})


async def _read(deps: Deps, client_id: str, reference: str, check, action: str, build) -> dict[str, Any]:
    client = deps.settings.client(client_id)
    async with deps.engine.begin() as conn:
        row = await repo.get_referral(conn, reference)
        if row is None:
            raise NotFound("No such referral")
        check(client, row)
        reply = build(row)
        await record(conn, actor=client_id, action=action, reference=reference, at=deps.clock())
    return reply


async def get_referral(deps: Deps, client_id: str, reference: str) -> dict[str, Any]:
    """Any staff role of the LA or the force: status and timeline, never content."""
    return await _read(deps, client_id, reference, _staff_of, "referral.read", summary)


def _sealed(row: Any) -> dict[str, Any]:
    if row.shredded_at is not None or not row.content_sealed.get("recipients"):
        raise Gone("The sealed content of this referral has been destroyed")
    return {"referral_id": row.id, "reference": row.reference,
            "content_sealed": row.content_sealed, "contacts_sealed": row.contacts_sealed}


async def get_sealed(deps: Deps, client_id: str, reference: str) -> dict[str, Any]:
    """Recipient teams only (social care of the LA, CTP Prevent of the force)."""
    return await _read(deps, client_id, reference, _recipient_team, "referral.sealed_read", _sealed)


def _rate(hits: int, due: int) -> float | None:
    return round(hits / due, 4) if due else None


def performance_scope(deps: Deps, client_id: str) -> str | None:
    """The organisation a client's performance reads are limited to (None: all, for ops)."""
    client = deps.settings.client(client_id)
    if client is None:
        raise Forbidden(reason="wrong_role")
    return None if client.role == "ops" else client.organisation


async def _performance_rows(deps: Deps, actor: str, org: str | None, start: date, end: date,
                            action: str, via: str | None = None) -> tuple[list[Any], datetime]:
    lo = datetime.combine(start, datetime.min.time(), _LONDON)
    hi = datetime.combine(end + timedelta(days=1), datetime.min.time(), _LONDON)
    now = deps.clock()
    detail = {"from": start.isoformat(), "to": end.isoformat(), **({"via": via} if via else {})}
    async with deps.engine.begin() as conn:
        rows = await repo.stats_rows(conn, lo, hi, org)
        await record(conn, actor=actor, action=action, detail=detail, at=now)
    return rows, now


async def stats(deps: Deps, client_id: str, start: date, end: date) -> dict[str, Any]:
    """Counts for [start, end] (London dates). ops sees all; staff see their organisation."""
    rows, now = await _performance_rows(deps, client_id, performance_scope(deps, client_id), start, end, "stats.read")
    ack_due, ack_hits, chk_due, chk_hits = figures.on_time(rows, now)
    count = lambda values: dict(sorted(Counter(v for v in values if v is not None).items()))  # noqa: E731
    return {
        "from": start.isoformat(), "to": end.isoformat(), "total": len(rows),
        "by_status": count(r.status for r in rows),
        "by_pathway": count(r.pathway for r in rows),
        "by_checks_outcome": count(r.checks_outcome for r in rows),
        "by_age_band": count(r.age_band for r in rows),
        "by_concern_type": count(c for r in rows for c in r.concern_types),
        "immediate_risk": sum(1 for r in rows if r.immediate_risk),
        "out_of_hours": sum(1 for r in rows if r.out_of_hours),
        "acknowledged_on_time": {"due": ack_due, "on_time": ack_hits, "rate": _rate(ack_hits, ack_due)},
        "checks_on_time": {"due": chk_due, "on_time": chk_hits, "rate": _rate(chk_hits, chk_due)},
    }


async def report(deps: Deps, actor: str, start: date, end: date, *, org: str | None = None,
                 via: str = "http") -> dict[str, Any]:
    """The performance data report (small numbers suppressed) over the same rows as `stats`.
    `org` limits it to one organisation (None: all); callers decide who may see what."""
    rows, now = await _performance_rows(deps, actor, org, start, end, "report.read", via)
    threshold = deps.settings.file.system.small_number_threshold
    return figures.build(rows, start, end, now, threshold, scope=org or "all")
