"""The package's import graph: no cycles, and the lower layers never import the upper ones.

Every module is parsed with ``ast`` (imports inside functions count too: a lazy import is still a
dependency). ``theory`` (pure math) and ``data`` (loaders) sit below everything that measures or
runs: they must never import ``lab``, ``tiers``, ``training`` or ``commands``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

PKG = Path(__file__).resolve().parents[1] / "talr_theory"
LOWER = ("theory", "data")
UPPER = ("lab", "tiers", "training", "commands")


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


@pytest.mark.parametrize("lower", LOWER)
def test_lower_layers_do_not_import_upper_layers(lower):
    graph = import_graph()
    bad = [(a, b) for a, b in graph.edges
           if a.startswith(f"talr_theory.{lower}") and any(b.startswith(f"talr_theory.{u}") for u in UPPER)]
    assert not bad, bad


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
