"""The `safeguard` command: keys init and deadlines, run as a user would."""
from __future__ import annotations

import json

from tests.support.processes import run_cli


def test_deadlines_prints_the_contract_json():
    proc = run_cli("deadlines", "2026-12-24T15:00:00+00:00")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "received_at": "2026-12-24T15:00:00+00:00",
        "out_of_hours": False,
        "acknowledge_by": "2026-12-29T15:00:00+00:00",
        "decide_by": "2026-12-29T15:00:00+00:00",
        "checks_due_by": "2027-01-21T15:00:00+00:00",
    }


def test_deadlines_saturday_is_out_of_hours_and_due_monday_17():
    out = json.loads(run_cli("deadlines", "2026-11-28T10:00").stdout)
    assert out["out_of_hours"] is True
    assert out["acknowledge_by"] == "2026-11-30T17:00:00+00:00"


def test_deadlines_rejects_a_bad_time_clearly():
    proc = run_cli("deadlines", "yesterday")
    assert proc.returncode == 2
    assert "ISO 8601" in proc.stderr


def test_keys_init_then_config_error_names_file_and_key(tmp_path):
    assert run_cli("keys", "init", "--dir", str(tmp_path), "--no-broker").returncode == 0
    config = tmp_path / "safeguard.toml"
    config.write_text(config.read_text().replace('slug = "dev-force"', 'slug = "Dev Force!"'))
    env = {"SAFEGUARD_CONFIG": str(config), "PATH": "/usr/bin:/bin"}
    proc = run_cli("deadlines", "2026-11-02T14:00", "--la", "E99999999", env=env, inherit=False)
    assert proc.returncode == 2
    assert f"{config}: forces[0].slug" in proc.stderr


def test_version_prints_the_installed_version():
    from importlib.metadata import version
    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"safeguard {version('safeguard-relay')}"


def test_the_report_defaults_to_the_last_year_like_the_page():
    from datetime import date
    from safeguard.report import default_period
    assert default_period(None, None, date(2026, 12, 4)) == (date(2025, 12, 5), date(2026, 12, 4))
    assert default_period(None, date(2026, 6, 30), date(2026, 12, 4)) == (date(2025, 7, 1), date(2026, 6, 30))
    assert default_period(date(2026, 1, 1), None, date(2026, 12, 4)) == (date(2026, 1, 1), date(2026, 12, 4))
