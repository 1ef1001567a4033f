"""Loading what deploy/ holds, for the deploy tests (no Docker, no cluster needed)."""
from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose"
CODE_DIRS = ("shared", "services", "safeguard")


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


# --- Kubernetes ---------------------------------------------------------------------

def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))


def render_without_kustomize() -> list[dict[str, Any]]:
    """What `kustomize build deploy/k8s` gives for the features the kustomization uses:
    its resources, the namespace, the generated ConfigMap (without the hash suffix)."""
    kz = kustomization()
    docs: list[dict[str, Any]] = []
    for res in kz["resources"]:
        docs += load_yaml_docs(K8S / res)
    for gen in kz.get("configMapGenerator", []):
        data = {Path(f).name: (K8S / f).read_text(encoding="utf-8") for f in gen["files"]}
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data})
    for d in docs:
        if d["kind"] != "Namespace":
            d["metadata"]["namespace"] = kz["namespace"]
    return docs


def render() -> tuple[str, list[dict[str, Any]]]:
    """The built manifests: by `kubectl kustomize` when kubectl is here, else by hand."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        out = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"kubectl kustomize failed:\n{out.stderr}"
        return "kubectl kustomize", [d for d in yaml.safe_load_all(out.stdout) if d]
    return "python loader", render_without_kustomize()


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


# --- NetworkPolicy semantics (the subset deploy/k8s uses) ---------------------------

def _labels_match(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"evaluator supports matchLabels only: {selector}"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _peer_matches(peer: dict[str, Any], other: dict[str, Any], policy_ns: str) -> bool:
    """`other` is {"ns": name, "ns_labels": {...}, "labels": {...}} for a pod, {"ip": ...} outside."""
    if "ipBlock" in peer:
        if "ip" not in other:
            return False  # ipBlock is for addresses outside the cluster
        ip = ipaddress.ip_address(other["ip"])
        net = ipaddress.ip_network(peer["ipBlock"]["cidr"])
        if ip.version != net.version or ip not in net:
            return False
        return not any(ip in ipaddress.ip_network(e) for e in peer["ipBlock"].get("except", []))
    if "ip" in other:
        return False
    ns_ok = (
        _labels_match(peer["namespaceSelector"], other["ns_labels"])
        if "namespaceSelector" in peer else other["ns"] == policy_ns
    )
    pod_ok = _labels_match(peer["podSelector"], other["labels"]) if "podSelector" in peer else True
    return ns_ok and pod_ok


def _port_matches(ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    return any(p.get("protocol", "TCP") == protocol and p.get("port") in (None, port) for p in ports)


def allowed(policies: list[dict[str, Any]], direction: str, pod: dict[str, Any],
            other: dict[str, Any], port: int, protocol: str = "TCP") -> bool:
    """Whether the policies let `pod` take `direction` ("Ingress"/"Egress") traffic
    with `other` on `port`: isolated pods need a rule that allows it."""
    kind = "Ingress" if direction == "Ingress" else "Egress"
    key, peer_key = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
    selecting = [
        p for p in policies
        if p["metadata"].get("namespace") == pod["ns"] and _labels_match(p["spec"]["podSelector"], pod["labels"])
        and kind in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not selecting:
        return True  # not isolated in this direction
    for p in selecting:
        for rule in p["spec"].get(key, []):
            peers = rule.get(peer_key)
            if (not peers or any(_peer_matches(x, other, p["metadata"]["namespace"]) for x in peers)) and \
                    _port_matches(rule.get("ports"), port, protocol):
                return True
    return False


def connects(policies: list[dict[str, Any]], src: dict[str, Any], dst: dict[str, Any],
             port: int, protocol: str = "TCP") -> bool:
    """src -> dst on port: egress at src (if src is a pod here) and ingress at dst (if a pod)."""
    egress_ok = allowed(policies, "Egress", src, dst, port, protocol) if "labels" in src else True
    ingress_ok = allowed(policies, "Ingress", dst, src, port, protocol) if "labels" in dst else True
    return egress_ok and ingress_ok


# --- names the code reads / defines ---------------------------------------------------

_ENV_LITERAL = re.compile(r"\bSAFEGUARD_[A-Z0-9_]*[A-Z0-9]\b")
_ENV_TEMPLATE = re.compile(r"SAFEGUARD_\{[^}]*\}_([A-Z0-9_]+)")
_ENV_SUFFIX_TEMPLATE = re.compile(r"(SAFEGUARD_[A-Z0-9_]+)_\{[^}]*\.upper\(\)\}")  # f"SAFEGUARD_AMQP_URL_{svc.upper()}"


def env_vars_read_by_code() -> set[str]:
    """Every SAFEGUARD_* variable name in the Python sources of shared/, services/ and
    safeguard/, with per-service templates such as f"SAFEGUARD_{service.upper()}_PORT"
    expanded over the three services."""
    from shared.config import SERVICES

    names: set[str] = set()
    for d in CODE_DIRS:
        for path in (ROOT / d).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            names |= set(_ENV_LITERAL.findall(text))
            for suffix in _ENV_TEMPLATE.findall(text):
                names |= {f"SAFEGUARD_{s.upper()}_{suffix}" for s in SERVICES}
            for prefix in _ENV_SUFFIX_TEMPLATE.findall(text):
                names |= {f"{prefix}_{s.upper()}" for s in SERVICES}
    return names


def env_vars_in(text: str) -> set[str]:
    return set(_ENV_LITERAL.findall(text))


# Dotted lower-case names that look like bus names: they begin with an exchange prefix
# or a service/queue prefix. File names and host names are not bus names.
_BUS_NAME = re.compile(
    r"(?<![\w.@/-])(?:safeguard|intake|escalation|notifier|ops|control-room)\.[a-z0-9][a-z0-9.-]*[a-z0-9]"
)
_NOT_BUS = re.compile(r"\.(toml|ya?ml|ed25519|x25519|py|sh|md|json|db|example|svc|local|gov\.uk)$")


def bus_names_in(text: str) -> set[str]:
    return {m for m in _BUS_NAME.findall(text) if not _NOT_BUS.search(m)}


def bus_names_defined(forces: list[str]) -> set[str]:
    from shared.bus import topology as t

    names = set(t.EXCHANGES)
    for spec in t.all_queues(forces):
        names |= {spec.name, spec.parking_queue}
    names |= {t.retry_queue_name(s) for s in t.RETRY_DELAYS_S}
    names.add(t.AUDIT_CHECKPOINTS)
    return names


def deploy_text_files() -> list[Path]:
    skip = {"secrets", "__pycache__"}  # secrets/: written by init-secrets.sh, never committed
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and not skip & set(p.relative_to(DEPLOY).parts)]
    return sorted(files) + [ROOT / "Dockerfile", ROOT / ".dockerignore"]
