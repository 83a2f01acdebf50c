"""The package's layers, read from its source: every import points down, and none go round.

    cli -> ui -> analysis -> training -> {augment, data, models} -> base

``base`` is ``errors``, ``fsutil``, ``recipe``, ``registry``, ``runs`` (and the package's
own ``__init__``); ``augment/spec.py`` belongs to it too: it is the torch-free half of the
recipe schema that ``recipe.py`` validates with. A module may import its own layer and
the layers below; ``augment``, ``data`` and ``models`` do not import each other. Imports
inside functions count like any other.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cifarctl"

BELOW = {
    "base": set(),
    "augment": {"base"},
    "data": {"base"},
    "models": {"base"},
    "training": {"augment", "data", "models", "base"},
    "analysis": {"training", "augment", "data", "models", "base"},
    "ui": {"analysis", "training", "augment", "data", "models", "base"},
    "cli": {"ui", "analysis", "training", "augment", "data", "models", "base"},
}
# The one import that points up, on purpose: a registry lookup imports the model families
# once (each family registers its models when imported: timm's pattern).
ALLOWED = {("cifarctl.registry", "cifarctl.models"): "the registry loads the model families on first use"}


def layer(module: str) -> str:
    parts = module.split(".")
    if module == "cifarctl.augment.spec":
        return "base"
    if module == "cifarctl.__main__":
        return "cli"
    if len(parts) > 1 and parts[1] in BELOW:
        return parts[1]
    return "base"


def modules() -> dict[str, Path]:
    found = {}
    for py in sorted(PACKAGE.rglob("*.py")):
        parts = ("cifarctl", *py.relative_to(PACKAGE).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = py
    return found


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """The cifarctl modules ``name`` imports, with line numbers (``from pkg import mod`` is ``pkg.mod``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .x import y
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for a in node.names:
                sub = f"{source}.{a.name}"
                out.append((sub if sub in known else source, node.lineno))
    return [(m, line) for m, line in out if m == "cifarctl" or m.startswith("cifarctl.")]


def graph() -> dict[str, list[tuple[str, int]]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def upward_imports(edges: dict[str, list[tuple[str, int]]]) -> list[str]:
    bad = []
    for src, targets in edges.items():
        for dst, line in sorted(set(targets)):
            a, b = layer(src), layer(dst)
            if a != b and b not in BELOW[a] and (src, dst) not in ALLOWED:
                bad.append(f"{src} (line {line}, layer {a}) imports {dst} (layer {b})")
    return bad


def cycles(edges: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Every strongly connected group of two modules or more (Tarjan), allowed edges aside."""
    succ = {m: sorted({d for d, _ in t if d in edges and (m, d) not in ALLOWED and d != m})
            for m, t in edges.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in succ:
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer():
    for name in modules():
        assert layer(name) in BELOW, name


def test_imports_point_down_the_layers():
    bad = upward_imports(graph())
    assert not bad, "imports against the layers (cli -> ui -> analysis -> training -> " \
                    "{augment, data, models} -> base):\n" + "\n".join(bad)


def test_no_import_cycles():
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_checks_catch_an_upward_import_and_a_cycle():
    edges = {"cifarctl.training.engine": [("cifarctl.cli.app", 3)], "cifarctl.cli.app": [],
             "cifarctl.training.a": [("cifarctl.training.b", 1)], "cifarctl.training.b": [("cifarctl.training.a", 1)]}
    assert upward_imports(edges) == ["cifarctl.training.engine (line 3, layer training) imports "
                                     "cifarctl.cli.app (layer cli)"]
    assert cycles(edges) == [["cifarctl.training.a", "cifarctl.training.b"]]
