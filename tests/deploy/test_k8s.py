"""deploy/k8s: schema validation (kubernetes-validate, offline), and what the manifests
must say: probes, security, secrets, disruption budgets, network policies."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
from kubernetes_validate import utils as kv

from safeguard.cli import build_parser
from shared.config import DEFAULT_PORTS, SERVICES, load_file_config, load_settings
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
    assert _validate_all(m.load_yaml_docs(m.K8S / "secret-example.yaml")) == 5  # keys x3, SMTP, OIDC
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
    (port,) = c["ports"]
    assert port["containerPort"] == DEFAULT_PORTS[svc]
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
        (port,) = s["ports"]
        assert port["port"] == DEFAULT_PORTS[svc] and port["targetPort"] == "http"
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
    for dep in deployments.values():
        env = _env(_container(dep))
        # The Service, then each of the cluster's pods (StatefulSet NAME-server, headless NAME-nodes).
        nodes = amqp_nodes(env["SAFEGUARD_AMQP_URL"]["value"].replace("$(AMQP_USER)", "u").replace("$(AMQP_PASSWORD)", "p"))
        assert [node_label(n) for n in nodes] == [f"{name}:5672"] + [
            f"{name}-server-{i}.{name}-nodes:5672" for i in range(rmq["spec"]["replicas"])]
        assert env["AMQP_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == f"{name}-default-user"


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
    pods["other-ns"] = {"ns": "monitoring", "ns_labels": {"kubernetes.io/metadata.name": "monitoring"}, "labels": {"app": "x"}}
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
        assert not c(outside, "rabbitmq", 5672)
        assert not c(outside, "postgres", 5432)


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
