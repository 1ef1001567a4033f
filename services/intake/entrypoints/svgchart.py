"""Small server-side SVG charts (no JavaScript, no network): horizontal bars and a line.

`report_charts(report)` draws the /report page's charts from the report's JSON document
(the same as `GET /v1/report`). A withheld value (`null`) is drawn as no bar (no point) with
the label "[c]", the GSS marker, whether it was small or withheld so that a small one cannot
be worked out from the totals: the two look alike.
Every chart is `role="img"` with a title and description for screen readers.
"""
from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

WIDTH = 640
BAR = "#1d70b8"  # GOV.UK blue
INK = "#0b0c0c"
GRID = "#b1b4b6"


def _fmt(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def _open(title: str, desc: str, height: int) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" font-family="Arial, sans-serif" font-size="13">'
            f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>")


def bar_chart(title: str, items: Sequence[tuple[str, float | None]], *, unit: str = "",
              hidden_label: str = "[c]") -> str:
    """Horizontal bars, one per (label, value); None means suppressed."""
    label_w, row, top = 210, 24, 8
    height = top * 2 + row * max(len(items), 1)
    top_value = max([v for _, v in items if v is not None] + [1])
    span = WIDTH - label_w - 70
    desc = "; ".join(f"{k}: {hidden_label if v is None else _fmt(v) + unit}" for k, v in items)
    parts = [_open(title, desc, height)]
    for i, (label, value) in enumerate(items):
        y = top + i * row
        parts.append(f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end" fill="{INK}">{escape(label)}</text>')
        if value is None:
            parts.append(f'<text x="{label_w + 4}" y="{y + 16}" fill="{INK}">{escape(hidden_label)}</text>')
            continue
        w = span * value / top_value
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" fill="{BAR}"/>')
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 16}" fill="{INK}">{_fmt(value)}{escape(unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart(title: str, labels: Sequence[str], values: Sequence[float | None], *, unit: str = "",
               hidden_label: str = "[c]") -> str:
    """One series over `labels` (e.g. months); None breaks the line (suppressed)."""
    left, right, top, bottom, height = 50, 20, 16, 40, 220
    top_value = max([v for v in values if v is not None] + [1])
    step = (WIDTH - left - right) / max(len(labels) - 1, 1)
    x = lambda i: left + i * step  # noqa: E731
    y = lambda v: top + (height - top - bottom) * (1 - v / top_value)  # noqa: E731
    desc = "; ".join(f"{k}: {hidden_label if v is None else _fmt(v) + unit}" for k, v in zip(labels, values))
    parts = [_open(title, desc, height),
             f'<line x1="{left}" y1="{y(0):.1f}" x2="{WIDTH - right}" y2="{y(0):.1f}" stroke="{GRID}"/>',
             f'<text x="{left - 6}" y="{y(top_value) + 4:.1f}" text-anchor="end" fill="{INK}">'
             f"{_fmt(top_value)}{escape(unit)}</text>",
             f'<text x="{left - 6}" y="{y(0) + 4:.1f}" text-anchor="end" fill="{INK}">0</text>']
    segment: list[str] = []
    for i, v in enumerate([*values, None]):
        if v is not None:
            segment.append(f"{x(i):.1f},{y(v):.1f}")
            parts.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{BAR}"/>')
        elif segment:
            parts.append(f'<polyline points="{" ".join(segment)}" fill="none" stroke="{BAR}" stroke-width="2"/>')
            segment = []
    for i, label in enumerate(labels):
        if len(labels) <= 13 or i % 2 == 0:
            parts.append(f'<text x="{x(i):.1f}" y="{height - bottom + 18}" text-anchor="middle" '
                         f'font-size="11" fill="{INK}">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


TABLE_TITLES = {"by_month": "Referrals by month", "by_age_band": "Referrals by age band",
                "by_concern_type": "Referrals by type of concern", "by_pathway": "Referrals by pathway decision",
                "by_checks_outcome": "Referrals by CTP checks outcome",
                "by_referral_source_sector": "Referrals by the referrer's sector", "by_gender": "Referrals by gender",
                "by_la_track": "Local authority track now", "by_ctp_track": "CTP Prevent track now"}


def report_charts(report: dict[str, Any]) -> dict[str, str]:
    """The report's charts as SVG strings, keyed like its tables plus `trend_*`."""
    hidden = "[c]"
    charts = {name: bar_chart(title, [(c["key"], c["count"]) for c in report["tables"][name]], hidden_label=hidden)
              for name, title in TABLE_TITLES.items()}
    months = [t["month"] for t in report["trend"]]
    charts["trend_referrals"] = line_chart("Trend of referrals per month", months,
                                           [t["referrals"]["count"] for t in report["trend"]], hidden_label=hidden)
    charts["trend_no_further_action"] = line_chart(
        "Trend of 'no further action' decisions (% of decisions) per month", months,
        [t["no_further_action"]["percent"] for t in report["trend"]], unit="%", hidden_label=hidden)
    return charts
