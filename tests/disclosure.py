"""A reader's attempts to recover suppressed figures of the performance report (issue 16).

`assert_nothing_recoverable(rows, doc, now)` takes the rows a report was built from (the
truth) and the report document, and tries what a reader with a calculator would: for each
table, the table's total minus the shown cells; for the monthly trend, the same along the
months (referrals; "no further action" decisions, whose total is the pathway table's cell;
decisions; the other decisions) and down each month (decisions = NFA + other); for each
rate, the denominator minus the numerator. A reader is assumed to know every table's total
(the number decided, checked, ... may be published elsewhere). It asserts that

- every shown figure is the true one, and no shown figure (nor a difference of two shown
  figures, such as referrals not acknowledged on time) is a small number;
- wherever figures are suppressed along a line whose total is known, at least two are
  suppressed and together they are not a small number (so no single one can be worked out,
  nor can the reader learn that they are all small), unless they are all zeros (a zero
  discloses nobody). A total that is itself a small number is withheld, and so are all its
  table's non-zero cells: the reader has no total to subtract from.

It is written independently of `figures` (it uses only `month_of` and `stats` for the truth).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from services.intake.domain import figures, tracks

NFA = "no_further_action"


def _line(label: str, values: Mapping[str, int], hidden: set[str], threshold: int, *, total_known: bool = True,
          zeros_shown: bool = True) -> None:
    small = lambda n: 0 < n < threshold  # noqa: E731
    for key, n in values.items():
        assert key in hidden or not small(n), f"{label}: {key} = {n} is shown although small"
        if zeros_shown and n == 0:
            assert key not in hidden, f"{label}: {key} is a zero yet suppressed"
    total = sum(values.values())
    if not hidden or not total_known or small(total):  # a small total is itself withheld: nothing to subtract from
        return
    rest = total - sum(n for key, n in values.items() if key not in hidden)
    if rest == 0:
        return  # only zeros are withheld here (e.g. with a withheld denominator): nobody is disclosed
    assert len(hidden) >= 2, f"{label}: only {sorted(hidden)} suppressed: total minus the rest gives {rest}"
    assert rest >= threshold, f"{label}: the suppressed {sorted(hidden)} add up to {rest}, a small number"


def assert_nothing_recoverable(rows: Sequence[Any], doc: dict[str, Any], now: datetime) -> None:
    threshold = doc["threshold"]
    small = lambda n: 0 < n < threshold  # noqa: E731
    truth: dict[str, Counter] = {
        "by_month": Counter(figures.month_of(r.received_at) for r in rows),
        "by_age_band": Counter(r.age_band for r in rows),
        "by_concern_type": Counter(c for r in rows for c in r.concern_types),
        "by_pathway": Counter(r.pathway for r in rows if r.pathway is not None),
        "by_checks_outcome": Counter(r.checks_outcome for r in rows if r.checks_outcome is not None),
        "by_referral_source_sector": Counter(r.referral_source_sector for r in rows
                                             if r.referral_source_sector is not None),
        "by_gender": Counter(r.gender for r in rows if r.gender is not None),
        "by_la_track": Counter(tracks.statuses(r)[0] for r in rows),
        "by_ctp_track": Counter(tracks.statuses(r)[1] for r in rows),
    }
    assert doc["total"]["count"] in (None, len(rows)) and doc["total"]["suppressed"] == small(len(rows))
    trend = doc["trend"]
    nfa_all_shown = all(t["no_further_action"]["numerator"] is not None for t in trend)
    shown_tables: dict[str, set[str]] = {}
    for name, cells in doc["tables"].items():
        values = {c["key"]: truth[name].get(c["key"], 0) for c in cells}
        for c in cells:
            assert c["suppressed"] == (c["count"] is None) and c["count"] in (None, values[c["key"]]), (name, c)
        hidden = {c["key"] for c in cells if c["suppressed"]}
        if name == "by_pathway" and NFA in hidden and nfa_all_shown and trend:
            hidden.discard(NFA)  # the months' "no further action" numerators add up to it
        _line(name, values, hidden, threshold)
        shown_tables[name] = {c["key"] for c in cells if not c["suppressed"]}

    # the trend of referrals is the month table, suppressed alike
    assert [t["referrals"] for t in trend] == doc["tables"]["by_month"]
    # the trend of "no further action": per month a = NFA decisions, d = decisions, b = d - a
    per = {t["month"]: [r for r in rows if figures.month_of(r.received_at) == t["month"] and r.pathway] for t in trend}
    a = {m: sum(1 for r in rs if r.pathway == NFA) for m, rs in per.items()}
    d = {m: len(rs) for m, rs in per.items()}
    b = {m: d[m] - a[m] for m in per}
    shown_a, shown_d = set(), set()
    for t in trend:
        m, rate = t["month"], t["no_further_action"]
        assert rate["denominator"] in (None, d[m]) and rate["numerator"] in (None, a[m]), (m, rate)
        assert (rate["percent"] is None) == (rate["numerator"] is None or not d[m]) and rate["suppressed"] == (
            rate["numerator"] is None), (m, rate)
        if rate["denominator"] is not None:
            shown_d.add(m)
            # down the month: decisions = NFA + other; both hidden together or both shown
            _line(f"trend {m}", {"nfa": a[m], "other": b[m]}, set() if rate["numerator"] is not None else
                  {"nfa", "other"}, threshold, zeros_shown=False)
        if rate["numerator"] is not None:
            assert rate["denominator"] is not None, (m, rate)
            shown_a.add(m)
    months = list(per)
    nfa_known = NFA in shown_tables["by_pathway"] or nfa_all_shown
    other_known = nfa_known or shown_tables["by_pathway"] >= set(truth["by_pathway"]) - {NFA}
    _line("trend decisions", d, set(months) - shown_d, threshold, zeros_shown=False)
    _line("trend NFA", a, set(months) - shown_a, threshold, total_known=nfa_known, zeros_shown=False)
    _line("trend other decisions", b, set(months) - shown_a, threshold, total_known=other_known, zeros_shown=False)

    # each rate: a shown numerator and denominator leave no small count (nor its complement)
    plain = figures.stats(rows, date.fromisoformat(doc["from"]), date.fromisoformat(doc["to"]), now)
    counts = {"acknowledged_within_one_working_day": plain["acknowledged_on_time"],
              "decided_within_one_working_day": plain["decided_on_time"],
              "checks_within_28_days": plain["checks_on_time"],
              "out_of_hours_share": {"on_time": plain["out_of_hours"], "due": len(rows)},
              "immediate_risk_share": {"on_time": plain["immediate_risk"], "due": len(rows)}}
    for name, c in counts.items():
        hits, due, rate = c["on_time"], c["due"], doc["measures"][name]
        assert rate["denominator"] in (None, due) and rate["numerator"] in (None, hits), (name, rate)
        assert (rate["denominator"] is None) == small(due), (name, rate)
        if rate["numerator"] is None:
            assert rate["percent"] is None and rate["suppressed"], (name, rate)
        else:
            assert not small(hits) and not small(due - hits), (name, hits, due)
    median = doc["measures"]["median_time_to_acknowledgement"]
    assert median["count"] is None or not small(median["count"]), median
