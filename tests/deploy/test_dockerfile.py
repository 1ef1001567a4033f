"""The Dockerfile and the container health check (no Docker engine needed)."""
from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
import threading
import tomllib
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from safeguard.cli import build_parser
from shared.config import DEFAULT_METRICS_PORTS, DEFAULT_PORTS, SERVICES, service_port
from tests.deploy.manifests import DEPLOY, ROOT
from tests.support.processes import free_port, port_env

DOCKERFILE = ROOT / "Dockerfile"
HEALTHCHECK = DEPLOY / "docker" / "healthcheck.py"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def final_stage() -> list[tuple[str, str]]:
    ins = instructions()
    last_from = max(i for i, (w, _) in enumerate(ins) if w == "FROM")
    return ins[last_from:]


def _arg_defaults() -> dict[str, str]:
    return dict(a.split("=", 1) for w, a in instructions() if w == "ARG" and "=" in a)


def _env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for w, a in stage:
        if w == "ENV":
            for pair in a.split():
                k, _, v = pair.partition("=")
                env[k] = v
    return env


def test_multi_stage_build_on_slim_python_311():
    froms = [a for w, a in instructions() if w == "FROM"]
    assert len(froms) >= 2, "a build stage and a runtime stage"
    args = _arg_defaults()
    images = [a.split()[0] for a in froms]
    resolved = [args.get(i[2:-1], i) if i.startswith("${") else i for i in images]
    assert all(r.startswith("python:3.11-slim") for r in resolved), resolved
    assert any("pip wheel" in a for w, a in instructions() if w == "RUN"), "the build stage builds wheels"
    runtime_run = " ".join(a for w, a in final_stage() if w == "RUN")
    assert "--no-index" in runtime_run, "the runtime installs only the wheels built in the image"


def test_runs_as_uid_10001_not_root():
    users = [a for w, a in final_stage() if w == "USER"]
    assert users, "the runtime stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid == "10001"
    run = " ".join(a for w, a in final_stage() if w == "RUN")
    assert "--uid 10001" in run and "--gid 10001" in run


def test_entrypoint_is_safeguard_serve_and_cmd_a_service():
    (entry,) = [json.loads(a) for w, a in final_stage() if w == "ENTRYPOINT"]
    (cmd,) = [json.loads(a) for w, a in final_stage() if w == "CMD"]
    assert entry == ["safeguard", "serve"]
    assert cmd[0] in SERVICES
    # `safeguard` is the console script the project installs, and `serve` parses this CMD
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["safeguard"] == "safeguard.cli:main"
    args = build_parser().parse_args([*entry[1:], *cmd])
    assert args.command == "serve" and args.service == cmd[0]


def test_environment_and_ports():
    env = _env(final_stage())
    assert env["SAFEGUARD_BIND"] == "0.0.0.0"
    assert env["SAFEGUARD_DATA_DIR"] == "/var/lib/safeguard"
    exposed = {int(p) for w, a in final_stage() if w == "EXPOSE" for p in a.split()}
    assert exposed == set(DEFAULT_PORTS.values())
    assert not exposed & set(DEFAULT_METRICS_PORTS.values()), "`docker run -P` must not publish /metrics"
    # the only directory the image prepares for writing is the data dir, owned by 10001
    run = " ".join(a for w, a in final_stage() if w == "RUN")
    assert "install -d -o 10001 -g 10001 -m 0750 /var/lib/safeguard" in run


def test_healthcheck_runs_the_copied_script_with_python():
    stage = final_stage()
    (hc,) = [a for w, a in stage if w == "HEALTHCHECK"]
    cmd = json.loads(hc.split(" CMD ", 1)[1])
    assert cmd[0] == "python" and "curl" not in hc
    copies = [a.split() for w, a in stage if w == "COPY"]
    dest = {c[-1]: c[-2] for c in copies}
    assert cmd[1] in dest, "the health check script is copied into the image"
    assert (ROOT / dest[cmd[1]]).resolve() == HEALTHCHECK


def test_copied_sources_are_the_packaged_ones_and_dockerignore_keeps_them():
    build_copies = [a.split() for w, a in instructions() if w == "COPY" and "--from" not in a]
    sources = {src.rstrip("/") for c in build_copies for src in c[:-1] if not src.startswith("--")}
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    for pattern in packages["include"]:
        assert pattern.rstrip("*") in sources, f"package {pattern} is not copied into the build stage"
    for src in sources:
        assert (ROOT / src).exists(), src
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "**", ".dockerignore starts by excluding everything"

    def excluded(path: str) -> bool:  # Docker's rule: last matching pattern wins; parents match too
        result = False
        parts = path.split("/")
        for pat in lines:
            neg = pat.startswith("!")
            pat = pat.lstrip("!").rstrip("/")
            prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
            if any(fnmatch.fnmatchcase(p, pat) or fnmatch.fnmatchcase(p, pat.removeprefix("**/")) for p in prefixes):
                result = not neg
        return result

    for src in sources:
        assert not excluded(f"{src}/x.py" if (ROOT / src).is_dir() else src), src
    for secret in ("var/safeguard.toml", "var/keys/dev-mash.ed25519", ".venv/bin/python",
                   "shared/keys/x.x25519", "deploy/compose/secrets/keys/notifier.x25519", "var/intake.db"):
        assert excluded(secret), f"{secret} would be sent to the Docker build"


# --- the health check script ----------------------------------------------------------

def _load_healthcheck():
    """The script as a module, without writing bytecode next to it in deploy/."""
    module = types.ModuleType("sg_healthcheck")
    module.__file__ = str(HEALTHCHECK)
    sys.modules["sg_healthcheck"] = module  # dataclass-free, but keep typing's lookups happy
    exec(compile(HEALTHCHECK.read_text(encoding="utf-8"), str(HEALTHCHECK), "exec"), module.__dict__)
    return module


def test_healthcheck_ports_follow_the_shared_rule():
    hc = _load_healthcheck()
    assert hc.DEFAULT_PORTS == DEFAULT_PORTS
    for svc in SERVICES:
        for env in ({}, {f"SAFEGUARD_{svc.upper()}_PORT": "18123"}):
            argv = ["/usr/local/bin/python", "/usr/local/bin/safeguard", "serve", svc]
            assert hc.target(argv, env) == (svc, service_port(svc, env))
    assert hc.target(["safeguard", "serve", "notifier", "--port", "9999"], {}) == ("notifier", 9999)
    assert hc.target(["safeguard", "serve", "--port=9998", "intake"], {}) == ("intake", 9998)
    with pytest.raises(ValueError):
        hc.target(["safeguard", "up"], {})
    with pytest.raises(ValueError):
        hc.target(["safeguard", "serve"], {})


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def _run_healthcheck(status: int | None) -> subprocess.CompletedProcess:
    """Run the script as the image does, against a local server answering `status`."""
    server = None
    if status is None:
        port = free_port()  # nothing listening
    else:
        handler = type("H", (_Health,), {"status": status})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        return subprocess.run(
            [sys.executable, str(HEALTHCHECK), "safeguard", "serve", "escalation"],
            env={**port_env("escalation", port), "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, timeout=15,
        )
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def test_healthcheck_passes_on_200():
    out = _run_healthcheck(200)
    assert out.returncode == 0, out.stderr
    assert "escalation" in out.stdout


@pytest.mark.parametrize("status", [503, None], ids=["unhealthy", "not-listening"])
def test_healthcheck_fails_otherwise(status):
    out = _run_healthcheck(status)
    assert out.returncode == 1
    assert out.stderr.startswith("healthcheck:")
