"""deploy/observability: the alert rules and the Grafana dashboard use only metrics that exist.

A metric is known if shared/metrics.py defines it or deploy/observability/metrics.yaml
lists it (service metrics, Prometheus' `up`, RabbitMQ's exporter). The rules are also
checked and unit-tested by `promtool` (installed by scripts/ensure-promtool.sh, which
`make test` runs).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import prometheus_client
import pytest
import yaml

from shared import metrics

ROOT = Path(__file__).resolve().parents[2]
OBS = ROOT / "deploy" / "observability"
RULES = OBS / "prometheus-rules.yaml"
DASHBOARD = OBS / "grafana-dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"
SCRAPE_LABELS = {"job", "instance", "service"}  # added by Prometheus / deploy/compose/prometheus.yml
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset",
                "bool", "inf", "nan"}
EXPECTED_ALERTS = {
    "SafeguardOutboxLag", "SafeguardMessagesParked", "SafeguardDeadlineBreached",
    "SafeguardImmediateSafetyUnacknowledged", "SafeguardServiceDown", "SafeguardBrokerDown", "SafeguardQueueBacklog",
    "SafeguardSubscriptionFailing",
}


def known_metrics() -> dict[str, set[str]]:
    """Sample name → label names, for every metric a query may use."""
    known: dict[str, set[str]] = {}
    for obj in vars(metrics).values():
        if isinstance(obj, prometheus_client.metrics.MetricWrapperBase):
            desc = obj.describe()[0]
            labels = set(obj._labelnames)
            suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}[desc.type]
            for suffix in suffixes:
                known[desc.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    for entry in yaml.safe_load((OBS / "metrics.yaml").read_text())["metrics"]:
        assert entry["name"] not in known, f"{entry['name']} is defined in shared/metrics.py already"
        known[entry["name"]] = set(entry["labels"])
    return known


def parse_expr(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) a PromQL expression uses (enough for these files)."""
    without_strings = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    labels = set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", without_strings))
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", without_strings):
        labels |= {g.strip() for g in group.split(",") if g.strip()}
    bare = re.sub(r"\{[^}]*\}", " ", without_strings)
    bare = re.sub(r"\[[^\]]*\]", " ", bare)
    bare = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", bare)
    names = {m.group(1) for m in re.finditer(r"(?<![\w$.])([a-zA-Z_:][\w:]*)\b(?!\s*\()", bare)}
    return names - PROMQL_WORDS, labels


def check_query(expr: str, known: dict[str, set[str]], where: str, legend: str = "") -> set[str]:
    names, labels = parse_expr(expr)
    assert names, f"{where}: no metric in {expr!r}"
    unknown = names - set(known)
    assert not unknown, f"{where}: {sorted(unknown)} neither in shared/metrics.py nor deploy/observability/metrics.yaml"
    allowed = set().union(*(known[n] for n in names)) | SCRAPE_LABELS
    labels |= set(re.findall(r"\{\{\s*\.?(\w+)\s*\}\}", legend))
    assert labels <= allowed, f"{where}: labels {sorted(labels - allowed)} not on {sorted(names)}"
    return names


def anchors(markdown: str) -> set[str]:
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def test_expression_parser():
    assert parse_expr('sum by (queue, reason) (increase(safeguard_messages_parked_total{x="a b"}[10m])) > 0') == (
        {"safeguard_messages_parked_total"}, {"queue", "reason", "x"})
    assert parse_expr('histogram_quantile(0.5, sum by (le) (rate(safeguard_handler_seconds_bucket[5m])))')[0] == {
        "safeguard_handler_seconds_bucket"}
    assert parse_expr("sum(up) or vector(0)")[0] == {"up"}


def test_rules_are_well_formed_and_use_known_metrics():
    doc = yaml.safe_load(RULES.read_text())
    known = known_metrics()
    runbook_anchors = anchors(OPERATIONS.read_text())
    seen = {}
    for group in doc["groups"]:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            name = rule["alert"]
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, name
            if "for" in rule:
                assert re.fullmatch(r"\d+[smhd]", rule["for"]), name
            assert rule["labels"]["severity"] in {"page", "ticket"}, name
            ann = rule["annotations"]
            assert ann["summary"] and ann["description"], name
            page, _, anchor = ann["runbook_url"].partition("#")
            assert page == "docs/operations.md" and anchor in runbook_anchors, f"{name}: no section #{anchor}"
            check_query(rule["expr"], known, name, ann["summary"] + ann["description"])
            seen[name] = rule
    assert set(seen) == EXPECTED_ALERTS
    assert seen["SafeguardOutboxLag"]["for"] == "5m" and "safeguard_outbox_oldest_age_seconds" in seen[
        "SafeguardOutboxLag"]["expr"] and seen["SafeguardOutboxLag"]["expr"].endswith("> 60")
    assert "increase(safeguard_messages_parked_total[10m])" in seen["SafeguardMessagesParked"]["expr"]
    assert 'safeguard_deadlines_total{outcome="breached"}' in seen["SafeguardDeadlineBreached"]["expr"]
    immediate = seen["SafeguardImmediateSafetyUnacknowledged"]
    assert 'safeguard_alerts_open{kind="immediate_safety"}' in immediate["expr"] and immediate["for"] == "10m"
    failing = seen["SafeguardSubscriptionFailing"]
    assert "safeguard_callbacks_total" in failing["expr"] and failing["for"] == "15m"


def test_service_metrics_catalog():
    entries = yaml.safe_load((OBS / "metrics.yaml").read_text())["metrics"]
    for entry in entries:
        assert entry["type"] in {"counter", "gauge", "histogram"} and entry["status"] in {"exported", "planned"}
        assert entry["description"] and isinstance(entry["labels"], list)
        if entry.get("file"):  # claimed to be exported by a service file: it really is there
            assert f'"{entry["name"]}' in (ROOT / entry["file"]).read_text(), entry["name"]
        if entry["type"] == "counter":
            assert entry["name"].endswith("_total")


def test_dashboard_is_valid_grafana_json_using_known_metrics():
    dash = json.loads(DASHBOARD.read_text())
    known = known_metrics()
    assert dash["title"] and dash["uid"] and isinstance(dash["schemaVersion"], int)
    assert [v["name"] for v in dash["templating"]["list"]] == ["datasource"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    used: set[str] = set()
    for panel in dash["panels"]:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat", "gauge", "table", "bargauge"}
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "5m").replace("$__range", "1h")
            used |= check_query(expr, known, panel["title"], target.get("legendFormat", ""))
    for needed in ("safeguard_messages_published_total", "safeguard_messages_consumed_total",
                   "safeguard_handler_seconds_bucket", "safeguard_outbox_backlog", "safeguard_outbox_oldest_age_seconds",
                   "safeguard_messages_parked_total", "safeguard_notifications_total", "safeguard_alerts_open",
                   "safeguard_deadlines_total"):
        assert needed in used, f"no panel shows {needed}"


def promtool() -> str:
    found = shutil.which("promtool") or shutil.which("promtool", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("promtool not found: run scripts/ensure-promtool.sh (make test does)")
    return found


def test_promtool_checks_and_unit_tests_the_rules():
    tool = promtool()
    check = subprocess.run([tool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in check.stdout
    unit = subprocess.run([tool, "test", "rules", "prometheus-rules.test.yaml"], cwd=OBS,
                          capture_output=True, text=True, timeout=120)
    assert unit.returncode == 0, unit.stdout + unit.stderr
