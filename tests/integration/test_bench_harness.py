"""The `make bench` harness on tiny sizes, one round: every benchmark runs for real (the services'
apps, the baselines, RabbitMQ, PostgreSQL, aiosmtpd) and the report it writes has a sensible row
for each. The services run in this process (`inprocess`): `make bench` runs them as
`safeguard serve` children, which costs an interpreter start-up each."""
from __future__ import annotations

import os
import re

import pytest

from tests.perf.harness import BENCHES, Sizes, run

pytestmark = [pytest.mark.broker, pytest.mark.database]

TINY = Sizes(intake_n=16, e2e_n=3, e2e_latency_n=5, e2e_rate=50.0, e2e_low_rate=20.0, pending=500, due=20, lead_s=2.5, backlog_n=4,
             notifier_n=5, workspace_n=50, workspace_requests=3)
NUMBER = r"[\d,.]+(?:e[-+]?\d+)?"


def _row(text: str, label: str) -> list[str]:
    line = next(li for li in text.splitlines() if li.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def _positive(cell: str) -> float:
    assert re.fullmatch(NUMBER, cell), cell
    value = float(cell.replace(",", ""))
    assert value > 0, cell
    return value


async def test_harness_small_run_writes_a_table_with_every_benchmark(tmp_path, vhost_pool):
    out = tmp_path / "performance.md"
    text = await run(BENCHES, TINY, rounds=1, out=out, pool=vhost_pool, inprocess=True)

    assert out.read_text(encoding="utf-8").strip() == text.strip()
    assert "do not edit by hand" in text
    assert re.search(r"Machine: \d+ cores", text)
    assert re.search(r"RabbitMQ \d+\.\d+\.\d+, PostgreSQL \d+", text)
    for title in ("1. Intake accept rate", "2. End to end", "3. Timers", "4. Backlog replay", "5. Notifier capacity",
                  "6. Workspace case list"):
        assert f"## {title}" in text
    # Ours and baseline medians, the ratio, and the one round's value, for each compared metric;
    # the durable floor and our ratio to it (median, then each round's) where there is one.
    floored = ("accepted referrals/s", "referral.received/s drained by escalation")
    for label in ("accepted referrals/s", "referrals/s to MASH email (baseline: 3-hop relay msgs/s)",
                  "alert latency p50 ms at steady rate", "alert latency p99 ms at steady rate",
                  "referrals/s drained to MASH email", "referral.received/s drained by escalation"):
        metric, ours, base, ratio, floor, floor_ratio, _target, rounds = _row(text, label)
        assert abs(_positive(ours) / _positive(base) - _positive(ratio)) <= 0.06 * _positive(ratio) + 0.001
        assert rounds == ours
        if label in floored:
            median_ratio, per_round = re.fullmatch(rf"({NUMBER}) \(({NUMBER})\)", floor_ratio).groups()
            assert abs(_positive(ours) / _positive(floor) - _positive(median_ratio)) <= 0.06 * _positive(median_ratio) + 0.001
            assert per_round == median_ratio  # one round
        else:
            assert (floor, floor_ratio) == ("—", "—")
    for label in ("intake: requests not accepted (non-202)", "e2e: submissions not accepted (non-202)"):
        assert _row(text, label)[1] == "0"
    # CPU per referral: PostgreSQL and RabbitMQ are real processes here (the services run in this one).
    for label in ("postgres", "rabbitmq", "all five"):
        assert _row(text, f"CPU ms per referral at the low rate: {label}")[2] == "—"
        assert _row(text, f"CPU ms per referral at the low rate: {label}")[4] == "—"
        # /proc counts CPU in 10 ms ticks: over this tiny run one server may honestly read 0.
        cell = _row(text, f"CPU ms per referral at the low rate: {label}")[1]
        assert re.fullmatch(NUMBER, cell) and float(cell.replace(",", "")) >= 0, cell
    _positive(_row(text, "CPU ms per referral at the low rate: all five")[1])
    budget = f"≤ {os.cpu_count() * 1000 / TINY.e2e_rate:.0f} to sustain {TINY.e2e_rate:g}/s"  # the cores' share
    assert _row(text, "CPU ms per referral at the low rate: all five")[6] == budget
    # The timers have targets, no baseline.
    ready = _row(text, "restart → ready s")
    assert _positive(ready[1]) < 120 and ready[2] == "—"
    assert 10 < _positive(_row(text, "peak resident memory MiB")[1]) < 2000
    _positive(_row(text, "firing lateness p99 ms")[1])
    # The notifier's capacity and the workspace list: absolute targets, no baseline.
    emails = _row(text, "emails/s")
    assert _positive(emails[1]) > 0 and emails[2] == "—" and emails[6] == "≥ 150"
    assert _row(text, "notifier CPU ms per email")[1] == "0"  # in this process here: no pid of its own to read
    p95 = _row(text, f"/referrals time p95 ms ({TINY.workspace_n:,} referrals)")
    assert _positive(p95[1]) >= _positive(_row(text, f"/referrals time p50 ms ({TINY.workspace_n:,} referrals)")[1])
    assert p95[6] == "< 150 ms" and _row(text, "workspace: pages not 200")[1] == "0"
    # PostgreSQL work and memory per process are reported (intake: ours and the floor).
    # (the server publishes its counters up to a second late: on this tiny run, some of them)
    _positive(_row(text, "PostgreSQL transactions per referral")[1])
    _positive(_row(text, "PostgreSQL transactions per referral")[4])
    assert _positive(_row(text, "resident memory MiB after the round")[2]) > 0
