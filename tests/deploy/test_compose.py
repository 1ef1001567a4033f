"""deploy/compose: the compose file, its secrets set-up and Prometheus config."""
from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from safeguard.cli import build_parser
from services.notifier.adapters.channels.base import is_loopback_host
from services.notifier.adapters.channels.email import SmtpConfig
from services.notifier.adapters.channels.sms import URL_ENV as NOTIFY_URL_ENV
from services.notifier.adapters.channels.sms import _https_or_loopback
from services.notifier.adapters.channels.teams import valid_webhook
from shared.bus.definitions import password_hash, topology
from shared.bus.permissions import permissions_for
from shared.config import DEFAULT_PORTS, SERVICES, load_file_config, load_settings
from shared.config_env import metrics_listener
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


def env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def test_broker_loads_users_permissions_and_topology_from_the_definitions(compose, dev_setup):
    """The rabbitmq container loads secrets/rabbitmq-definitions.json at boot: the topology
    exactly as the code declares it, least-privilege users, and the administrator."""
    rmq = compose["services"]["rabbitmq"]
    targets = {c["source"]: c["target"] for c in rmq["configs"]}
    assert compose["configs"]["rabbitmq-definitions"]["file"] == "./secrets/rabbitmq-definitions.json"
    conf = (m.COMPOSE / compose["configs"]["rabbitmq-conf"]["file"]).read_text()
    assert f"load_definitions = {targets['rabbitmq-definitions']}" in conf
    assert "RABBITMQ_DEFAULT_PASS" not in env_of(rmq), "no shared default user: the definitions make the users"
    defs = json.loads((dev_setup / "rabbitmq-definitions.json").read_text())
    fc = load_file_config(dev_setup / "safeguard.toml")
    want = topology("/", [f.slug for f in fc.forces], fc.system.parking_ttl_days * 86400)
    assert {k: defs[k] for k in want} == want
    users = {u["name"]: u["tags"] for u in defs["users"]}
    assert users.pop("safeguard-admin") == ["administrator"]
    assert set(users) == {f"safeguard-{s}" for s in SERVICES} | {"safeguard-dev-mash", "safeguard-dev-control-room"}
    assert all(tags == [] for tags in users.values())
    admin = env_file(dev_setup / "amqp-admin.env")["SAFEGUARD_AMQP_URL"]
    assert urlsplit(admin).username == "safeguard-admin" and urlsplit(admin).hostname == "rabbitmq"
    assert stat.S_IMODE((dev_setup / "broker-users.json").stat().st_mode) == 0o600


def app_services(compose) -> dict[str, dict]:
    return {n: s for n, s in compose["services"].items() if s.get("image", "").startswith("safeguard-relay")}


def netns_owner(compose, name: str) -> str:
    """The service whose network namespace `name` runs in (`network_mode: service:X`), else itself."""
    mode = compose["services"][name].get("network_mode", "")
    return mode.removeprefix("service:") if mode.startswith("service:") else name


def published(compose, name: str) -> list[str]:
    """The ports published for `name`: by the service that owns its network namespace."""
    return list(compose["services"][netns_owner(compose, name)].get("ports", []))


def dev_webhooks(dev_setup) -> list[str]:
    fc = load_file_config(dev_setup / "safeguard.toml")
    routes = [r for la in fc.local_authorities for r in la.contacts.values()]
    routes += [r for f in fc.forces for r in f.contacts.values()]
    return [r.teams_webhook for r in routes if r.teams_webhook]


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
    port = DEFAULT_PORTS[name]
    assert f"127.0.0.1:{port}:{port}" in published(compose, name)
    assert all(p.startswith("127.0.0.1:") for p in published(compose, name))
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
    assert svc["env_file"] == f"./secrets/amqp-{name}.env"
    env |= env_file(dev_setup / f"amqp-{name}.env")
    settings = load_settings({**env, "SAFEGUARD_CONFIG": str(dev_setup / "safeguard.toml")})
    db, amqp = urlsplit(settings.database_url), urlsplit(settings.amqp_url_for(name))
    assert settings.own_broker_user(name)
    pg = env_of(compose["services"]["postgres"])
    assert db.scheme == "postgresql+asyncpg" and db.hostname == "postgres" and db.port == 5432
    assert (db.username, db.password, db.path.lstrip("/")) == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"])
    assert amqp.hostname == "rabbitmq" and amqp.port == 5672 and amqp.username == f"safeguard-{name}"
    defs = json.loads((dev_setup / "rabbitmq-definitions.json").read_text())
    (user,) = [u for u in defs["users"] if u["name"] == amqp.username]
    salt = base64.b64decode(user["password_hash"])[:4]
    assert user["password_hash"] == password_hash(unquote(amqp.password), salt), "the broker knows its password"
    (perm,) = [p for p in defs["permissions"] if p["user"] == amqp.username]
    assert perm == {"user": amqp.username, "vhost": "/", **permissions_for(name).as_dict()}
    if name == "notifier":
        smtp = SmtpConfig.from_url(settings.smtp_url)
        assert is_loopback_host(smtp.host) and not smtp.starttls_required, "the sink has no TLS"
        assert netns_owner(compose, name) == "sink" and "sink" in svc["depends_on"]
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


def test_notifier_runs_in_the_sinks_network_namespace(compose):
    """The notifier sends plain SMTP and plain-http Teams posts only to a loopback host,
    and the sink has no TLS: so the notifier joins the sink's network namespace, where
    127.0.0.1 is the sink. The sink owns the namespace (it has no dependencies; a
    restarted notifier joins it again) and publishes the notifier's port too."""
    services = compose["services"]
    notifier, sink = services["notifier"], services["sink"]
    assert notifier["network_mode"] == "service:sink"
    dep = notifier["depends_on"]["sink"]
    assert dep["condition"] == "service_healthy" and dep.get("restart") is True
    assert "network_mode" not in sink and "notifier" not in (sink.get("depends_on") or {})
    http = _sink(compose).http_port
    assert {f"127.0.0.1:{http}:{http}", f"127.0.0.1:{DEFAULT_PORTS['notifier']}:{DEFAULT_PORTS['notifier']}"} \
        <= set(sink["ports"])
    assert "notifier" in sink["networks"]["default"]["aliases"], "`notifier` still names the notifier"
    # what compose refuses (or silently ignores) for a service in another's namespace
    for name, svc in services.items():
        if netns_owner(compose, name) != name:
            owner = netns_owner(compose, name)
            assert netns_owner(compose, owner) == owner, f"{name}: no chains of namespaces"
            for key in ("ports", "expose", "networks", "hostname", "dns", "links", "extra_hosts", "mac_address"):
                assert key not in svc, f"{name} is in {owner}'s network namespace: no `{key}` of its own"
            assert owner in svc["depends_on"], f"{name} depends on {owner}, whose namespace it joins"


def test_sink_listens_where_the_notifier_and_the_teams_webhooks_point(compose, dev_setup):
    sink = _sink(compose)
    assert sink.host == "0.0.0.0", "a published port arrives on the container's address, not 127.0.0.1"
    smtp = urlsplit(env_of(compose["services"]["notifier"])["SAFEGUARD_SMTP_URL"])
    assert (smtp.hostname, smtp.port) == ("127.0.0.1", sink.smtp_port)
    for url in dev_webhooks(dev_setup):
        w = urlsplit(url)
        assert (w.hostname, w.port) == ("127.0.0.1", sink.http_port) and w.path.startswith("/teams/")
    assert f"127.0.0.1:{sink.http_port}:{sink.http_port}" in published(compose, "sink")
    assert str(sink.http_port) in " ".join(compose["services"]["sink"]["healthcheck"]["test"])


def test_every_url_the_notifier_gets_for_the_sink_is_loopback(compose, dev_setup):
    """By the notifier's own rules (is_loopback_host and the channels' checks): plain SMTP
    without STARTTLS and plain http are allowed only to a loopback host, so anything the
    compose notifier is given for the sink must be one, or mail and cards fail."""
    env = env_of(compose["services"]["notifier"])
    smtp = SmtpConfig.from_url(env["SAFEGUARD_SMTP_URL"])
    assert not smtp.implicit_tls and is_loopback_host(smtp.host)
    assert not smtp.starttls_required
    webhooks = dev_webhooks(dev_setup)
    assert webhooks, "the dev contacts have Teams webhooks"
    for url in webhooks:
        assert urlsplit(url).scheme == "http" and is_loopback_host(urlsplit(url).hostname), url
        assert valid_webhook(url), url
    if NOTIFY_URL_ENV in env:  # a stand-in for GOV.UK Notify would be the sink too
        assert _https_or_loopback(env[NOTIFY_URL_ENV])
    # and the rule still bites: the sink's compose name is not loopback
    assert not is_loopback_host("sink")
    assert SmtpConfig.from_url(f"smtp://sink:{smtp.port}").starttls_required
    assert not valid_webhook(f"http://sink:{_sink(compose).http_port}/teams/x")


def test_init_secrets_writes_a_container_ready_setup(compose, dev_setup):
    text = (dev_setup / "safeguard.toml").read_text()
    assert "sink:" not in text, "Teams webhooks point at 127.0.0.1: the notifier shares the sink's namespace"
    assert stat.S_IMODE(dev_setup.stat().st_mode) == 0o700
    for key in (dev_setup / "keys").iterdir():
        assert stat.S_IMODE(key.stat().st_mode) == 0o644, key  # readable by uid 10001 in the container


def test_init_secrets_mends_a_kept_setup_with_sink_webhooks(dev_setup, tmp_path):
    """A set-up written before the notifier joined the sink's namespace points its Teams
    webhooks at http://sink:8026/..., which the notifier refuses; init-secrets.sh keeps the
    set-up (no --force) but points them back at 127.0.0.1."""
    import shutil

    out = tmp_path / "secrets"
    shutil.copytree(dev_setup, out)
    toml = out / "safeguard.toml"
    toml.write_text(toml.read_text().replace("http://127.0.0.1:8026/teams/", "http://sink:8026/teams/"))
    keys_before = {k.name: k.read_bytes() for k in (out / "keys").iterdir()}
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["bash", str(m.COMPOSE / "init-secrets.sh"), str(out)],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert toml.read_text() == (dev_setup / "safeguard.toml").read_text()
    assert {k.name: k.read_bytes() for k in (out / "keys").iterdir()} == keys_before


def test_prometheus_scrapes_the_three_metrics_endpoints(compose, dev_setup):
    prom = yaml.safe_load((m.COMPOSE / "prometheus.yml").read_text())
    targets = {}
    for job in prom["scrape_configs"]:
        for sc in job["static_configs"]:
            for t in sc["targets"]:
                targets[t] = job.get("metrics_path", "/metrics")
    settings = load_settings({"SAFEGUARD_CONFIG": str(dev_setup / "safeguard.toml")})
    for svc in SERVICES:
        # each service's metrics listener (never its public port), reachable over the compose network
        listener = metrics_listener(settings, svc, {})
        assert listener.host == "0.0.0.0" and listener.port != DEFAULT_PORTS[svc], svc
        assert targets.get(f"{svc}:{listener.port}") == "/metrics", svc
        assert f"{svc}:{DEFAULT_PORTS[svc]}" not in targets, f"{svc}'s public port has no /metrics"
        assert not any(str(listener.port) in p for p in published(compose, svc)), "metrics ports are not published"
    # every target host is a name on the compose network: a service with a network of its
    # own, or an alias the owner of a shared namespace answers to for the service in it
    names = {}
    for name, svc in compose["services"].items():
        if netns_owner(compose, name) == name:
            names[name] = name
            for net in (svc.get("networks") or {}).values():
                names.update({a: name for a in (net or {}).get("aliases", [])})
    for t in targets:
        host = t.split(":")[0]
        assert host in names, f"Prometheus scrapes {t}: no such name on the compose network"
        if host in compose["services"]:
            assert names[host] == netns_owner(compose, host), t
    mounted = {c["target"] for c in compose["services"]["prometheus"]["configs"]}
    assert set(prom["rule_files"]) <= mounted
    rules = yaml.safe_load((m.COMPOSE.parent / "observability" / "prometheus-rules.yaml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    assert alerts and all(r["alert"] and r["expr"] for r in alerts)
