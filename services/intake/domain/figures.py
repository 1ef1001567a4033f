"""Performance data (DESIGN §1.7) from referral metadata rows. Pure: rows in, a JSON-ready
dict out. `stats` is the plain counts of `GET /v1/stats`; `build` the report's tables and
measures, with small numbers suppressed as official statistics do.

Suppression: a count from 1 to `threshold - 1` becomes `count: null, suppressed: true`
(shown as "<5"); a rate is suppressed when its numerator or denominator is; a median
when fewer than `threshold` values make it. Zero is shown (it discloses nobody).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from statistics import median
from typing import Any, get_args

from services.intake.domain.referral import ConcernType, Gender, ReferralSourceSector
from shared.clock import LONDON
from shared.messages import AgeBand, ChecksOutcome, Pathway

CATEGORIES: dict[str, tuple[str, ...]] = {
    "by_age_band": get_args(AgeBand), "by_concern_type": get_args(ConcernType),
    "by_pathway": get_args(Pathway), "by_checks_outcome": get_args(ChecksOutcome),
    "by_referral_source_sector": get_args(ReferralSourceSector), "by_gender": get_args(Gender),
}
NFA = "no_further_action"


def small(n: int, threshold: int) -> bool:
    return 0 < n < threshold


def cell(key: str, n: int, threshold: int) -> dict[str, Any]:
    hidden = small(n, threshold)
    return {"key": key, "count": None if hidden else n, "suppressed": hidden}


def rate(hits: int, due: int, threshold: int) -> dict[str, Any]:
    hidden = small(hits, threshold) or small(due, threshold)
    return {"numerator": None if hidden else hits, "denominator": None if small(due, threshold) else due,
            "percent": None if hidden or not due else round(100 * hits / due, 1), "suppressed": hidden}


def on_time(rows: Sequence[Any], now: datetime) -> tuple[int, int, int, int]:
    """(acknowledgements due, on time, checks due, on time): a clock counts once it is done or past."""
    ack_due, ack_hits = clock(rows, now, "acknowledged_at", "acknowledge_by")
    chk_due, chk_hits = clock(rows, now, "checks_at", "checks_due_by")
    return ack_due, ack_hits, chk_due, chk_hits


def clock(rows: Sequence[Any], now: datetime, done: str, deadline: str) -> tuple[int, int]:
    """(due, on time) of one clock: a referral counts once the clock is stopped or past."""
    due = [r for r in rows if getattr(r, done) is not None or getattr(r, deadline) <= now]
    return len(due), sum(1 for r in due if getattr(r, done) is not None and getattr(r, done) <= getattr(r, deadline))


def decided_on_time(rows: Sequence[Any], now: datetime) -> tuple[int, int]:
    """Decide-by is acknowledge-by: (decisions due, on time)."""
    return clock(rows, now, "decided_at", "acknowledge_by")


def stats(rows: Sequence[Any], start: date, end: date, now: datetime) -> dict[str, Any]:
    """Plain counts and on-time rates, no suppression."""
    ack_due, ack_hits, chk_due, chk_hits = on_time(rows, now)
    dec_due, dec_hits = decided_on_time(rows, now)
    count = lambda values: dict(sorted(Counter(v for v in values if v is not None).items()))  # noqa: E731
    share = lambda hits, due: round(hits / due, 4) if due else None  # noqa: E731
    return {
        "from": start.isoformat(), "to": end.isoformat(), "total": len(rows),
        "by_status": count(r.status for r in rows),
        "by_pathway": count(r.pathway for r in rows),
        "by_checks_outcome": count(r.checks_outcome for r in rows),
        "by_age_band": count(r.age_band for r in rows),
        "by_concern_type": count(c for r in rows for c in r.concern_types),
        "by_referral_source_sector": count(r.referral_source_sector for r in rows),
        "by_gender": count(r.gender for r in rows),
        "immediate_risk": sum(1 for r in rows if r.immediate_risk),
        "out_of_hours": sum(1 for r in rows if r.out_of_hours),
        "acknowledged_on_time": {"due": ack_due, "on_time": ack_hits, "rate": share(ack_hits, ack_due)},
        "decided_on_time": {"due": dec_due, "on_time": dec_hits, "rate": share(dec_hits, dec_due)},
        "checks_on_time": {"due": chk_due, "on_time": chk_hits, "rate": share(chk_hits, chk_due)},
    }


def months(start: date, end: date) -> list[str]:
    out, y, m = [], start.year, start.month
    while (y, m) <= (end.year, end.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def month_of(at: datetime) -> str:
    return at.astimezone(LONDON).strftime("%Y-%m")


def _table(keys: Iterable[str], counts: Counter, threshold: int) -> list[dict[str, Any]]:
    known = list(keys)
    extra = sorted(k for k in counts if k not in known)
    return [cell(k, counts.get(k, 0), threshold) for k in [*known, *extra]]


def _median_hours(rows: Sequence[Any], threshold: int) -> dict[str, Any]:
    hours = [(r.acknowledged_at - r.received_at).total_seconds() / 3600 for r in rows if r.acknowledged_at]
    hidden = len(hours) < threshold
    return {"hours": None if hidden or not hours else round(median(hours), 1), "count": len(hours),
            "suppressed": hidden and bool(hours)}


def _trend(rows: Sequence[Any], keys: list[str], threshold: int) -> list[dict[str, Any]]:
    per: dict[str, list[Any]] = {k: [] for k in keys}
    for r in rows:
        per.setdefault(month_of(r.received_at), []).append(r)
    out = []
    for month in keys:
        decided = [r for r in per[month] if r.pathway is not None]
        nfa = sum(1 for r in decided if r.pathway == NFA)
        out.append({"month": month, "referrals": cell(month, len(per[month]), threshold),
                    "no_further_action": rate(nfa, len(decided), threshold)})
    return out


def build(rows: Sequence[Any], start: date, end: date, now: datetime, threshold: int,
          scope: str = "all") -> dict[str, Any]:
    """The report for referrals received in [start, end] (London dates)."""
    keys = months(start, end)
    tables = {"by_month": _table(keys, Counter(month_of(r.received_at) for r in rows), threshold)}
    values = {"by_age_band": (r.age_band for r in rows), "by_pathway": (r.pathway for r in rows),
              "by_concern_type": (c for r in rows for c in r.concern_types),
              "by_checks_outcome": (r.checks_outcome for r in rows),
              "by_referral_source_sector": (r.referral_source_sector for r in rows),
              "by_gender": (r.gender for r in rows)}
    for name, vals in values.items():
        tables[name] = _table(CATEGORIES[name], Counter(v for v in vals if v is not None), threshold)
    ack_due, ack_hits, chk_due, chk_hits = on_time(rows, now)
    dec_due, dec_hits = decided_on_time(rows, now)
    return {
        "from": start.isoformat(), "to": end.isoformat(), "generated_at": now.astimezone(LONDON).isoformat(),
        "scope": scope, "threshold": threshold,
        "total": cell("total", len(rows), threshold),
        "tables": tables,
        "measures": {
            "acknowledged_within_one_working_day": rate(ack_hits, ack_due, threshold),
            "decided_within_one_working_day": rate(dec_hits, dec_due, threshold),
            "checks_within_28_days": rate(chk_hits, chk_due, threshold),
            "out_of_hours_share": rate(sum(1 for r in rows if r.out_of_hours), len(rows), threshold),
            "immediate_risk_share": rate(sum(1 for r in rows if r.immediate_risk), len(rows), threshold),
            "median_time_to_acknowledgement": _median_hours(rows, threshold),
        },
        "trend": _trend(rows, keys, threshold),
    }
