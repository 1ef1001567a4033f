"""docs/reliability.md, written by the tests themselves.

A test asks for the `reliability` fixture and records rows into a named section
(`reliability.row("authorisation", endpoint=..., tried=3, ...)`). At the end of the
session each section whose test modules (listed in SECTIONS) all ran in full and
all passed replaces its block in docs/reliability.md; other sections are kept as
they were. A section whose rows did not change is left untouched, so the file only
changes when the figures do (its "written at" line is the only time stamp).
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"
HEADER = """# Reliability and security results

Every table below is written by the test suite itself (`tests/reliability.py`), never by
hand: a test records rows while it runs, and at the end of the session each table whose
tests all passed replaces its block here. A run that reproduces the same figures leaves
the file untouched. Regenerate with `make test`, or
`.venv/bin/python -m pytest -q tests/security tests/bus/test_publish_consume.py`.
"""
S = "tests/security/"
# name -> (title, the test modules that must all have run and passed to rewrite it), in document order
SECTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "authorisation": ("Authorisation matrix (intake and escalation)",
                      (S + "test_authz_intake.py", S + "test_authz_escalation.py")),
    "pages": ("Pages × people (signed in at the development identity provider; DESIGN §3.7)",
              ("tests/intake/test_pages_access.py", "tests/escalation/test_console_access.py")),
    "tamper": ("Tamper evidence", (S + "test_tamper.py",)),
    "bus": ("Forged bus messages (parked, never handled)", ("tests/bus/test_publish_consume.py",)),
    "keys": ("Key rotation", (S + "test_key_rotation.py",)),
    "retention": ("Retention (crypto-shredding)", (S + "test_retention.py",)),
    "leaks": ("Leak checks", (S + "test_authz_intake.py", S + "test_retention.py")),
    "attacks": ("Attacks tried (security review, issue 18): before and after the fix",
                (S + "test_attacks.py", S + "test_flood.py", S + "test_shared_rate_limit.py",
                 "tests/storage/test_file_modes.py", "tests/escalation/test_alerts_api.py", S + "test_key_rotation.py",
                 S + "test_metrics_exposure.py", "tests/deploy/test_k8s.py", S + "test_sealed_sections.py",
                 "tests/web/test_sealed_browser.py", "tests/bus/test_broker_users.py", "tests/web/test_signin.py")),
    "fuzz": ("Fuzzing (schemathesis per endpoint, hypothesis per AMQP consumer)",
             ("tests/fuzz/test_openapi_fuzz.py", "tests/fuzz/test_amqp_fuzz.py")),
    "faults": ("Fault injection under load (`make test-faults`)", ("tests/faults/test_faults.py",)),
    "fault_checks": ("Fault injection: every referral, timer, email and alert classified",
                     ("tests/faults/test_faults.py",)),
}


@dataclass
class _State:
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    modules: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # section -> module paths
    failed_modules: set[str] = field(default_factory=set)
    deselected_modules: set[str] = field(default_factory=set)


STATE = _State()


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


class Recorder:
    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid

    def row(self, section: str, **values: Any) -> None:
        if section not in SECTIONS:
            raise KeyError(f"unknown reliability section {section!r}")
        STATE.rows[section].append(values)
        STATE.modules[section].add(_module(self.nodeid))


@pytest.fixture
def reliability(request) -> Recorder:
    """Record result rows for docs/reliability.md."""
    return Recorder(request.node.nodeid)


def pytest_runtest_logreport(report) -> None:
    if report.failed:
        STATE.failed_modules.add(_module(report.nodeid))


def pytest_deselected(items) -> None:
    STATE.deselected_modules.update(_module(i.nodeid) for i in items)


def _table(rows: list[dict[str, Any]]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    cell = lambda v: "" if v is None else str(v).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def _block(name: str, body: str, stamp: str) -> str:
    return f"<!-- reliability:{name} -->\n## {SECTIONS[name][0]}\n\n{stamp}\n\n{body}\n<!-- /reliability:{name} -->"


_BLOCK = re.compile(r"<!-- reliability:(\w+) -->\n.*?\n\n(.*?)\n\n(.*?)\n<!-- /reliability:\1 -->", re.S)


def render(existing: str, fresh: dict[str, str], stamp: str) -> str:
    """The document: fresh tables replace changed blocks; other blocks are kept."""
    old = {m.group(1): (m.group(2), m.group(3)) for m in _BLOCK.finditer(existing)}
    blocks = []
    for name in SECTIONS:
        if name in fresh and (name not in old or old[name][1] != fresh[name]):
            blocks.append(_block(name, fresh[name], stamp))
        elif name in old:
            blocks.append(_block(name, old[name][1], old[name][0]))
    return HEADER + "\n" + "\n\n".join(blocks) + "\n"


def pytest_sessionfinish(session) -> None:
    args = session.config.invocation_params.args
    pinned = {_module(a) for a in args if "::" in str(a)}
    fresh = {}
    for name, modules in STATE.modules.items():
        if set(SECTIONS[name][1]) - modules or modules & (STATE.failed_modules | STATE.deselected_modules) or any(
                m.endswith(p) or p.endswith(m) for m in modules for p in pinned):
            continue  # not every test of the section ran, or one failed: keep what the file has
        fresh[name] = _table(STATE.rows[name])
    if not fresh:
        return
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["pytest", *map(str, args)]).strip()
    stamp = f"_Written at {when} by `{command}` (all of this table's tests passed)._"
    existing = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    text = render(existing, fresh, stamp)
    if text != existing:
        DOC.write_text(text, encoding="utf-8")
