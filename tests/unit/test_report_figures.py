"""Small-number suppression rules of the performance report and its SVG charts (pure)."""
from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from xml.etree import ElementTree

import pytest

from services.intake.domain import figures
from services.intake.entrypoints import export
from services.intake.entrypoints.svgchart import bar_chart, report_charts
from tests.disclosure import assert_nothing_recoverable
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
    assert doc["measures"]["median_time_to_acknowledgement"] == {"hours": None, "count": None, "suppressed": True}
    assert [t["referrals"]["count"] for t in doc["trend"]] == [None, 0]
    rows_out = export.rows(doc)
    assert {"section": "total", "category": "referrals", "count": "[c]", "numerator": "", "denominator": "",
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
    at = datetime(2026, 3, 2, 10, tzinfo=UTC)
    rows = [_row(at, acknowledged_at=at + timedelta(hours=1), out_of_hours=i < 2) for i in range(6)]
    doc = figures.build(rows, date(2026, 3, 1), date(2026, 3, 31), at + timedelta(days=60), threshold=5)
    html = _page(doc, report_charts(doc))
    assert _dd("Received out of hours", "[c]") in html
    assert _dd("Referrals", "6") in html and _cell("0-10", "0") in html
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


# Secondary suppression (issue 16): no suppressed figure can be worked out from the totals.

MARCH = (date(2026, 3, 1), date(2026, 3, 31))
LATER = datetime(2026, 6, 1, tzinfo=UTC)  # every clock of a referral received in March is due


def _many(n: int, at: datetime = datetime(2026, 3, 2, 10, tzinfo=UTC), **kw) -> list[SimpleNamespace]:
    return [SimpleNamespace(**intake_referral_row(at, **{"concern_types": ["incel"], **kw})) for _ in range(n)]


def _build(rows, start: date = MARCH[0], end: date = MARCH[1], threshold: int = 5) -> dict:
    return figures.build(rows, start, end, LATER, threshold)


def _hidden(doc: dict, table: str) -> set[str]:
    return {c["key"] for c in doc["tables"][table] if c["suppressed"]}


def test_a_lone_suppressed_cell_takes_the_next_smallest_with_it():
    rows = _many(2, age_band="0-10") + _many(30, age_band="11-15") + _many(8, age_band="16-17")
    doc = _build(rows)
    assert doc["total"]["count"] == 40  # 40 - 30 would give the withheld 2 away
    assert _hidden(doc, "by_age_band") == {"0-10", "16-17"}
    assert {c["key"]: c["count"] for c in doc["tables"]["by_age_band"]} == {"0-10": None, "11-15": 30, "16-17": None}
    assert_nothing_recoverable(rows, doc, LATER)


def test_suppressed_cells_adding_up_to_a_small_number_take_more_with_them():
    rows = (_many(1, age_band="0-10", concern_types=["incel"]) + _many(2, age_band="16-17", concern_types=["islamist"])
            + _many(2, concern_types=["islamist"]) + _many(28, concern_types=["extreme_right_wing"]))
    doc = _build(rows)
    assert _hidden(doc, "by_age_band") == {"0-10", "11-15", "16-17"}  # 1 + 2: the rest would say "3 in all"
    assert _hidden(doc, "by_concern_type") == {"incel", "islamist"}  # 1 + 4 = 5: enough as they are
    assert_nothing_recoverable(rows, doc, LATER)


def test_the_month_table_and_the_trend_of_referrals_are_suppressed_alike():
    rows = (_many(3, datetime(2026, 1, 5, 10, tzinfo=UTC)) + _many(20, datetime(2026, 2, 5, 10, tzinfo=UTC))
            + _many(30, datetime(2026, 3, 5, 10, tzinfo=UTC)))
    doc = _build(rows, date(2026, 1, 1), date(2026, 3, 31))
    assert _hidden(doc, "by_month") == {"2026-01", "2026-02"}
    assert [t["referrals"]["count"] for t in doc["trend"]] == [None, None, 30]
    assert_nothing_recoverable(rows, doc, LATER)


def test_a_months_no_further_action_count_cannot_be_worked_out_from_the_pathway_table():
    jan, feb = datetime(2026, 1, 5, 10, tzinfo=UTC), datetime(2026, 2, 5, 10, tzinfo=UTC)
    rows = (_many(3, jan, pathway="no_further_action") + _many(17, jan, pathway="section_17")
            + _many(20, feb, pathway="no_further_action") + _many(20, feb, pathway="section_17"))
    doc = _build(rows, date(2026, 1, 1), date(2026, 2, 28))
    # 23 NFA decisions in the pathway table minus February's 20 would give January's 3
    assert {c["key"]: c["count"] for c in doc["tables"]["by_pathway"]}["no_further_action"] == 23
    assert [t["no_further_action"] for t in doc["trend"]] == [
        {"numerator": None, "denominator": 20, "percent": None, "suppressed": True},
        {"numerator": None, "denominator": 40, "percent": None, "suppressed": True}]
    assert_nothing_recoverable(rows, doc, LATER)


def test_rates_hide_a_small_numerator_and_a_small_complement():
    at = datetime(2026, 3, 2, 10, tzinfo=UTC)
    rows = (_many(38, at, acknowledged_at=at + timedelta(hours=1))
            + _many(2, at, out_of_hours=True))  # never acknowledged: late
    doc = _build(rows)
    m = doc["measures"]
    # 38 of 40 on time would say that 2 were late
    assert m["acknowledged_within_one_working_day"] == {"numerator": None, "denominator": 40, "percent": None,
                                                        "suppressed": True}
    # 2 of 40 out of hours: the numerator and the percentage both go, the denominator is the total
    assert m["out_of_hours_share"] == {"numerator": None, "denominator": 40, "percent": None, "suppressed": True}
    assert_nothing_recoverable(rows, doc, LATER)
    few = _many(3, at, acknowledged_at=at + timedelta(hours=1)) + _many(10, at)
    assert _build(few)["measures"]["median_time_to_acknowledgement"] == {"hours": None, "count": None,
                                                                        "suppressed": True}


def test_a_report_with_no_small_numbers_is_unchanged():
    at = datetime(2026, 3, 2, 10, tzinfo=UTC)
    rows = (_many(10, at, age_band="0-10", pathway="no_further_action", checks_outcome="not_suitable",
                  acknowledged_at=at + timedelta(hours=1), decided_at=at + timedelta(hours=2),
                  checks_at=at + timedelta(days=1), out_of_hours=True)
            + _many(20, at, pathway="section_17", checks_outcome="channel_referral",
                    acknowledged_at=at + timedelta(days=2), checks_at=at + timedelta(days=1))
            + _many(6, at, age_band="16-17", concern_types=["islamist"], pathway="early_help"))
    doc = _build(rows)
    plain = _build(rows, threshold=0)  # nothing is small below 0: the counts as they are
    assert {**doc, "threshold": 0} == plain
    assert not any(c["suppressed"] for cells in doc["tables"].values() for c in cells)
    assert_nothing_recoverable(rows, doc, LATER)


def test_secondary_cells_look_like_primary_ones_in_the_csv_the_page_and_the_charts():
    rows = _many(2, age_band="0-10") + _many(30, age_band="11-15") + _many(8, age_band="16-17")
    doc = _build(rows)
    by = {(r["section"], r["category"]): r["count"] for r in export.rows(doc)}
    assert [by[("by_age_band", k)] for k in ("0-10", "11-15", "16-17")] == ["[c]", "30", "[c]"]
    charts = report_charts(doc)
    svg = ElementTree.fromstring(charts["by_age_band"])
    assert len(svg.findall("{http://www.w3.org/2000/svg}rect")) == 1
    assert svg.find("{http://www.w3.org/2000/svg}desc").text == "0-10: [c]; 11-15: 30; 16-17: [c]"
    html = _page(doc, charts)
    assert _cell("0-10", "[c]") in html and _cell("16-17", "[c]") in html and _cell("11-15", "30") in html


AGES = ("0-10", "11-15", "16-17")
CONCERNS = ("islamist", "extreme_right_wing", "mixed_unclear_unstable", "incel", "other")
PATHWAYS = ("immediate_protection", "section_47", "section_17", "early_help", "no_further_action", None)
OUTCOMES = ("suitable_for_prevent", "not_suitable", "channel_referral", "police_led", None)


def _random_rows(rng: random.Random) -> list[SimpleNamespace]:
    rows = []
    for _ in range(rng.randrange(0, 90)):
        at = datetime(2026, rng.choice((1, 2, 3)), rng.randint(1, 28), rng.randint(0, 23), tzinfo=UTC)
        late = lambda p: at + timedelta(hours=rng.choice((1, 3)) if rng.random() < p else 40)  # noqa: E731
        rows.append(SimpleNamespace(**intake_referral_row(
            at, age_band=rng.choices(AGES, (15, 70, 15))[0], concern_types=rng.sample(CONCERNS, rng.choice((1, 1, 2))),
            pathway=rng.choices(PATHWAYS, (3, 10, 25, 20, 35, 7))[0],
            checks_outcome=rng.choices(OUTCOMES, (40, 30, 13, 7, 10))[0], out_of_hours=rng.random() < 0.25,
            immediate_risk=rng.random() < 0.08, acknowledged_at=late(0.9) if rng.random() < 0.97 else None,
            decided_at=late(0.8) if rng.random() < 0.9 else None, checks_at=at + timedelta(days=rng.choice((3, 30))),
            referral_source_sector=rng.choice((None, "education", "education", "health", "police", "community")),
            gender=rng.choice((None, "male", "female", "female", "not_known")))))
    return rows


@pytest.mark.parametrize("seed", range(300))
def test_no_suppressed_figure_can_be_recovered_from_random_reports(seed):
    rng = random.Random(seed)
    rows = _random_rows(rng)
    doc = _build(rows, date(2026, 1, 1), date(2026, 3, 31), threshold=rng.choice((3, 5, 5, 10)))
    assert_nothing_recoverable(rows, doc, LATER)


def _page(doc, charts) -> str:
    """The report page's HTML for `doc`, rendered with the page's own templates and layout."""
    from pathlib import Path
    from types import SimpleNamespace

    from services.intake.entrypoints import pages, report as page
    from shared.web.pages import environment

    ctx = SimpleNamespace(clock=lambda: datetime(2026, 5, 1, tzinfo=UTC), settings=SimpleNamespace(
        local_authority=lambda code: None, force=lambda code: None))
    env = environment(Path(page.__file__).parent / "templates")
    return env.get_template("report.html").render(
        report=doc, charts=charts, titles=page.TABLE_TITLES, measures=export.MEASURE_TITLES, hidden="[c]",
        query="", title="Performance data", person=None, navigation=[], service_name="Referrals",
        home="/referrals", csrf_token="", cspNonce="n", **pages.common(ctx))


def _dd(key: str, value: str) -> str:
    return (f'<dt class="govuk-summary-list__key">{key}</dt>'
            f'<dd class="govuk-summary-list__value">{value}</dd>')


def _cell(row: str, value: str) -> str:
    return (f'<th scope="row" class="govuk-table__header">{row}</th>'
            f'<td class="govuk-table__cell govuk-table__cell--numeric">{value}</td>')
