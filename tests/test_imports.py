"""The package's import graph: no cycles, and every layer imports only from the layers below it.

Every module is parsed with ``ast`` (imports inside functions count too: a lazy import is still a
dependency). Each subpackage and top-level module of ``talr_theory`` (a *unit*) sits in one layer of
``LAYERS``, bottom first:

0. foundations: the version (``__init__``), ``paths``, ``stats``, ``verdicts``, ``results``;
0b. ``configs`` (dataclass configs, option checks and the words they print);
1. pure math, loaders, figures, output folders: ``claims``, ``outputs``, ``theory``, ``data``, ``models``, ``plotting``;
2. ``tokens`` (teacher-forced token probabilities);
3. ``training`` (the one training core and its measurements);
4. ``lab`` (the synthetic lab);
5. ``advisor`` (the safe-LR rule and its real-model backend);
6. ``tiers`` (the stages);
7. ``report``;
8. ``reproduce`` and ``explore`` (the main job, and reading what it stored);
9. ``commands``; 10. ``cli``.

A unit may import itself and units of lower layers only; a new unit must be given a layer here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PKG = Path(__file__).resolve().parents[1] / "talr_theory"
LAYERS = (
    ("__init__", "paths", "stats", "verdicts", "results"),
    ("configs",),
    ("claims", "outputs", "theory", "data", "models", "plotting"),
    ("tokens",),
    ("training",),
    ("lab",),
    ("advisor",),
    ("tiers",),
    ("report",),
    ("reproduce", "explore"),
    ("commands",),
    ("cli",),
)
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def module_name(path: Path, root: Path = PKG) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, modules: set[str], root: Path = PKG) -> set[str]:
    """Package modules imported anywhere in ``path`` (``from x import y`` counts y when it is a module)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m in modules and m != name}


def import_graph(root: Path = PKG) -> nx.DiGraph:
    files = sorted(root.rglob("*.py"))
    modules = {module_name(f, root) for f in files}
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for f in files:
        for target in imports_of(f, modules, root):
            graph.add_edge(module_name(f, root), target)
    return graph


def test_graph_sees_lazy_imports():
    """The parser must see imports inside functions (a lazy import is still a dependency)."""
    graph = import_graph()
    assert graph.has_edge("talr_theory.tiers.tokens", "talr_theory.tokens.analysis")  # imported inside run()


def test_no_import_cycles():
    cycles = list(nx.simple_cycles(import_graph()))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c + [c[0]]) for c in cycles[:10])


def unit(module: str) -> str:
    """The layer unit of a module: its subpackage or top-level module (``__init__`` for the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_violations(graph: nx.DiGraph, layer: dict[str, int]) -> list[tuple[str, str]]:
    """Edges from one unit to another unit of the same or a higher layer."""
    return [(a, b) for a, b in graph.edges
            if unit(a) != unit(b) and layer[unit(a)] <= layer[unit(b)]]


def test_every_unit_has_a_layer():
    units = {unit(m) for m in import_graph().nodes}
    assert units <= set(LAYER), f"place these in LAYERS: {sorted(units - set(LAYER))}"
    assert set(LAYER) <= units, f"LAYERS names units that no longer exist: {sorted(set(LAYER) - units)}"


def test_every_layer_imports_only_from_lower_layers():
    bad = layer_violations(import_graph(), LAYER)
    assert not bad, "upward or sideways imports: " + "; ".join(f"{a} -> {b}" for a, b in bad[:10])


def test_detects_a_cycle_and_a_layer_violation(tmp_path):
    """The checks themselves can fail: a lazy two-module cycle and an upward import written to disk are found."""
    root = tmp_path / "pkg"
    (root / "theory").mkdir(parents=True)
    (root / "lab").mkdir()
    for d in (root, root / "theory", root / "lab"):
        (d / "__init__.py").write_text("")
    (root / "theory" / "a.py").write_text("def f():\n    from pkg.lab import b\n")
    (root / "lab" / "b.py").write_text("from pkg.theory.a import f\n")
    graph = import_graph(root)
    assert graph.has_edge("pkg.theory.a", "pkg.lab.b") and graph.has_edge("pkg.lab.b", "pkg.theory.a")
    assert list(nx.simple_cycles(graph))
    assert {b for a, b in layer_violations(graph, {"__init__": 0, "theory": 1, "lab": 4})} == {"pkg.lab", "pkg.lab.b"}
    assert layer_violations(graph, {"__init__": 0, "theory": 1, "lab": 1}) != []  # sideways counts too
