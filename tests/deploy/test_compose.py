"""deploy/compose: the compose file, its secrets set-up and Prometheus config."""
from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml

from safeguard.cli import build_parser
from shared.config import DEFAULT_PORTS, SERVICES, load_file_config, load_settings
from tests.deploy import manifests as m

IMAGE_ENTRYPOINT = ["safeguard", "serve"]  # the Dockerfile's (test_dockerfile checks it)


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((m.COMPOSE / "compose.yaml").read_text(encoding="utf-8"))


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} / ${VAR} with an empty environment."""
    def sub(mm):
        return mm.group(2) or ""
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}", sub, value)


def env_of(service: dict) -> dict[str, str]:
    return {k: interpolate(str(v)) for k, v in (service.get("environment") or {}).items()}


@pytest.fixture(scope="module")
def dev_setup(tmp_path_factory):
    """deploy/compose/init-secrets.sh run into a temporary directory."""
    out = tmp_path_factory.mktemp("compose") / "secrets"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["bash", str(m.COMPOSE / "init-secrets.sh"), str(out)],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    return out


def app_services(compose) -> dict[str, dict]:
    return {n: s for n, s in compose["services"].items() if s.get("image", "").startswith("safeguard-relay")}


def test_stack_has_broker_database_services_sink_and_prometheus(compose):
    names = set(compose["services"])
    assert {"rabbitmq", "postgres", "sink", "prometheus", *SERVICES} <= names
    assert set(app_services(compose)) == {*SERVICES, "sink"}, "the sink is `safeguard sink` from the same image"
    assert compose["services"]["rabbitmq"]["image"].startswith(("rabbitmq:3.13-management", "rabbitmq:3.12-management"))
    assert compose["services"]["postgres"]["image"].startswith("postgres:16")


def test_every_command_is_a_real_safeguard_subcommand(compose):
    parser = build_parser()
    for name, svc in app_services(compose).items():
        argv = list(svc.get("entrypoint", IMAGE_ENTRYPOINT)) + list(svc.get("command", []))
        assert argv[0] == "safeguard", name
        try:
            args = parser.parse_args(argv[1:])
        except SystemExit:
            pytest.fail(f"compose service {name} runs `{' '.join(argv)}`, which safeguard does not accept")
        if name in SERVICES:
            assert args.command == "serve" and args.service == name
        else:
            assert args.command == name


@pytest.mark.parametrize("name", SERVICES)
def test_service_hardening_ports_and_dependencies(compose, name):
    svc = compose["services"][name]
    assert svc["read_only"] is True
    assert "/tmp" in svc["tmpfs"]
    assert svc["user"].split(":")[0] == "10001"
    assert svc["cap_drop"] == ["ALL"]
    (port,) = svc["ports"]
    host_ip, host_port, container_port = port.split(":")
    assert int(container_port) == DEFAULT_PORTS[name] and host_ip == "127.0.0.1"
    assert any(v.endswith(":/var/lib/safeguard") for v in svc["volumes"])
    for dep, cond in svc["depends_on"].items():
        assert cond["condition"] == "service_healthy"
        assert "healthcheck" in compose["services"][dep], f"{name} waits for {dep}'s health check"
    assert {"rabbitmq", "postgres"} <= set(svc["depends_on"])


@pytest.mark.parametrize("name", SERVICES)
def test_environment_is_read_by_the_code_and_consistent(compose, dev_setup, name):
    svc = compose["services"][name]
    env = env_of(svc)
    known = m.env_vars_read_by_code()
    for var in env:
        if var.startswith("SAFEGUARD_"):
            assert var in known, f"{var} is set for {name} in compose.yaml but no code reads it"
    settings = load_settings({**env, "SAFEGUARD_CONFIG": str(dev_setup / "safeguard.toml")})
    db, amqp = urlsplit(settings.database_url), urlsplit(settings.amqp_url)
    pg = env_of(compose["services"]["postgres"])
    assert db.scheme == "postgresql+asyncpg" and db.hostname == "postgres" and db.port == 5432
    assert (db.username, db.password, db.path.lstrip("/")) == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"])
    rmq = env_of(compose["services"]["rabbitmq"])
    assert amqp.hostname == "rabbitmq" and amqp.port == 5672
    assert (amqp.username, amqp.password) == (rmq["RABBITMQ_DEFAULT_USER"], rmq["RABBITMQ_DEFAULT_PASS"])
    if name == "notifier":
        assert urlsplit(settings.smtp_url).hostname == "sink"
        assert "notifier" in compose["services"] and "sink" in svc["depends_on"]
    else:
        assert "SAFEGUARD_SMTP_URL" not in env, "only the notifier sends mail"


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_gets_exactly_its_own_keys_as_secrets(compose, dev_setup, name):
    svc = compose["services"][name]
    config_target = PurePosixPath(env_of(svc)["SAFEGUARD_CONFIG"])
    (cfg,) = [c for c in svc["configs"] if c["source"] == "safeguard-toml"]
    assert PurePosixPath(cfg["target"]) == config_target
    assert compose["configs"]["safeguard-toml"]["file"] == "./secrets/safeguard.toml"
    fc = load_file_config(dev_setup / "safeguard.toml")
    wanted = {
        config_target.parent / f
        for f in (fc.services[name].signing_key_file, fc.services[name].sealing_key_file) if f
    }
    mounted = {PurePosixPath(s["target"]): s["source"] for s in svc["secrets"]}
    assert set(mounted) == wanted
    for target, source in mounted.items():
        rel = compose["secrets"][source]["file"]
        assert rel.startswith("./secrets/keys/")
        key_file = dev_setup / rel.removeprefix("./secrets/")
        assert key_file.is_file(), f"init-secrets.sh does not write {rel}"
        assert key_file.name == target.name


def _sink(compose):
    argv = compose["services"]["sink"]["entrypoint"] + compose["services"]["sink"]["command"]
    return build_parser().parse_args(argv[1:])


def test_sink_listens_where_the_notifier_and_the_teams_webhooks_point(compose):
    sink = _sink(compose)
    assert sink.host == "0.0.0.0"
    smtp = urlsplit(env_of(compose["services"]["notifier"])["SAFEGUARD_SMTP_URL"])
    assert (smtp.hostname, smtp.port) == ("sink", sink.smtp_port)
    assert f"127.0.0.1:{sink.http_port}:{sink.http_port}" in compose["services"]["sink"]["ports"]
    assert str(sink.http_port) in " ".join(compose["services"]["sink"]["healthcheck"]["test"])


def test_init_secrets_writes_a_container_ready_setup(compose, dev_setup):
    text = (dev_setup / "safeguard.toml").read_text()
    fc = load_file_config(dev_setup / "safeguard.toml")
    routes = [r for la in fc.local_authorities for r in la.contacts.values()]
    routes += [r for f in fc.forces for r in f.contacts.values()]
    webhooks = [urlsplit(r.teams_webhook) for r in routes if r.teams_webhook]
    assert webhooks, "the dev contacts have Teams webhooks"
    for w in webhooks:
        assert (w.hostname, w.port) == ("sink", _sink(compose).http_port) and w.path.startswith("/teams/")
    assert "127.0.0.1" not in text.split("[services.")[1], "no contact route points inside its own container"
    assert stat.S_IMODE(dev_setup.stat().st_mode) == 0o700
    for key in (dev_setup / "keys").iterdir():
        assert stat.S_IMODE(key.stat().st_mode) == 0o644, key  # readable by uid 10001 in the container


def test_prometheus_scrapes_the_three_metrics_endpoints(compose):
    prom = yaml.safe_load((m.COMPOSE / "prometheus.yml").read_text())
    targets = {}
    for job in prom["scrape_configs"]:
        for sc in job["static_configs"]:
            for t in sc["targets"]:
                targets[t] = job.get("metrics_path", "/metrics")
    for svc in SERVICES:
        assert targets.get(f"{svc}:{DEFAULT_PORTS[svc]}") == "/metrics", svc
    mounted = {c["target"] for c in compose["services"]["prometheus"]["configs"]}
    assert set(prom["rule_files"]) <= mounted
    rules = yaml.safe_load((m.COMPOSE.parent / "observability" / "prometheus-rules.yaml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    assert alerts and all(r["alert"] and r["expr"] for r in alerts)
