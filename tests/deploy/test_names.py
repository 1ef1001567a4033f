"""deploy/ uses exactly the names the code defines: SAFEGUARD_* variables and bus names."""
from __future__ import annotations

from shared.config import load_file_config
from tests.deploy import manifests as m


def test_every_safeguard_variable_in_deploy_is_read_by_the_code():
    known = m.env_vars_read_by_code()
    assert {"SAFEGUARD_AMQP_URL", "SAFEGUARD_DATABASE_URL", "SAFEGUARD_CONFIG", "SAFEGUARD_INTAKE_PORT"} <= known
    used: dict[str, set[str]] = {}
    for path in m.deploy_text_files():
        for var in m.env_vars_in(path.read_text(encoding="utf-8")):
            used.setdefault(var, set()).add(str(path.relative_to(m.ROOT)))
    assert len(used) >= 5
    unknown = {v: sorted(f) for v, f in used.items() if v not in known}
    assert not unknown, f"variables no code reads: {unknown}"


def _forces() -> list[str]:
    return [f.slug for f in load_file_config(m.K8S / "safeguard.toml").forces] + ["dev-force"]


def test_every_bus_name_in_deploy_is_defined_in_shared_topology():
    defined = m.bus_names_defined(_forces())
    used: dict[str, set[str]] = {}
    for path in m.deploy_text_files():
        for name in m.bus_names_in(path.read_text(encoding="utf-8")):
            used.setdefault(name, set()).add(str(path.relative_to(m.ROOT)))
    assert {"notifier.requests", "intake.submissions"} <= set(used), "the alert rules name these queues"
    unknown = {n: sorted(f) for n, f in used.items() if n not in defined}
    assert not unknown, f"bus names not in shared/bus/topology.py: {unknown}"


def test_name_scanner_finds_wrong_names_and_ignores_files_and_hosts():
    text = (
        'queue="safeguard.event" x notifier.requests.parked intake.yaml safeguard.toml '
        "service-intake.ed25519 mash@intake.example control-room.dev-force notifier.retry.7s"
    )
    found = m.bus_names_in(text)
    assert found == {"safeguard.event", "notifier.requests.parked", "control-room.dev-force", "notifier.retry.7s"}
    defined = m.bus_names_defined(["dev-force"])
    assert found - defined == {"safeguard.event", "notifier.retry.7s"}


def test_env_scanner_expands_per_service_templates():
    known = m.env_vars_read_by_code()
    assert {"SAFEGUARD_INTAKE_PORT", "SAFEGUARD_ESCALATION_PORT", "SAFEGUARD_NOTIFIER_PORT"} <= known
    assert "SAFEGUARD_IMAGE" not in known
    assert m.env_vars_in("x SAFEGUARD_FOO=1 $SAFEGUARD_BAR_URL") == {"SAFEGUARD_FOO", "SAFEGUARD_BAR_URL"}
