"""The performance data report over a synthetic year of 5,000 referrals (tests/synthetic.py)
in intake's real PostgreSQL table: the shares come out as generated, small numbers are
suppressed (and the cells that would give them away from the totals), CSV and JSON parse, the /report page renders its tables and SVG charts for a
signed-in person only (ops: every organisation; staff: their own), and no canary from the referrals appears anywhere."""
from __future__ import annotations

import asyncio
import csv
import functools
import io
import json
import statistics
import time
from collections import Counter
from datetime import date, datetime
from types import SimpleNamespace

import pytest

from safeguard import cli
from safeguard import report as report_cli
from tests import synthetic
from tests.disclosure import assert_nothing_recoverable
from tests.factories import new_canary
from tests.intake.conftest import OTHER_PEOPLE
from tests.support.oidc import person

RARE = "left_wing_anarchist_single_issue"  # given to exactly 3 referrals: must be suppressed
YEAR = "from=2025-01-01&to=2025-12-31"


@functools.cache
def _synthetic_year() -> tuple[list[dict], str]:
    """Generated once per session (the rows are not changed by inserting them)."""
    canary = new_canary()
    rows = synthetic.referral_rows(5000, year=2025, seed=7, canary=canary)
    for row in rows[:3]:
        row["concern_types"] = [RARE]
    return rows, canary


@pytest.fixture
async def year(intake):
    rows, canary = _synthetic_year()
    started = time.perf_counter()
    await synthetic.insert(intake.engine, rows)
    print(f"inserted {len(rows)} referrals in {time.perf_counter() - started:.2f} s")
    return rows, canary


def _cells(table):
    return {c["key"]: c for c in table}


def _share(cells, key, total):
    return 100 * cells[key]["count"] / total


async def test_report_over_a_synthetic_year(intake, year, monkeypatch, capsys):
    rows, canary = year
    resp = await intake.call("GET", "/v1/report", "dev-ops", query=YEAR)
    assert resp.status == 200
    text = await resp.text()
    doc = json.loads(text)
    assert canary not in text and "PRV-2025" not in text and "dev-mash" not in text
    assert doc["total"] == {"key": "total", "count": 5000, "suppressed": False} and doc["scope"] == "all"
    tables = doc["tables"]
    assert [c["key"] for c in tables["by_month"]] == [f"2025-{m:02d}" for m in range(1, 13)]
    assert sum(c["count"] for c in tables["by_month"]) == 5000
    ages, outcomes = _cells(tables["by_age_band"]), _cells(tables["by_checks_outcome"])
    assert 67.5 <= _share(ages, "11-15", 5000) <= 72.5  # 70 % of under-18s aged 11–15
    assert 11 <= _share(outcomes, "channel_referral", 5000) <= 15  # ~13 % discussed at panel
    truth = {"by_age_band": Counter(r["age_band"] for r in rows),
             "by_pathway": Counter(r["pathway"] for r in rows),
             "by_checks_outcome": Counter(r["checks_outcome"] for r in rows),
             "by_concern_type": Counter(c for r in rows for c in r["concern_types"])}
    for name, counts in truth.items():
        for key, cell in _cells(tables[name]).items():
            n = counts.get(key, 0)
            assert cell["count"] in (None, n) and cell["suppressed"] == (cell["count"] is None), (name, key)
            assert cell["suppressed"] or not 0 < n < 5, (name, key)
    assert _cells(tables["by_concern_type"])[RARE] == {"key": RARE, "count": None, "suppressed": True}
    # the rare type takes the next smallest with it, so that 5000 minus the rest does not give it away
    assert len([c for c in tables["by_concern_type"] if c["suppressed"]]) == 2
    assert_nothing_recoverable([SimpleNamespace(**r) for r in rows], doc, datetime.fromisoformat(doc["generated_at"]))
    m = doc["measures"]
    assert 87.5 <= m["acknowledged_within_one_working_day"]["percent"] <= 92.5
    assert 82.5 <= m["checks_within_28_days"]["percent"] <= 87.5
    assert 22.5 <= m["out_of_hours_share"]["percent"] <= 27.5
    hours = [(r["acknowledged_at"] - r["received_at"]).total_seconds() / 3600 for r in rows]
    assert m["median_time_to_acknowledgement"] == {"hours": round(statistics.median(hours), 1), "count": 5000,
                                                   "suppressed": False}
    assert len(doc["trend"]) == 12
    for t in doc["trend"]:
        assert 28 <= t["no_further_action"]["percent"] <= 48 and t["referrals"]["count"] > 300

    # staff see their own organisation only; the JSON is the CLI's too
    other = await intake.call("GET", "/v1/report", "other-social-care", query=YEAR)
    assert (await other.json())["total"]["count"] == 0 and (await other.json())["scope"] == "E88888888"
    assert (await intake.client.get(f"/v1/report?{YEAR}")).status == 401
    bad = await intake.call("GET", "/v1/report", "dev-ops", query="from=2025-13-01")
    assert bad.status == 422

    out = io.StringIO()
    assert await report_cli.report_command(intake.settings, date(2025, 1, 1), date(2025, 12, 31), fmt="json",
                                           out=out) == 0
    cli_doc = json.loads(out.getvalue())
    assert {**cli_doc, "generated_at": None} == {**doc, "generated_at": None}
    out = io.StringIO()
    assert await report_cli.report_command(intake.settings, date(2025, 1, 1), date(2025, 12, 31), out=out) == 0
    assert canary not in out.getvalue()
    parsed = list(csv.DictReader(io.StringIO(out.getvalue())))
    by = {(r["section"], r["category"]): r for r in parsed}
    assert by[("total", "referrals")]["count"] == "5000"
    assert by[("by_concern_type", RARE)]["count"] == "[c]"
    assert by[("by_age_band", "11-15")]["count"] == str(_cells(tables["by_age_band"])["11-15"]["count"])
    assert float(by[("measure", "checks_within_28_days")]["percent"]) == m["checks_within_28_days"]["percent"]
    assert len([r for r in parsed if r["section"] == "trend_no_further_action"]) == 12

    # the command as run from a shell: settings from the environment
    monkeypatch.setenv("SAFEGUARD_CONFIG", str(intake.settings.config_path))
    monkeypatch.setenv("SAFEGUARD_DATABASE_URL", intake.settings.database_url)
    capsys.readouterr()
    argv = ["report", "--from", "2025-06-01", "--to", "2025-06-30", "--format", "json"]
    assert await asyncio.to_thread(cli.main, argv) == 0
    june = json.loads(capsys.readouterr().out)
    assert june["total"]["count"] == _cells(tables["by_month"])["2025-06"]["count"] and len(june["trend"]) == 1
    with pytest.raises(SystemExit):
        cli.main(["report", "--from", "June", "--to", "2025-06-30"])
    audit = [r for r in await intake.audit_rows() if r.action == "report.read" and r.outcome == "ok"]
    assert [(r.actor, r.detail["via"]) for r in audit] == [("dev-ops", "http"), ("other-social-care", "http"),
                                                           ("cli", "cli"), ("cli", "cli"), ("cli", "cli")]


async def test_report_page_needs_sign_in_and_renders_tables_and_charts(pages):
    rows, canary = _synthetic_year()
    await synthetic.insert(pages.engine, rows)
    async with pages.session() as http:
        async with http.get(f"{pages.url}/report?{YEAR}", allow_redirects=False) as page:
            assert page.status == 303 and page.headers["Location"].startswith("/sign-in?next=")
        async with http.get(f"{pages.url}/report/report.csv?{YEAR}", allow_redirects=False) as csv_resp:
            assert csv_resp.status == 303
        html = await pages.signed_in(http, person("ops").sub, f"/report?{YEAR}")  # lands back on the report
        assert "<main" in html and "all organisations" in html
        assert canary not in html and "PRV-2025" not in html
        for title in ("Referrals by month", "Referrals by age band", "Referrals by type of concern",
                      "Referrals by pathway decision", "Referrals by CTP checks outcome",
                      "Trend of referrals per month", "Acknowledged within one working day",
                      "CTP checks done within 28 days", "Median time to acknowledgement", "Received out of hours",
                      "Referrals by the referrer's sector", "Referrals by gender",
                      "Next step decided within one working day", "Local authority track now",
                      "CTP Prevent track now"):
            assert title.replace("'", "&#39;") in html, title
        assert html.count("<svg") == 11 + 2 and html.count('role="img"') == 11  # the charts, the GOV.UK logos
        assert (f'<th scope="row" class="govuk-table__header">{RARE}</th>'
                '<td class="govuk-table__cell govuk-table__cell--numeric">[c]</td>') in html
        assert "“[c]” marks a figure withheld to protect confidentiality" in html
        assert ">5000<" in html
        async with http.get(f"{pages.url}/report/report.csv?{YEAR}") as csv_resp:
            assert csv_resp.status == 200 and csv_resp.content_type == "text/csv"
            assert canary not in await csv_resp.text()
        async with http.get(f"{pages.url}/report?from=2025-13-01") as bad:
            assert bad.status == 422 and "Check the dates" in await bad.text()
    async with pages.session() as http:  # a staff person sees their own organisation only (no referrals)
        html = await pages.signed_in(http, OTHER_PEOPLE[0]["sub"], f"/report?{YEAR}")
        assert "Other Borough only" in html and ">5000<" not in html
    reads = [r for r in await pages.audit_rows() if r.action == "report.read"]
    assert [(r.detail["person"]["name"], r.detail["via"]) for r in reads] == [
        ("Alex Reid", "page"), ("Alex Reid", "page"), ("Robin Hale", "page")]
