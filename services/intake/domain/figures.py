"""Performance data (DESIGN §1.7) from referral metadata rows. Pure: rows in, a JSON-ready
dict out. `stats` is the plain counts of `GET /v1/stats`; `build` the report's tables and
measures, with small numbers suppressed as official statistics do.

Primary suppression: a count from 1 to `threshold - 1` is withheld (`count: null,
suppressed: true`); a rate is withheld when its numerator, its denominator or what the
numerator leaves of the denominator (e.g. the referrals *not* acknowledged on time) is such a
count; a median when fewer than `threshold` values make it. Zero is shown (it discloses nobody).

Secondary suppression (GSS/ONS practice), so that no withheld figure can be worked out from
the figures shown. Every table is treated as if its total were shown (a reader may know the
number of referrals, decisions or checks from elsewhere). In a table with withheld cells,
while only one cell is withheld, or the withheld cells together come to less than the
threshold (total minus the shown cells would tell the reader they are all small), the next
smallest non-zero cell is withheld too; so at least two are withheld and they come to at
least the threshold. The same rule holds along and across the tables that share figures:

- the trend of referrals per month is the month table itself, withheld alike;
- the monthly "no further action" rates: per month, NFA decisions + other decisions =
  decisions; along the months, NFA decisions add up to the pathway table's NFA cell, the
  decisions to the number decided, the other decisions to the other pathways' cells. A month
  whose rate is withheld hides its numerator and percentage (its denominator too when that
  is small), and a lone withheld month takes the next one with it;
- each rate is a table of two cells (numerator, the rest) whose total is its denominator.

The rule is checked on the whole report as one system of sums (exact linear algebra over
the withheld and unshown counts), and repeated until no withheld figure, and no small sum of
withheld cells of one table, can be worked out. Secondary cells are withheld exactly like
primary ones: nothing in the document tells them apart.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from fractions import Fraction
from statistics import median
from typing import Any, get_args

from services.intake.domain import tracks
from services.intake.domain.referral import ConcernType, Gender, ReferralSourceSector
from shared.clock import LONDON
from shared.messages import AgeBand, ChecksOutcome, Pathway

CATEGORIES: dict[str, tuple[str, ...]] = {
    "by_age_band": get_args(AgeBand), "by_concern_type": get_args(ConcernType),
    "by_pathway": get_args(Pathway), "by_checks_outcome": get_args(ChecksOutcome),
    "by_referral_source_sector": get_args(ReferralSourceSector), "by_gender": get_args(Gender),
    "by_la_track": tracks.LA_STATUSES, "by_ctp_track": tracks.CTP_STATUSES,
}
NFA = "no_further_action"
Key = tuple[str, ...]


def small(n: int, threshold: int) -> bool:
    return 0 < n < threshold


def cell(key: str, n: int, threshold: int, withheld: bool = False) -> dict[str, Any]:
    hidden = withheld or small(n, threshold)
    return {"key": key, "count": None if hidden else n, "suppressed": hidden}


def rate(hits: int, due: int, threshold: int, withheld: bool = False, due_withheld: bool = False) -> dict[str, Any]:
    """A rate on its own: withheld when its numerator, denominator or their difference is small
    (`withheld` / `due_withheld`: withheld anyway, by secondary suppression)."""
    due_hidden = due_withheld or small(due, threshold)
    hidden = withheld or due_hidden or small(hits, threshold) or small(due - hits, threshold)
    return {"numerator": None if hidden else hits, "denominator": None if due_hidden else due,
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
        "by_la_track": count(tracks.statuses(r)[0] for r in rows),
        "by_ctp_track": count(tracks.statuses(r)[1] for r in rows),
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



class Figures:
    """The counts of one report and the sums that tie them, for deciding what to withhold.

    Each count is `shown` (printed unless withheld), a `total` (a table's total, not printed
    but assumed known to a reader unless small) or `derived` (never printed, such as a rate's
    denominator minus its numerator; a reader may work it out). A sum says that some counts
    add up to another. `protect()` withholds the small shown counts and then, while a non-zero
    withheld (or small) count, or a small sum of withheld cells of one sum, can be worked out
    from what is shown, the smallest non-zero shown count that stops it (nearest first: a
    cell of the same table, then its total, then tables further along the sums).
    """

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.values: dict[Key, int] = {}
        self.kinds: dict[Key, str] = {}
        self.sums: list[tuple[tuple[Key, ...], Key]] = []
        self.pairs: list[tuple[Key, Key]] = []  # (numerator, denominator): a withheld denominator takes its numerator
        self.withheld: set[Key] = set()

    def add(self, key: Key, n: int, kind: str = "shown") -> Key:
        self.values[key], self.kinds[key] = n, kind
        return key

    def total_of(self, cells: Sequence[Key], total: Key) -> None:
        self.sums.append((tuple(cells), total))

    def rate(self, hits: Key, due: Key) -> None:
        """`hits` of `due`: the rest (due - hits) is a derived count, and the three a sum."""
        rest = self.add((*hits, "rest"), self.values[due] - self.values[hits], "derived")
        self.total_of((hits, rest), due)
        self.pairs.append((hits, due))

    def _small(self, key: Key) -> bool:
        return small(self.values[key], self.threshold)

    def _known(self, key: Key, withheld: set[Key]) -> bool:
        kind = self.kinds[key]
        return (kind == "shown" and key not in withheld) or (kind == "total" and not self._small(key))

    def _closed(self, withheld: set[Key]) -> set[Key]:
        return withheld | {hits for hits, due in self.pairs if due in withheld}

    def _echelon(self, withheld: set[Key]) -> list[tuple[Key, dict[Key, Fraction]]]:
        """The sums over the counts a reader does not see, in row echelon form."""
        rows: list[tuple[Key, dict[Key, Fraction]]] = []
        for cells, total in self.sums:
            row: dict[Key, Fraction] = {}
            for key, coefficient in [*((c, 1) for c in cells), (total, -1)]:
                if not self._known(key, withheld):
                    row[key] = row.get(key, Fraction(0)) + coefficient
            row = _reduce(row, rows)
            if row:
                pivot = next(iter(row))
                rows.append((pivot, {k: v / row[pivot] for k, v in row.items()}))
        return rows

    def _problems(self, withheld: set[Key]) -> list[tuple[str, Any]]:
        """What a reader could work out: a withheld or small count, or a small sum of one
        table's withheld cells."""
        rows = self._echelon(withheld)
        fixed = lambda keys: not _reduce({k: Fraction(1) for k in keys}, rows)  # noqa: E731
        found: list[tuple[str, Any]] = [
            ("count", key) for key in self.values if self.values[key] and not self._known(key, withheld)
            and (key in withheld or self._small(key)) and fixed([key])]
        for i, (cells, _total) in enumerate(self.sums):
            loose = [c for c in cells if not self._known(c, withheld) and not fixed([c])]
            if loose and small(sum(self.values[c] for c in loose), self.threshold) and fixed(loose):
                found.append(("sum", i))
        return found

    def _candidates(self, problem: tuple[str, Any], withheld: set[Key]) -> list[Key]:
        """Shown non-zero counts to withhold, nearest first: the cells of the sums the problem
        is in (smallest first), then their totals, then the sums reached through unseen counts."""
        order = {key: i for i, key in enumerate(self.values)}

        def showing(keys: Iterable[Key]) -> list[Key]:
            return sorted((k for k in keys if self.kinds[k] == "shown" and self._known(k, withheld) and self.values[k]),
                          key=lambda k: (self.values[k], order[k]))

        kind, what = problem
        seen = {what} if kind == "sum" else {i for i, (c, t) in enumerate(self.sums) if what in (*c, t)}
        layer, out = sorted(seen), []
        while layer:
            for key in [*showing(c for i in layer for c in self.sums[i][0]), *showing(self.sums[i][1] for i in layer)]:
                if key not in out:
                    out.append(key)
            unseen = {k for i in layer for k in (*self.sums[i][0], self.sums[i][1]) if not self._known(k, withheld)}
            layer = [i for i, (c, t) in enumerate(self.sums) if i not in seen and unseen & {*c, t}]
            seen.update(layer)
        return out

    def protect(self) -> set[Key]:
        """Withhold the small shown counts, then as many more as it takes (see the class)."""
        withheld = self._closed({k for k, kind in self.kinds.items() if kind == "shown" and self._small(k)})
        if not any(self._small(k) for k in self.values):
            self.withheld = withheld
            return withheld
        while True:
            problems = self._problems(withheld)
            for problem in problems:
                candidates = self._candidates(problem, withheld)
                if not candidates:
                    continue
                choice = next((c for c in candidates if problem not in self._problems(self._closed(withheld | {c}))),
                              candidates[0])
                withheld = self._closed(withheld | {choice})
                break
            else:
                self.withheld = withheld
                return withheld


def _reduce(vector: dict[Key, Fraction], rows: Sequence[tuple[Key, dict[Key, Fraction]]]) -> dict[Key, Fraction]:
    """`vector` less its part in the span of the echelon `rows` (empty: it is a combination of them)."""
    out = dict(vector)
    for pivot, row in rows:
        factor = out.get(pivot)
        if factor:
            for key, value in row.items():
                left = out.get(key, Fraction(0)) - factor * value
                if left:
                    out[key] = left
                else:
                    out.pop(key, None)
    return out


def _table(f: Figures, name: str, keys: Iterable[str], counts: Counter, total: Key | None = None) -> list[Key]:
    """A table's cells (its known categories, then any others) and the sum to its total."""
    known = list(keys)
    extra = sorted(k for k in counts if k not in known)
    cells = [f.add((name, k), counts.get(k, 0)) for k in [*known, *extra]]
    f.total_of(cells, total or f.add((name,), sum(counts.values()), "total"))  # (name,): no cell's key
    return cells


def _median_hours(rows: Sequence[Any], threshold: int) -> dict[str, Any]:
    hours = [(r.acknowledged_at - r.received_at).total_seconds() / 3600 for r in rows if r.acknowledged_at]
    hidden = len(hours) < threshold
    return {"hours": None if hidden or not hours else round(median(hours), 1),
            "count": None if small(len(hours), threshold) else len(hours), "suppressed": hidden and bool(hours)}


def build(rows: Sequence[Any], start: date, end: date, now: datetime, threshold: int,
          scope: str = "all") -> dict[str, Any]:
    """The report for referrals received in [start, end] (London dates)."""
    keys = months(start, end)
    f = Figures(threshold)
    total = f.add(("total",), len(rows))
    cells = {"by_month": _table(f, "by_month", keys, Counter(month_of(r.received_at) for r in rows), total)}
    values = {"by_age_band": (r.age_band for r in rows), "by_pathway": (r.pathway for r in rows),
              "by_concern_type": (c for r in rows for c in r.concern_types),
              "by_checks_outcome": (r.checks_outcome for r in rows),
              "by_referral_source_sector": (r.referral_source_sector for r in rows),
              "by_gender": (r.gender for r in rows),
              "by_la_track": (tracks.statuses(r)[0] for r in rows),
              "by_ctp_track": (tracks.statuses(r)[1] for r in rows)}
    for name, vals in values.items():
        cells[name] = _table(f, name, CATEGORIES[name], Counter(v for v in vals if v is not None))

    # the pathway table and the monthly "no further action" trend share their counts
    decided, nfa = ("by_pathway",), ("by_pathway", NFA)
    others = f.add((*nfa, "rest"), f.values[decided] - f.values[nfa], "derived")  # the other pathways
    f.total_of([c for c in cells["by_pathway"] if c != nfa], others)
    f.total_of([nfa, others], decided)
    per: dict[str, list[Any]] = {k: [] for k in keys}
    for r in rows:
        per.setdefault(month_of(r.received_at), []).append(r)
    trend = []
    for month in keys:
        pathways = [r.pathway for r in per[month] if r.pathway is not None]
        hits = f.add(("trend_nfa", month), sum(1 for p in pathways if p == NFA))
        due = f.add(("trend_decided", month), len(pathways))
        f.rate(hits, due)
        trend.append((month, hits, due))
    f.total_of([h for _, h, _ in trend], nfa)
    f.total_of([d for _, _, d in trend], decided)
    f.total_of([(*h, "rest") for _, h, _ in trend], others)

    ack_due, ack_hits, chk_due, chk_hits = on_time(rows, now)
    dec_due, dec_hits = decided_on_time(rows, now)
    measures = {"acknowledged_within_one_working_day": (ack_hits, ack_due),
                "decided_within_one_working_day": (dec_hits, dec_due), "checks_within_28_days": (chk_hits, chk_due),
                "out_of_hours_share": (sum(1 for r in rows if r.out_of_hours), None),
                "immediate_risk_share": (sum(1 for r in rows if r.immediate_risk), None)}
    rates = {}
    for name, (n, d) in measures.items():
        rates[name] = (f.add((name, "numerator"), n), total if d is None else f.add((name, "denominator"), d))
        f.rate(*rates[name])

    hidden = f.protect()
    show = lambda key: cell(key[-1], f.values[key], threshold, key in hidden)  # noqa: E731
    show_rate = lambda h, d: rate(f.values[h], f.values[d], threshold, h in hidden, d in hidden)  # noqa: E731
    return {
        "from": start.isoformat(), "to": end.isoformat(), "generated_at": now.astimezone(LONDON).isoformat(),
        "scope": scope, "threshold": threshold,
        "total": show(total),
        "tables": {name: [show(c) for c in table] for name, table in cells.items()},
        "measures": {**{name: show_rate(*keys) for name, keys in rates.items()},
                     "median_time_to_acknowledgement": _median_hours(rows, threshold)},
        "trend": [{"month": month, "referrals": show(("by_month", month)), "no_further_action": show_rate(h, d)}
                  for month, h, d in trend],
    }
