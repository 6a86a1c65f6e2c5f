"""The package's shape: no import cycles (imports inside functions count), data flows one way through
the layers, and no source file grows past 400 lines.

    .venv/bin/python -m pytest tests/unit/test_architecture.py -q
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import forgetless

ROOT = Path(forgetless.__file__).parent
# Lower layers first: a module may import from its own layer or a lower one, never from a higher one.
LAYERS = (
    ("forgetless._version", "forgetless.errors", "forgetless.utils"),
    ("forgetless.models",),
    ("forgetless.data",),
    ("forgetless.engine",),
    ("forgetless.adapters",),
    ("forgetless.train",),
    ("forgetless.eval",),
    ("forgetless.knowledge",),
    ("forgetless.continual",),
    ("forgetless.serve",),
    ("forgetless.demos",),
    ("forgetless.api",),
    ("forgetless.cli",),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """Every forgetless module `name` imports, at any depth of its code (functions included)."""
    path, found = MODULES[name], set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    # a package importing its own submodules (re-exports) is not an edge of the design
    return {m for m in found if m in MODULES and m != name and not m.startswith(name + ".")}


GRAPH = {name: imports_of(name) for name in MODULES}


def layer_of(name: str) -> int:
    for index, prefixes in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return index
    return len(LAYERS)  # the root package: lazy re-exports of the API


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_there_are_no_import_cycles():
    assert cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_from_a_higher_layer():
    upward = sorted(f"{a} -> {b}" for a, deps in GRAPH.items() for b in deps if layer_of(b) > layer_of(a))
    assert upward == []


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_source_files_stay_small(path):
    assert len(path.read_text().splitlines()) <= 400
