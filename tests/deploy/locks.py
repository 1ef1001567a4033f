"""Reading requirements/*.txt, the hashed lock files scripts/lock.sh writes (`make lock`)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.manifests import ROOT

LOCKS = ROOT / "requirements"
LOCK_FILES = ("build.txt", "image.txt", "run.txt", "test.txt")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Pin:
    name: str  # canonical
    version: str
    marker: str
    hashes: int

    def applies(self) -> bool:
        """Whether pip installs this line here (its environment marker holds)."""
        return Requirement(f"x; {self.marker}").marker.evaluate() if self.marker else True


def pins(filename: str) -> list[Pin]:
    """One Pin per requirement line (continuation lines joined, comments dropped)."""
    out: list[Pin] = []
    logical = ""
    for line in (LOCKS / filename).read_text(encoding="utf-8").splitlines():
        line = line.split(" #", 1)[0].rstrip() if not line.lstrip().startswith("#") else ""
        if not line:
            continue
        logical += line.rstrip("\\").strip() + " "
        if line.endswith("\\"):
            continue
        spec, _, _ = logical.partition(" --hash")
        req = Requirement(spec.strip())
        (specifier,) = req.specifier  # exactly one: ==
        assert specifier.operator == "==", f"{filename}: {spec} is not pinned with =="
        out.append(Pin(canonicalize_name(req.name), specifier.version, str(req.marker or ""),
                       len(HASH.findall(logical))))
        logical = ""
    assert not logical.strip(), f"{filename} ends in a continuation line"
    return out


def applicable(filename: str) -> dict[str, str]:
    """name → version of the lines that apply on this machine."""
    found: dict[str, str] = {}
    for pin in pins(filename):
        if pin.applies():
            assert pin.name not in found, f"{filename} pins {pin.name} twice for this machine"
            found[pin.name] = pin.version
    return found
