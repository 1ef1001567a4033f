"""The report as CSV (one long table; withheld counts and percentages written "[c]", the GSS
marker, whether small themselves or withheld so that a small one cannot be worked out from the
totals) or JSON (withheld values `null` with `"suppressed": true`), both from `figures.build`."""
from __future__ import annotations

import csv
import io
import json
from typing import Any

SUPPRESSED = "[c]"  # the GSS marker for a value withheld to protect confidentiality
COLUMNS = ("section", "category", "count", "numerator", "denominator", "percent", "value")
MEASURE_TITLES = {
    "acknowledged_within_one_working_day": "Acknowledged within one working day",
    "decided_within_one_working_day": "Next step decided within one working day",
    "checks_within_28_days": "CTP checks done within 28 days",
    "out_of_hours_share": "Received out of hours",
    "immediate_risk_share": "Immediate risk to safety",
}


def _shown(v: Any, hidden: str) -> str:
    return hidden if v is None else str(v)


def rows(report: dict[str, Any]) -> list[dict[str, str]]:
    """Flat rows (strings) for CSV and the page's tables; withheld values as "[c]"."""
    hidden = SUPPRESSED
    out = [{"section": "total", "category": "referrals", "count": _shown(report["total"]["count"], hidden)}]
    for name, cells in report["tables"].items():
        out += [{"section": name, "category": c["key"], "count": _shown(c["count"], hidden)} for c in cells]
    for name, m in report["measures"].items():
        if name == "median_time_to_acknowledgement":
            out.append({"section": "measure", "category": name, "count": str(m["count"]),
                        "value": "" if m["hours"] is None and not m["suppressed"] else _shown(m["hours"], hidden)})
            continue
        out.append({"section": "measure", "category": name, **_rate(m, hidden)})
    for t in report["trend"]:
        out.append({"section": "trend_referrals", "category": t["month"],
                    "count": _shown(t["referrals"]["count"], hidden)})
        out.append({"section": "trend_no_further_action", "category": t["month"],
                    **_rate(t["no_further_action"], hidden)})
    return [{k: r.get(k, "") for k in COLUMNS} for r in out]


def _rate(m: dict[str, Any], hidden: str) -> dict[str, str]:
    if m["denominator"] == 0:
        return {"numerator": "0", "denominator": "0", "percent": ""}
    return {"numerator": _shown(m["numerator"], hidden), "denominator": _shown(m["denominator"], hidden),
            "percent": _shown(m["percent"], hidden)}


def to_csv(report: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows(report))
    return buf.getvalue()


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2)
