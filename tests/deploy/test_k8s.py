"""deploy/k8s: schema validation (kubernetes-validate, offline), and what the manifests
must say: probes, security, secrets, disruption budgets, network policies, metrics on their
own port (issue 18 #14), the example ingress routing only public paths, and no credential in
a ConfigMap (#16)."""
from __future__ import annotations

import copy
import importlib
import re
from pathlib import Path

import pytest
from kubernetes_validate import utils as kv

from safeguard.cli import build_parser
from safeguard import keys
from shared.config import DEFAULT_METRICS_PORTS, DEFAULT_PORTS, SERVICES, load_file_config, load_settings
from shared.config_env import metrics_listener, with_teams_webhooks
from shared.crypto import CryptoError, verify_key_from_b64
from shared.urls import amqp_nodes, node_label
from tests.deploy import manifests as m

K8S_VERSION = "1.30.0"  # oldest Kubernetes the manifests are checked against
SERVE_CHOICES = next(
    a for a in build_parser()._subparsers._group_actions[0].choices["serve"]._actions if a.dest == "service"
).choices


@pytest.fixture(scope="module")
def built():
    how, docs = m.render()
    return docs


@pytest.fixture(scope="module")
def deployments(built):
    return m.by_kind(built, "Deployment")


@pytest.fixture(scope="module")
def secrets_example():
    return {d["metadata"]["name"]: d for d in m.load_yaml_docs(m.K8S / "secret-example.yaml")}


def _container(dep):
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return c


def _env(container) -> dict:
    return {e["name"]: e for e in container.get("env", [])}


# --- kustomize / schemas ----------------------------------------------------------

def test_kustomization_resources_exist_and_examples_are_not_listed():
    kz = m.kustomization()
    listed = kz["resources"] + [f for g in kz.get("configMapGenerator", []) for f in g["files"]]
    for res in listed:
        assert (m.K8S / res).is_file(), f"kustomization.yaml lists missing {res}"
    assert "secret-example.yaml" not in kz["resources"] and (m.K8S / "secret-example.yaml").is_file()
    assert "ingress-example.yaml" not in kz["resources"]
    assert kz["namespace"] == "safeguard"


def test_build_has_every_object(built):
    kinds = {(d["kind"], d["metadata"]["name"]) for d in built}
    for svc in SERVICES:
        for kind in ("Deployment", "Service", "PodDisruptionBudget"):
            assert (kind, svc) in kinds
    assert ("Namespace", "safeguard") in kinds
    assert any(k == "ConfigMap" and n.startswith("safeguard-config") for k, n in kinds)
    assert sum(k == "RabbitmqCluster" for k, _ in kinds) == 1
    assert sum(k == "Cluster" for k, _ in kinds) == 1
    for d in built:
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "safeguard", d["metadata"]["name"]


def _validate_all(docs):
    checked = 0
    for d in docs:
        if d["apiVersion"] in ("rabbitmq.com/v1beta1", "postgresql.cnpg.io/v1"):
            continue  # custom resources: checked by hand below
        try:
            kv.validate(d, K8S_VERSION, strict=True)
        except kv.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{d['kind']}/{d['metadata']['name']}: {path}: {exc.message}")
        checked += 1
    return checked


def test_every_builtin_object_validates_against_the_kubernetes_schema(built):
    assert _validate_all(built) >= 18


def test_examples_validate_against_the_kubernetes_schema():
    assert _validate_all(m.load_yaml_docs(m.K8S / "secret-example.yaml")) == 6  # keys x3, SMTP, OIDC, Teams
    assert _validate_all(m.load_yaml_docs(m.K8S / "ingress-example.yaml")) == 1


def test_schema_validation_catches_mistakes(deployments):
    bad = copy.deepcopy(deployments["intake"])
    _container(bad)["securityContext"]["readOnlyRootFS"] = True  # misspelt field
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, K8S_VERSION, strict=True)
    bad = copy.deepcopy(deployments["intake"])
    bad["spec"]["replicas"] = "2"
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, K8S_VERSION, strict=True)


# --- Deployments ------------------------------------------------------------------

@pytest.mark.parametrize("svc", SERVICES)
def test_deployment(deployments, svc):
    dep = deployments[svc]
    spec, pod = dep["spec"], dep["spec"]["template"]["spec"]
    c = _container(dep)
    assert spec["replicas"] == 2
    assert spec["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert c["args"] == [svc] and svc in SERVE_CHOICES and "command" not in c  # image: safeguard serve
    port, metrics = c["ports"]
    assert (port["name"], port["containerPort"]) == ("http", DEFAULT_PORTS[svc])
    assert (metrics["name"], metrics["containerPort"]) == ("metrics", DEFAULT_METRICS_PORTS[svc])
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(DEFAULT_METRICS_PORTS[svc]),
                           "prometheus.io/path": "/metrics"}
    probes = {k: c[k]["httpGet"] for k in ("readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == "/healthz"
    for probe in probes.values():
        assert probe["port"] in (port["name"], port["containerPort"])
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind])
    # security
    psc, csc = pod["securityContext"], c["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001
    assert psc["seccompProfile"]["type"] == "RuntimeDefault"
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"]["drop"] == ["ALL"] and "add" not in csc["capabilities"]
    assert pod["automountServiceAccountToken"] is False
    # writable places are volumes, not the image
    mounts = {vm["mountPath"]: vm for vm in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in vols[mounts["/tmp"]["name"]]
    assert "emptyDir" in vols[mounts["/var/lib/safeguard"]["name"]]
    env = _env(c)
    assert env["SAFEGUARD_DATA_DIR"]["value"] == "/var/lib/safeguard"
    assert env["SAFEGUARD_BIND"]["value"] == "0.0.0.0"


@pytest.mark.parametrize("svc", SERVICES)
def test_config_and_keys_are_mounted_not_baked(built, deployments, secrets_example, svc, tmp_path):
    dep = deployments[svc]
    c, pod = _container(dep), dep["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in pod["volumes"]}
    mounts = {vm["name"]: vm for vm in c["volumeMounts"]}
    config_path = Path(_env(c)["SAFEGUARD_CONFIG"]["value"])
    (cfg_vol,) = [v for v in vols.values() if "configMap" in v]
    assert config_path.parent == Path(mounts[cfg_vol["name"]]["mountPath"])
    (cm,) = [d for d in built if d["kind"] == "ConfigMap"]
    assert cfg_vol["configMap"]["name"] == cm["metadata"]["name"]
    assert config_path.name in cm["data"]
    # the ConfigMap is a valid safeguard.toml for the real loader
    toml = tmp_path / "safeguard.toml"
    toml.write_text(cm["data"][config_path.name])
    fc = load_file_config(toml)
    # every key file this service's config names is in its own Secret, mounted read-only
    (key_vol,) = [v for v in vols.values() if "secret" in v]
    key_mount = mounts[key_vol["name"]]
    assert key_mount["readOnly"] is True
    secret_name = key_vol["secret"]["secretName"]
    assert secret_name == f"safeguard-{svc}-keys"
    example = secrets_example[secret_name]["stringData"]
    item_paths = {i["path"]: i["key"] for i in key_vol["secret"]["items"]}
    assert set(item_paths.values()) == set(example), "the Secret's keys are the ones the pod mounts"
    files = [f for f in (fc.services[svc].signing_key_file, fc.services[svc].sealing_key_file) if f]
    assert files, "each service signs what it publishes"
    for f in files:
        p = Path(f)
        assert p.parent == Path(key_mount["mountPath"]), f
        assert p.name in item_paths, f"{f} is not mounted from {secret_name}"


def test_placeholder_keys_are_refused():
    fc = load_file_config(m.K8S / "safeguard.toml")
    for svc in SERVICES:
        assert "CHANGE-ME" in fc.services[svc].verify_key
        with pytest.raises(CryptoError):
            verify_key_from_b64(fc.services[svc].verify_key)


@pytest.mark.parametrize("svc", SERVICES)
def test_env_is_known_ordered_and_loads(built, deployments, secrets_example, svc, tmp_path):
    """Every SAFEGUARD_* the pod sets is read by the code; $(VAR) references name
    variables defined earlier (Kubernetes expands only those); the result passes the
    real settings loader."""
    c = _container(deployments[svc])
    known = m.env_vars_read_by_code()
    seen: dict[str, str] = {}
    for e in c["env"]:
        name = e["name"]
        if name.startswith("SAFEGUARD_"):
            assert name in known, f"{name} is set in deploy/k8s/{svc}.yaml but no code reads it"
        if "value" in e:
            for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", e["value"]):
                assert ref in seen, f"{name} uses $({ref}) before it is defined"
            seen[name] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda mm: seen[mm.group(1)], e["value"])
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            if ref["name"] in secrets_example:  # a Secret the operator of the site creates
                seen[name] = secrets_example[ref["name"]]["stringData"][ref["key"]]
            else:  # created by the RabbitMQ / CloudNativePG operators
                seen[name] = f"generated{ref['key'].capitalize()}"
    (cm,) = [d for d in built if d["kind"] == "ConfigMap"]
    toml = tmp_path / "safeguard.toml"
    toml.write_text(cm["data"]["safeguard.toml"])
    settings = load_settings({**{k: v for k, v in seen.items()}, "SAFEGUARD_CONFIG": str(toml)})
    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert settings.amqp_url.startswith("amqp://")
    assert ("SAFEGUARD_SMTP_URL" in seen) == (svc == "notifier"), "only the notifier sends mail"
    if svc in ("intake", "escalation"):  # people sign in (DESIGN §3.7): no shared access codes any more
        assert not {"SAFEGUARD_CONSOLE_TOKENS", "SAFEGUARD_OPS_TOKEN", "SAFEGUARD_REPORT_CODE"} & set(seen)
        (idp,) = settings.file.identity_providers
        assert seen[idp.client_secret_env] == "THE-APP-REGISTRATION-CLIENT-SECRET"  # from the Secret
        assert settings.file.system.trusted_proxies


def test_notifier_needs_no_loopback_exception(built, deployments, secrets_example, tmp_path):
    """No dev sink in the cluster: the notifier pod is one container (a sink would have to be a
    sidecar, reached at 127.0.0.1), and its SMTP relay and Teams webhooks are ones the notifier
    accepts for a host that is not loopback: smtps:// (or smtp:// with STARTTLS), https."""
    from services.notifier.adapters.channels.base import is_loopback_host
    from services.notifier.adapters.channels.email import SmtpConfig
    from services.notifier.adapters.channels.teams import valid_webhook

    pod = deployments["notifier"]["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["notifier"] and not pod.get("initContainers")
    ref = _env(_container(deployments["notifier"]))["SAFEGUARD_SMTP_URL"]["valueFrom"]["secretKeyRef"]
    smtp = SmtpConfig.from_url(secrets_example[ref["name"]]["stringData"][ref["key"]])
    assert not is_loopback_host(smtp.host) and (smtp.implicit_tls or smtp.starttls_required)
    (cm,) = [d for d in built if d["kind"] == "ConfigMap"]
    toml = tmp_path / "safeguard.toml"
    toml.write_text(cm["data"]["safeguard.toml"])
    fc = load_file_config(toml)
    routes = [r for org in (*fc.local_authorities, *fc.forces) for r in org.contacts.values()]
    for url in (r.teams_webhook for r in routes if r.teams_webhook):
        assert url.startswith("https://") and valid_webhook(url), url


def test_services_and_pdbs_match_deployments(built, deployments):
    services, pdbs = m.by_kind(built, "Service"), m.by_kind(built, "PodDisruptionBudget")
    for svc, dep in deployments.items():
        labels = dep["spec"]["template"]["metadata"]["labels"]
        s = services[svc]["spec"]
        assert s["selector"].items() <= labels.items()
        port, metrics = s["ports"]
        assert port["port"] == DEFAULT_PORTS[svc] and port["targetPort"] == "http"
        assert metrics["port"] == DEFAULT_METRICS_PORTS[svc] and metrics["targetPort"] == "metrics"
        pdb = pdbs[svc]["spec"]
        assert pdb["minAvailable"] == 1
        assert pdb["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert set(pdbs) == set(deployments) == set(SERVICES)


# --- operators' custom resources ------------------------------------------------------

def _one(built, kind):
    (doc,) = [d for d in built if d["kind"] == kind]
    return doc


def test_rabbitmq_cluster(built, deployments):
    rmq = _one(built, "RabbitmqCluster")
    assert rmq["apiVersion"] == "rabbitmq.com/v1beta1"
    assert rmq["spec"]["replicas"] == 3, "quorum queues need three nodes to survive losing one"
    assert rmq["spec"]["persistence"]["storage"]
    assert rmq["spec"]["resources"]["requests"]["memory"] == rmq["spec"]["resources"]["limits"]["memory"]
    name = rmq["metadata"]["name"]
    for svc, dep in deployments.items():
        env = _env(_container(dep))
        assert "SAFEGUARD_AMQP_URL" not in env, "each service connects as its own user only"
        # The Service, then each of the cluster's pods (StatefulSet NAME-server, headless NAME-nodes).
        value = env[f"SAFEGUARD_AMQP_URL_{svc.upper()}"]["value"]
        nodes = amqp_nodes(value.replace("$(AMQP_USER)", "u").replace("$(AMQP_PASSWORD)", "p"))
        assert [node_label(n) for n in nodes] == [f"{name}:5672"] + [
            f"{name}-server-{i}.{name}-nodes:5672" for i in range(rmq["spec"]["replicas"])]
        for var in ("AMQP_USER", "AMQP_PASSWORD"):  # the Secret the topology operator makes for its User
            assert env[var]["valueFrom"]["secretKeyRef"]["name"] == f"safeguard-{svc}-user-credentials"
    (job,) = [d for d in built if d["kind"] == "Job"]
    spec = job["spec"]["template"]["spec"]
    assert spec["containers"][0]["command"] == ["safeguard", "bus", "declare"]
    assert _env(spec["containers"][0])["AMQP_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == f"{name}-default-user"


def test_broker_users_and_permissions_come_from_shared_bus(built, deployments):
    """One operator User and Permission per service (and per client system on the AMQP path),
    with exactly the expressions shared/bus/permissions.py derives from the topology."""
    from shared.bus.permissions import client_permissions, permissions_for
    from shared.config import load_file_config

    rmq = _one(built, "RabbitmqCluster")["metadata"]["name"]
    users = {d["metadata"]["name"] for d in built if d["kind"] == "User"}
    perms = {d["metadata"]["name"]: d["spec"] for d in built if d["kind"] == "Permission"}
    fc = load_file_config(m.K8S / "safeguard.toml")
    want = {f"safeguard-{svc}": permissions_for(svc) for svc in deployments}
    want |= {f"safeguard-{c.id}": p for c in fc.clients if (p := client_permissions(c.role, c.organisation))}
    assert users == set(want) == set(perms)
    for name, spec in perms.items():
        assert spec["userReference"]["name"] == name and spec["vhost"] == "/"
        assert spec["rabbitmqClusterReference"]["name"] == rmq
        assert spec["permissions"] == want[name].as_dict(), name


def test_postgres_cluster(built, deployments):
    pg = _one(built, "Cluster")
    assert pg["apiVersion"] == "postgresql.cnpg.io/v1"
    assert pg["spec"]["instances"] == 3
    assert pg["spec"]["storage"]["size"]
    assert pg["spec"]["imageName"].endswith(":16")
    initdb = pg["spec"]["bootstrap"]["initdb"]
    name = pg["metadata"]["name"]
    for dep in deployments.values():
        env = _env(_container(dep))
        url = env["SAFEGUARD_DATABASE_URL"]["value"]
        assert url.endswith(f"@{name}-rw:5432/{initdb['database']}")
        assert env["DB_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == f"{name}-app"


# --- network policies ----------------------------------------------------------------

@pytest.fixture(scope="module")
def net(built):
    policies = [d for d in built if d["kind"] == "NetworkPolicy"]
    ns = {"kubernetes.io/metadata.name": "safeguard"}
    pods = {
        svc: {"ns": "safeguard", "ns_labels": ns, "labels": dep["spec"]["template"]["metadata"]["labels"]}
        for svc, dep in m.by_kind(built, "Deployment").items()
    }
    rmq, pg = _one(built, "RabbitmqCluster")["metadata"]["name"], _one(built, "Cluster")["metadata"]["name"]
    # the labels the operators put on their pods
    pods["rabbitmq"] = {"ns": "safeguard", "ns_labels": ns, "labels": {
        "app.kubernetes.io/name": rmq, "app.kubernetes.io/component": "rabbitmq", "app.kubernetes.io/part-of": "rabbitmq"}}
    pods["postgres"] = {"ns": "safeguard", "ns_labels": ns, "labels": {"cnpg.io/cluster": pg, "cnpg.io/instanceRole": "primary"}}
    pods["other-ns"] = {"ns": "tenant-a", "ns_labels": {"kubernetes.io/metadata.name": "tenant-a"}, "labels": {"app": "x"}}
    pods["prometheus"] = {"ns": "monitoring", "ns_labels": {"kubernetes.io/metadata.name": "monitoring"},
                          "labels": {"app.kubernetes.io/name": "prometheus"}}
    pods["kube-dns"] = {"ns": "kube-system", "ns_labels": {"kubernetes.io/metadata.name": "kube-system"},
                        "labels": {"k8s-app": "kube-dns"}}
    pods["cnpg-operator"] = {"ns": "cnpg-system", "ns_labels": {"kubernetes.io/metadata.name": "cnpg-system"},
                             "labels": {"app.kubernetes.io/name": "cloudnative-pg"}}
    pods["internet"] = {"ip": "203.0.113.7"}
    pods["internet6"] = {"ip": "2001:db8::7"}
    return policies, pods


def test_default_deny_covers_every_pod(net):
    policies, _ = net
    deny = [p for p in policies if p["spec"]["podSelector"] == {}
            and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress") and not p["spec"].get("egress")]
    assert deny, "a default-deny policy for ingress and egress"


def test_only_intake_and_escalation_are_reachable_from_outside(net):
    policies, pods = net
    c = lambda s, d, port, proto="TCP": m.connects(policies, pods[s], pods[d], port, proto)  # noqa: E731
    for outside in ("internet", "other-ns"):
        assert c(outside, "intake", DEFAULT_PORTS["intake"])
        assert c(outside, "escalation", DEFAULT_PORTS["escalation"])
        assert not c(outside, "notifier", DEFAULT_PORTS["notifier"])
        assert not c(outside, "intake", 9090)
        for svc in SERVICES:
            assert not c(outside, svc, DEFAULT_METRICS_PORTS[svc]), f"{svc}'s metrics from {outside}"
        assert not c(outside, "rabbitmq", 5672)
        assert not c(outside, "postgres", 5432)


def test_only_the_monitoring_namespace_reaches_the_metrics_ports(net):
    policies, pods = net
    for svc in SERVICES:
        assert m.connects(policies, pods["prometheus"], pods[svc], DEFAULT_METRICS_PORTS[svc]), svc
        for other in ("internet", "other-ns", *SERVICES):
            assert not m.connects(policies, pods[other], pods[svc], DEFAULT_METRICS_PORTS[svc]), (other, svc)
    assert not m.connects(policies, pods["prometheus"], pods["rabbitmq"], 5672)


def test_every_service_reaches_broker_database_and_dns_only(net):
    policies, pods = net
    c = lambda s, d, port, proto="TCP": m.connects(policies, pods[s], pods[d], port, proto)  # noqa: E731
    for svc in SERVICES:
        assert c(svc, "rabbitmq", 5672)
        assert c(svc, "postgres", 5432)
        assert c(svc, "kube-dns", 53, "UDP") and c(svc, "kube-dns", 53, "TCP")
        assert not c(svc, "rabbitmq", 15672), "no management API for the services"
        for other in SERVICES:
            if other != svc:
                assert not c(svc, other, DEFAULT_PORTS[other]), "services talk only over the bus"
    for svc in ("intake", "escalation"):
        assert c(svc, "internet", 443), "HTTPS to the identity provider people sign in at"
        for port in (25, 465, 587, 80):
            assert not c(svc, "internet", port)


def test_notifier_egress_is_smtp_https_and_broker(net):
    policies, pods = net
    c = lambda s, d, port: m.connects(policies, pods[s], pods[d], port)  # noqa: E731
    for port in (25, 465, 587, 443):
        assert c("notifier", "internet", port) and c("notifier", "internet6", port)
    for port in (80, 22, 5432, 8080):
        assert not c("notifier", "internet", port)


def test_data_tier_keeps_working_under_default_deny(net):
    policies, pods = net
    c = lambda s, d, port: m.connects(policies, pods[s], pods[d], port)  # noqa: E731
    assert c("rabbitmq", "rabbitmq", 25672) and c("rabbitmq", "rabbitmq", 4369)
    assert c("postgres", "postgres", 5432)
    assert c("cnpg-operator", "postgres", 8000)
    assert not c("other-ns", "postgres", 8000)


# --- metrics, the example ingress, credentials (issue 18 #14, #16) --------------------------

def _configmap_toml(built, tmp_path) -> Path:
    (cm,) = [d for d in built if d["kind"] == "ConfigMap"]
    toml = tmp_path / "safeguard.toml"
    toml.write_text(cm["data"]["safeguard.toml"])
    return toml


@pytest.mark.parametrize("svc", SERVICES)
def test_metrics_listen_on_the_pods_metrics_port_not_the_public_one(built, deployments, svc, tmp_path):
    settings = load_settings({"SAFEGUARD_CONFIG": str(_configmap_toml(built, tmp_path))})
    listener = metrics_listener(settings, svc, {})  # the pods set no SAFEGUARD_<SERVICE>_METRICS_PORT
    ports = {p["name"]: p["containerPort"] for p in _container(deployments[svc])["ports"]}
    assert listener.port == ports["metrics"] != ports["http"]
    assert listener.host == "0.0.0.0", "Prometheus scrapes the pod's address"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert _container(deployments[svc])[probe]["httpGet"]["port"] == "http"


def _public_routes() -> dict[str, set[str]]:
    """Every path intake and escalation serve (their real routers), less the probes' own."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        config = keys.init(Path(d))
        settings = load_settings({"SAFEGUARD_CONFIG": str(config), "SAFEGUARD_DATA_DIR": d})
        out = {}
        for svc in ("intake", "escalation"):
            app = importlib.import_module(f"services.{svc}.bootstrap").create_app(settings)
            info = [r.get_info() for r in app.router.resources()]
            out[svc] = {i.get("path") or i.get("formatter") or i.get("prefix") for i in info} - {"/healthz", "/readyz"}
    return out


def _routed(rule_paths: list[dict], path: str) -> bool:
    for p in rule_paths:
        if p["pathType"] == "Exact" and path == p["path"]:
            return True
        if p["pathType"] == "Prefix" and (path == p["path"] or path.startswith(p["path"].rstrip("/") + "/")):
            return True
    return False


def test_the_example_ingress_routes_only_the_public_paths(reliability):
    (ingress,) = m.load_yaml_docs(m.K8S / "ingress-example.yaml")
    routes = _public_routes()
    hosts = {}
    for rule in ingress["spec"]["rules"]:
        paths = rule["http"]["paths"]
        (svc,) = {p["backend"]["service"]["name"] for p in paths}
        assert {p["backend"]["service"]["port"]["name"] for p in paths} == {"http"}, "never the metrics port"
        hosts[svc] = rule["host"]
        for p in paths:
            assert not (p["path"] in ("/", "") and p["pathType"] != "Exact"), f"{svc}: `/` as a prefix routes everything"
            for private in ("/metrics", "/healthz", "/readyz"):
                assert not _routed([p], private), f"{svc}: {p['path']} routes {private}"
            # each rule serves a path the service has (with {placeholders} standing for a segment)
            assert any(_routed([p], re.sub(r"\{[^}]*\}", "x", r)) for r in routes[svc]), f"{svc}: {p['path']}"
        unrouted = sorted(r for r in routes[svc] if not _routed(paths, re.sub(r"\{[^}]*\}", "x", r)))
        assert not unrouted, f"{svc} serves these but the ingress does not route them: {unrouted}"
    fc = load_file_config(m.K8S / "safeguard.toml")
    assert f"https://{hosts['intake']}" == fc.system.public_base_url
    assert f"https://{hosts['escalation']}" == fc.system.console_base_url
    reliability.row("attacks", finding="#14", attack="the example ingress: what it routes to the services",
                    before="`/` as a prefix to intake: every path, /metrics included",
                    after=f"{sum(len(r['http']['paths']) for r in ingress['spec']['rules'])} public paths on two "
                          "hosts, checked against the routers; no `/` prefix, /metrics, /healthz or /readyz")


_CREDENTIAL = re.compile(r"webhook\.office\.com|logic\.azure\.com|whsec_|://[^/\s:@\"]+:[^/\s@\"]+@"
                         r"|^\s*(?:teams_webhook|client_secret|token|password|secret)\s*=|[{,]\s*teams_webhook\s*=",
                         re.IGNORECASE | re.MULTILINE)


def test_no_configmap_holds_a_webhook_url_or_a_token(built, tmp_path, reliability):
    configmaps = [d for d in built if d["kind"] == "ConfigMap"]
    assert configmaps
    for cm in configmaps:
        for name, text in cm.get("data", {}).items():
            found = [x.group(0) for x in _CREDENTIAL.finditer(text)]
            assert not found, f"ConfigMap {cm['metadata']['name']} {name}: {found}"
    assert _CREDENTIAL.search('x = { teams_webhook = "https://a.webhook.office.com/webhookb2/1" }')
    assert _CREDENTIAL.search("amqp://user:pass@host/") and not _CREDENTIAL.search('teams_webhook_env = "T"')
    fc = load_file_config(_configmap_toml(built, tmp_path))
    routes = [r for org in (*fc.local_authorities, *fc.forces) for r in org.contacts.values()]
    assert [r.teams_webhook for r in routes if r.teams_webhook] == []
    assert [r.teams_webhook_env for r in routes if r.teams_webhook_env], "the example shows a Teams route"
    assert not [i for i in fc.identity_providers if i.client_secret]
    reliability.row("attacks", finding="#16", attack="read the Teams webhook URLs (bearer credentials) from the "
                    "Kubernetes ConfigMap `safeguard-config`",
                    before="routes' teams_webhook URLs sat in safeguard.toml, a ConfigMap any reader of the "
                           "namespace's ConfigMaps can see",
                    after="teams_webhook_env: the URLs in the Secret safeguard-teams, given to the notifier pod "
                          "only; no ConfigMap holds a webhook URL, token or password (checked)")


def test_the_notifier_gets_every_teams_webhook_from_a_secret(built, deployments, secrets_example, tmp_path):
    from services.notifier.adapters.channels.teams import valid_webhook

    settings = load_settings({"SAFEGUARD_CONFIG": str(_configmap_toml(built, tmp_path))})
    named = {r.teams_webhook_env for org in (*settings.file.local_authorities, *settings.file.forces)
             for r in org.contacts.values() if r.teams_webhook_env}
    env = {}
    for svc in SERVICES:
        pod_env = _env(_container(deployments[svc]))
        assert (svc == "notifier") == (named <= set(pod_env)), "only the notifier holds the webhook URLs"
    for name in named:
        ref = _env(_container(deployments["notifier"]))[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "safeguard-teams"
        env[name] = secrets_example[ref["name"]]["stringData"][ref["key"]]
    resolved = with_teams_webhooks(settings, env)
    urls = [r.teams_webhook for org in (*resolved.file.local_authorities, *resolved.file.forces)
            for r in org.contacts.values() if r.teams_webhook]
    assert len(urls) == len(named) and all(u.startswith("https://") and valid_webhook(u) for u in urls)
