"""Locked dependencies (DESIGN §5): hashed lock files that the Makefile and the Dockerfile
install from, that agree with pyproject.toml, and a pip-audit of them that fails on any
known vulnerability and skips — saying why — only when no advisory source answers."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.locks import LOCK_FILES, LOCKS, applicable, pins
from tests.deploy.manifests import ROOT
from tests.deploy.test_dockerfile import final_stage, instructions

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
# Which lock holds which of pyproject.toml's requirement lists.
LOCK_CONTENT = {
    "image.txt": ("dependencies",),
    "run.txt": ("dependencies", "dev"),
    "test.txt": ("dependencies", "dev", "test"),
    "build.txt": ("build-system",),
}
NETWORK_ERROR = re.compile(r"ConnectionError|Max retries exceeded|Failed to resolve|Name or service not known|"
                           r"timed out|Temporary failure in name resolution|Network is unreachable|"
                           r"Connection refused|SSLError|ServiceError")


def _requirements(section: str) -> list[Requirement]:
    if section == "dependencies":
        lines = PYPROJECT["project"]["dependencies"]
    elif section == "build-system":
        lines = PYPROJECT["build-system"]["requires"]
    else:
        lines = PYPROJECT["project"]["optional-dependencies"][section]
    return [Requirement(line) for line in lines]


@pytest.mark.parametrize("filename", LOCK_FILES)
def test_every_line_is_pinned_with_hashes(filename):
    found = pins(filename)
    assert found, f"requirements/{filename} is empty"
    unhashed = [p.name for p in found if p.hashes == 0]
    assert not unhashed, f"requirements/{filename}: no --hash for {unhashed}"


@pytest.mark.parametrize("filename", sorted(LOCK_CONTENT))
def test_lock_satisfies_pyproject(filename):
    locked = applicable(filename)
    wrong = []
    for section in LOCK_CONTENT[filename]:
        for req in _requirements(section):
            if req.marker and not req.marker.evaluate():
                continue
            version = locked.get(canonicalize_name(req.name))
            if version is None or not req.specifier.contains(version, prereleases=True):
                wrong.append(f"{req} (locked: {version})")
    assert not wrong, f"requirements/{filename} is stale, run `make lock`: {wrong}"


def test_locks_pin_one_version_of_each_package():
    versions: dict[str, set[str]] = {}
    for filename in LOCK_FILES:
        for name, version in applicable(filename).items():
            versions.setdefault(name, set()).add(version)
    differ = {n: sorted(v) for n, v in versions.items() if len(v) > 1}
    assert not differ, f"the lock files disagree (run `make lock`): {differ}"


def test_this_environment_is_the_locked_one():
    """What the tests run on is what the test lock says (make install-test installs it)."""
    differ = []
    for name, version in applicable("test.txt").items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            differ.append(f"{name} {installed} != {version}")
    assert not differ, f"the environment is not requirements/test.txt (make install-test): {differ}"


def test_makefile_installs_from_the_locks_with_hashes():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for stamp, lock in (("RUN_STAMP", "LOCK_RUN"), ("TEST_STAMP", "LOCK_TEST")):
        rule = re.search(rf"^\$\({stamp}\):(.*)\n((?:\t.*\n)+)", makefile, re.M)
        assert rule, f"no rule for $({stamp})"
        prerequisites, recipe = rule.groups()
        assert f"$({lock})" in prerequisites and "$(LOCK_BUILD)" in prerequisites, \
            f"$({stamp}) is not rebuilt when the lock changes"
        assert f"--require-hashes -r $({lock})" in recipe
        assert "--require-hashes -r $(LOCK_BUILD)" in recipe
        assert "--no-deps --no-build-isolation -e ." in recipe
        assert "'.[" not in recipe, "dependencies come from the lock, not from pyproject's ranges"
    for var, filename in (("LOCK_RUN", "run.txt"), ("LOCK_TEST", "test.txt"), ("LOCK_BUILD", "build.txt")):
        assert re.search(rf"^{var} := requirements/{filename}$", makefile, re.M)


def test_dockerfile_installs_the_image_lock_with_hashes():
    build_runs = " ".join(a for w, a in instructions()[: -len(final_stage())] if w == "RUN")
    assert "pip wheel --require-hashes --only-binary=:all:" in build_runs
    assert "-r requirements/image.txt" in build_runs
    assert "--require-hashes -r requirements/build.txt" in build_runs
    assert "pip wheel --no-deps --no-build-isolation" in build_runs
    runtime = " ".join(a for w, a in final_stage() if w == "RUN")
    assert "--no-index --find-links=/wheels --require-hashes -r /wheels/image.txt" in runtime
    assert "--no-index --no-deps /wheels/safeguard_relay-" in runtime
    assert "!requirements/" in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines(), \
        ".dockerignore lets requirements/ into the build context"


# --- pip-audit ------------------------------------------------------------------------

def _audit(service: str) -> tuple[dict | None, str]:
    """(pip-audit's JSON report, None when it did not finish) and why it did not."""
    cmd = [sys.executable, "-m", "pip_audit", "--vulnerability-service", service,
           "--disable-pip", "--require-hashes", "--progress-spinner", "off", "--timeout", "20",
           "--format", "json", "-r", str(LOCKS / "test.txt"), "-r", str(LOCKS / "build.txt")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    if proc.stdout.strip().startswith("{"):
        return json.loads(proc.stdout), ""
    if NETWORK_ERROR.search(proc.stderr):
        last = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-1:]
        return None, f"{service}: unreachable ({' '.join(last)[:200]})"
    pytest.fail(f"pip-audit ({service}) failed (exit {proc.returncode}) for a reason other than "
                f"the network:\n{proc.stderr[-3000:]}")


def audit_verdict(results: list[tuple[str, dict | None, str]], expected: int) -> tuple[str, str]:
    """("pass" | "fail" | "skip", why) from each source's (name, pip-audit JSON or None, why
    not). The first source that answers decides: any vulnerability fails, and so does a
    partial audit; a source that answered for no package counts as unreachable. Skip only
    when no source answered."""
    unreachable = []
    for service, report, why in results:
        if report is None:
            unreachable.append(why)
            continue
        deps = report["dependencies"]
        vulnerable = [f"{d['name']} {d['version']}: {v['id']} (fixed in {', '.join(v['fix_versions']) or 'no release'})"
                      for d in deps for v in d.get("vulns", [])]
        if vulnerable:
            return "fail", "known vulnerabilities in the locked dependencies:\n  " + "\n  ".join(vulnerable)
        skipped = [d["skip_reason"] for d in deps if "skip_reason" in d]
        if skipped and len(skipped) == len(deps):
            unreachable.append(f"{service}: answered for none of the {len(deps)} locked packages ({skipped[0]})")
            continue
        if skipped or len(deps) != expected:
            return "fail", f"pip-audit ({service}) audited {len(deps) - len(skipped)} of {expected}: " + "; ".join(skipped)
        return "pass", f"{service}: {len(deps)} packages, no known vulnerability"
    return "skip", "pip-audit: no advisory database could be reached, the locks were NOT audited — " + "; ".join(unreachable)


def test_pip_audit_finds_no_known_vulnerability():
    """Each advisory source in turn: PyPI's JSON API, then OSV (only when PyPI did not answer)."""
    expected = len(applicable("test.txt").keys() | applicable("build.txt").keys())
    results: list[tuple[str, dict | None, str]] = []
    for service in ("pypi", "osv"):
        results.append((service, *_audit(service)))
        verdict, why = audit_verdict(results, expected)
        if verdict != "skip":
            break
    if verdict == "skip":
        pytest.skip(why)
    assert verdict == "pass", why
    print(why)


_AIOHTTP_OLD = {"name": "aiohttp", "version": "3.9.0", "vulns": [
    {"id": "GHSA-5h86-8mv2-jq9f", "fix_versions": ["3.9.2"], "aliases": ["CVE-2024-23334"], "description": "..."}]}
_JINJA = {"name": "jinja2", "version": "3.1.6", "vulns": []}
_NOT_FOUND = {"name": "jinja2", "skip_reason": "Dependency not found on PyPI and could not be audited: jinja2 (3.1.6)"}


@pytest.mark.parametrize("results, verdict, says", [
    ([("pypi", {"dependencies": [_JINJA, _AIOHTTP_OLD]}, "")], "fail", "aiohttp 3.9.0: GHSA-5h86-8mv2-jq9f (fixed in 3.9.2)"),
    ([("pypi", {"dependencies": [_NOT_FOUND]}, ""), ("osv", {"dependencies": [_AIOHTTP_OLD]}, "")], "fail", "GHSA-5h86"),
    ([("pypi", {"dependencies": [_JINJA, _NOT_FOUND | {"name": "aiohttp"}]}, "")], "fail", "audited 1 of 2"),
    ([("pypi", {"dependencies": [_JINJA]}, "")], "fail", "audited 1 of 2"),
    ([("pypi", {"dependencies": [_JINJA, _JINJA | {"name": "aiohttp"}]}, "")], "pass", "2 packages"),
    ([("pypi", {"dependencies": [_NOT_FOUND, _NOT_FOUND]}, ""), ("osv", None, "osv: unreachable (x)")], "skip",
     "NOT audited — pypi: answered for none of the 2 locked packages (Dependency not found on PyPI"),
    ([("pypi", None, "pypi: unreachable (y)"), ("osv", None, "osv: unreachable (x)")], "skip", "pypi: unreachable (y); osv"),
])
def test_audit_verdict_fails_on_a_vulnerability_and_skips_only_when_nothing_answers(results, verdict, says):
    """pip-audit exits 0 saying "No known vulnerabilities found" when it skipped every package:
    that must never read as a pass."""
    got, why = audit_verdict(results, expected=2)
    assert (got, says in why) == (verdict, True), why
