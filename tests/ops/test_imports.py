"""The import rules of DESIGN §2, read from the source with `ast` (nothing is imported).

- no import cycle among the modules of shared/, safeguard/ and the services (imports
  inside functions count: a loop through a deferred import is still a loop);
- shared/ imports no service and not the `safeguard` command;
- no service imports another service.

`from a.b import c` depends on `a.b.c` when that is a module, else on `a.b`; a package's
`__init__` is a module like any other, so importing `a.b.c` is not counted as importing `a.b`.
"""
from __future__ import annotations

import ast
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("shared", "safeguard", "services")
SERVICES = ("intake", "escalation", "notifier")

Graph = Mapping[str, set[str]]


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(tree: ast.Module, name: str, is_package: bool, modules: Collection[str]) -> Iterable[str]:
    """Every module the module `name` (parsed as `tree`) imports."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join([*package[:len(package) - node.level + 1], *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield full if full in modules else base


def import_graph(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> dict[str, set[str]]:
    """module -> the project modules it imports."""
    files = {module_name(p, root): p for package in packages for p in (root / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        graph[name] = (set(_imported(tree, name, path.name == "__init__.py", files)) & files.keys()) - {name}
    return graph


def find_cycles(graph: Graph) -> list[list[str]]:
    """One cycle (first module repeated at the end) per strongly connected component."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan; the graph is a few hundred modules deep at most
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(graph, component) for component in components]


def _cycle_in(graph: Graph, component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"not a cycle: {sorted(component)}")


def owner(module: str) -> str:
    """`shared`, `safeguard`, or the service (`intake`, ...) a module belongs to."""
    parts = module.split(".")
    return parts[1] if parts[0] == "services" and len(parts) > 1 else parts[0]


def crossings(graph: Graph, allowed: Mapping[str, set[str]]) -> list[str]:
    """`a -> b` for every import whose owners are not allowed to meet."""
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                  if owner(b) != owner(a) and owner(b) not in allowed.get(owner(a), {owner(b)}))


GRAPH = import_graph()


def test_the_graph_sees_every_package():
    assert {owner(m) for m in GRAPH} == {"shared", "safeguard", "services", *SERVICES}


def test_no_import_cycle():
    cycles = find_cycles(GRAPH)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_shared_imports_no_service_and_not_the_command():
    bad = crossings(GRAPH, {"shared": set()})
    assert not bad, "shared/ must import no service nor safeguard/:\n" + "\n".join(bad)


def test_no_service_imports_another():
    bad = crossings(GRAPH, {service: {"shared"} for service in SERVICES})
    assert not bad, "a service imports only itself and shared/:\n" + "\n".join(bad)


def test_the_checks_find_what_they_look_for(tmp_path):
    sources = {
        "a/__init__.py": "from a.x import f\n",
        "a/x.py": "from a import y\n\ndef f():\n    return y\n",
        "a/y.py": "from a.z import g\n",
        "a/z.py": "import os\n\ndef g():\n    import a.x  # deferred: still a loop\n",
        "b/__init__.py": "",
        "b/m.py": "from . import n\nfrom .n import h\nfrom a import z, x\n",
        "b/n.py": "h = 1\n",
    }
    for name, text in sources.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path, ["a", "b"])
    assert graph == {"a": {"a.x"}, "a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"},
                     "b": set(), "b.m": {"a.x", "a.z", "b.n"}, "b.n": set()}
    assert find_cycles(graph) == [["a.x", "a.y", "a.z", "a.x"]]
    assert find_cycles({**graph, "a.z": set()}) == []
    mixed = {"shared.config": {"services.intake.context"}, "services.intake.context": {"services.notifier.x"}}
    assert crossings(mixed, {"shared": set()}) == ["shared.config -> services.intake.context"]
    assert crossings(mixed, {"intake": {"shared"}}) == ["services.intake.context -> services.notifier.x"]
