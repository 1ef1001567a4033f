"""Small-number suppression rules of the performance report and its SVG charts (pure)."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from xml.etree import ElementTree

from services.intake.domain import figures
from services.intake.entrypoints import export
from services.intake.entrypoints.svgchart import bar_chart, report_charts
from tests.factories import intake_referral_row


def test_counts_from_one_to_threshold_minus_one_are_suppressed():
    assert figures.cell("a", 0, 5) == {"key": "a", "count": 0, "suppressed": False}
    assert figures.cell("a", 4, 5) == {"key": "a", "count": None, "suppressed": True}
    assert figures.cell("a", 5, 5) == {"key": "a", "count": 5, "suppressed": False}
    assert figures.cell("a", 9, 10)["suppressed"] and not figures.cell("a", 1, 0)["suppressed"]
    assert figures.rate(3, 100, 5) == {"numerator": None, "denominator": 100, "percent": None, "suppressed": True}
    assert figures.rate(3, 4, 5) == {"numerator": None, "denominator": None, "percent": None, "suppressed": True}
    assert figures.rate(50, 200, 5) == {"numerator": 50, "denominator": 200, "percent": 25.0, "suppressed": False}


def _row(received: datetime, **kw):
    return SimpleNamespace(**intake_referral_row(received, concern_types=["incel"], **kw))


def test_a_small_report_is_suppressed_and_its_exports_say_so():
    at = datetime(2026, 3, 2, 10, tzinfo=UTC)
    rows = [_row(at, acknowledged_at=at + timedelta(hours=h), pathway="no_further_action") for h in (1, 2, 3)]
    doc = figures.build(rows, date(2026, 3, 1), date(2026, 4, 30), at + timedelta(days=60), threshold=5)
    assert doc["total"] == {"key": "total", "count": None, "suppressed": True}
    assert doc["measures"]["median_time_to_acknowledgement"] == {"hours": None, "count": 3, "suppressed": True}
    assert [t["referrals"]["count"] for t in doc["trend"]] == [None, 0]
    rows_out = export.rows(doc)
    assert {"section": "total", "category": "referrals", "count": "<5", "numerator": "", "denominator": "",
            "percent": "", "value": ""} in rows_out
    loose = figures.build(rows, date(2026, 3, 1), date(2026, 3, 31), at + timedelta(days=60), threshold=0)
    assert loose["total"]["count"] == 3 and loose["measures"]["median_time_to_acknowledgement"]["hours"] == 2.0
    assert loose["trend"][0]["no_further_action"]["percent"] == 100.0


def test_charts_are_well_formed_svg_with_escaped_labels_and_suppressed_marks():
    svg = bar_chart("A <title>", [("x & y", 3), ("hidden", None)], hidden_label="<5")
    root = ElementTree.fromstring(svg)
    assert root.get("role") == "img" and root.find("{http://www.w3.org/2000/svg}title").text == "A <title>"
    assert "&lt;5" in svg and "x &amp; y" in svg and len(root.findall("{http://www.w3.org/2000/svg}rect")) == 1
    at = datetime(2026, 3, 2, 10, tzinfo=UTC)
    doc = figures.build([_row(at)] * 6, date(2026, 1, 1), date(2026, 12, 31), at, threshold=5)
    charts = report_charts(doc)
    assert set(charts) == {*doc["tables"], "trend_referrals", "trend_no_further_action"}
    for svg in charts.values():
        ElementTree.fromstring(svg)


def test_the_page_shows_suppressed_counts_and_rates_as_such():
    from services.intake.entrypoints import report as page

    at = datetime(2026, 3, 2, 10, tzinfo=UTC)
    rows = [_row(at, acknowledged_at=at + timedelta(hours=1), out_of_hours=i < 2) for i in range(6)]
    doc = figures.build(rows, date(2026, 3, 1), date(2026, 3, 31), at + timedelta(days=60), threshold=5)
    html = page._env.get_template("report.html").render(
        report=doc, charts=report_charts(doc), titles=page.TABLE_TITLES, measures=export.MEASURE_TITLES,
        hidden="<5", query="")
    assert "<dt>Received out of hours</dt><dd>suppressed (a count under 5)</dd>" in html
    assert "<dt>Referrals</dt><dd>6</dd>" in html and '<th scope="row">0-10</th><td class="num">0</td>' in html
    assert [r["percent"] for r in export.rows(doc) if r["category"] == "out_of_hours_share"] == ["[c]"]


def test_decided_within_one_working_day_counts_decisions_against_acknowledge_by():
    t0 = datetime(2026, 3, 2, 10, tzinfo=UTC)
    rows = [_row(t0, decided_at=t0 + timedelta(hours=2)),       # on time
            _row(t0, decided_at=t0 + timedelta(days=2)),        # late
            _row(t0),                                           # past decide-by, no decision: late
            _row(t0 + timedelta(days=9))]                       # not yet due: not counted
    now = t0 + timedelta(days=9, hours=1)
    assert figures.decided_on_time(rows, now) == (3, 1)
    assert figures.stats(rows, t0.date(), now.date(), now)["decided_on_time"] == {"due": 3, "on_time": 1, "rate": 0.3333}
    assert figures.build(rows, t0.date(), now.date(), now, threshold=1)["measures"][
        "decided_within_one_working_day"]["numerator"] == 1
