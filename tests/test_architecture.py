"""The package's layers: imports point downwards only, and no module takes part in a cycle.

Every ``import`` of every module under ``src/gpvae`` is read with :mod:`ast` (top-level,
inside functions and under ``TYPE_CHECKING`` alike: a cycle through a type annotation is
still two modules that need each other). Each module belongs to the layer of its package;
a module may import its own package and any lower layer, never a higher one nor another
package of its own layer.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Layers from the bottom up; packages in one layer may not import each other.
LAYERS: list[tuple[str, ...]] = [
    ("gpvae.errors", "gpvae.settings", "gpvae.version"),
    ("gpvae.arguments", "gpvae.rng", "gpvae.batch", "gpvae.io", "gpvae.heap"),
    ("gpvae.kernels", "gpvae.data", "gpvae.nets"),
    ("gpvae.gp", "gpvae.datasets"),
    ("gpvae.likelihoods", "gpvae.posteriors"),
    ("gpvae.model",),
    ("gpvae.training",),
    ("gpvae.estimator",),
    ("gpvae.app",),
    ("gpvae.__main__",),
]
#: The package's top level is the public facade: it may import anything.
FACADE = "gpvae"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / "gpvae").rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The gpvae modules ``name`` imports (resolved to modules that exist)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import sub` imports the module pkg.sub; `from pkg import name`, pkg
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        for t in targets:
            if not t.startswith("gpvae"):
                continue
            while t and t not in known:  # `from pkg import name` where name is not a module
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _layer(module: str) -> tuple[int, str] | None:
    for rank, packages in enumerate(LAYERS):
        for pkg in packages:
            if module == pkg or module.startswith(pkg + "."):
                return rank, pkg
    return None


MODULES = _modules()
GRAPH = {name: _imports(name, path, set(MODULES)) for name, path in MODULES.items()}


def test_every_module_has_a_layer() -> None:
    missing = [m for m in MODULES if m != FACADE and _layer(m) is None]
    assert not missing, f"modules outside every layer (add them to LAYERS): {missing}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != FACADE))
def test_imports_point_downwards(module: str) -> None:
    own = _layer(module)
    assert own is not None
    bad = []
    for target in sorted(GRAPH[module]):
        if target == FACADE:
            bad.append(f"{target} (the package facade)")
            continue
        layer = _layer(target)
        assert layer is not None, target
        if layer[0] > own[0] or (layer[0] == own[0] and layer[1] != own[1]):
            bad.append(target)
    assert not bad, f"{module} ({own[1]}) imports a higher or sibling layer: {bad}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _without_package_inits(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Edges from a package's ``__init__`` to its own submodules are re-exports, not
    dependencies of the package's modules on each other; cycles are looked for among the
    modules that do the work (a submodule importing its own package's ``__init__`` counts,
    since that runs every re-export)."""
    out: dict[str, set[str]] = defaultdict(set)
    for src, targets in graph.items():
        is_package = MODULES[src].name == "__init__.py"
        for t in targets:
            if is_package and t.startswith(src + "."):
                continue
            out[src].add(t)
    return dict(out)


def test_no_import_cycles() -> None:
    cycles = _cycles(_without_package_inits(GRAPH))
    assert not cycles, f"modules that import each other (directly or through others): {cycles}"


def test_the_checker_sees_upward_imports_and_cycles() -> None:
    """The checks above can fail: a made-up graph with a cycle and an upward import."""
    graph = {"gpvae.kernels.a": {"gpvae.model"}, "gpvae.model": {"gpvae.kernels.a"}}
    assert _cycles(graph) == [["gpvae.kernels.a", "gpvae.model"]]
    assert _layer("gpvae.model")[0] > _layer("gpvae.kernels.a")[0]  # type: ignore[index]
