"""The import graph: no circles, and the layers of the README's layout table.

Every ``import`` in every module of the project counts, wherever it is written (module level,
inside a function, under ``TYPE_CHECKING``): a function-level import is still an arrow a reader
has to follow, and hiding a circle inside a function does not remove it. Read with ``ast``, so
nothing is imported (and nothing runs) to draw the graph."""

from __future__ import annotations

import ast
import sys
import textwrap
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("domain", "ingest", "workers", "notifiers", "shippo_api", "store", "admin", "bench")
MODULES = ("config",)

#: What each layer may import besides the standard library and itself (README, "Layout").
#: Every layer but ``domain`` may also read ``config`` (the settings). ``None``: anything.
ALLOWED: dict[str, frozenset[str] | None] = {
    "domain": frozenset(),
    "store": frozenset({"domain", "config"}),
    "notifiers": frozenset({"domain", "config"}),
    "shippo_api": frozenset({"domain", "config"}),  # outbound adapter, like notifiers
    "workers": frozenset({"domain", "store", "notifiers", "shippo_api", "config"}),
    "ingest": frozenset({"domain", "store", "workers", "config"}),
    "admin": None,
    "bench": None,
    "config": frozenset({"store"}),  # the vault of encrypted settings
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def project_files() -> dict[str, Path]:
    files = {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    files.update({name: ROOT / f"{name}.py" for name in MODULES})
    return files


def imported_names(module: str, tree: ast.AST) -> Iterator[str]:
    """Every module name ``tree`` imports, resolved (``from store import orders`` is
    ``store.orders`` when that is a module; relative imports are made absolute)."""
    package = module if project_files()[module].name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in project_files() else base


def _project_module(name: str) -> str | None:
    """The project module ``name`` refers to (itself or its nearest project parent), or None."""
    while name:
        if name in project_files():
            return name
        name = name.rpartition(".")[0]
    return None


@cache
def graph() -> dict[str, frozenset[str]]:
    edges: dict[str, frozenset[str]] = {}
    for module, path in project_files().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = {_project_module(name) for name in imported_names(module, tree)}
        edges[module] = frozenset(t for t in targets if t is not None and t != module)
    return edges


def strongly_connected(edges: dict[str, frozenset[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively (no recursion limit to meet)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _layer(module: str) -> str:
    return module.partition(".")[0]


def _is_stdlib(name: str) -> bool:
    return name.partition(".")[0] in sys.stdlib_module_names or name == "__future__"


# ---------------------------------------------------------------------------------- the tests


def test_the_graph_covers_every_package_and_sees_function_level_imports() -> None:
    edges = graph()
    assert {_layer(m) for m in edges} == {*PACKAGES, *MODULES}
    assert len(edges) > 80
    # ingest/app.py registers blueprints that each import ingest/services.py
    assert "ingest.services" in edges["ingest.shippo"]


def test_the_cycle_finder_finds_a_circle_hidden_inside_a_function() -> None:
    tree = ast.parse("def later():\n    from workers.actors import send_notification\n")
    assert set(imported_names("workers.scheduler", tree)) == {"workers.actors"}
    edges = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset({"a"})}
    assert [c for c in strongly_connected(edges) if len(c) > 1] == [["a", "b", "c"]]


def test_no_module_imports_itself_back_through_others() -> None:
    circles = [c for c in strongly_connected(graph()) if len(c) > 1]
    assert circles == [], "import circles: " + "; ".join(" ↔ ".join(c) for c in circles)


def layer_violations(trees: Mapping[str, ast.AST]) -> list[str]:
    broken = []
    for module, tree in sorted(trees.items()):
        allowed = ALLOWED[_layer(module)]
        if allowed is None:
            continue
        for name in imported_names(module, tree):
            target = _project_module(name)
            if target is None:
                if _layer(module) == "domain" and not _is_stdlib(name):
                    broken.append(f"{module} imports {name} (domain is stdlib only)")
                continue
            if _layer(target) != _layer(module) and _layer(target) not in allowed:
                broken.append(f"{module} imports {target}")
    return broken


def test_the_layer_rules_catch_each_kind_of_upward_arrow() -> None:
    def code(text: str) -> ast.AST:
        return ast.parse(textwrap.dedent(text))

    trees = {
        "domain.payload": code("import json\nimport sqlalchemy\n"),
        "store.orders": code("def f():\n    from workers.actors import send_notification\n"),
        "notifiers.smtp": code("from ingest import errors\n"),
        "ingest.shippo": code("from admin.services import services\n"),
        "workers.sending": code("import admin.queues\nfrom ingest.queue import EventQueue\n"),
        "admin.app": code("import workers.actors, ingest.app\n"),
    }
    assert layer_violations(trees) == [
        "domain.payload imports sqlalchemy (domain is stdlib only)",
        "ingest.shippo imports admin.services",
        "notifiers.smtp imports ingest.errors",
        "store.orders imports workers.actors",
        "workers.sending imports admin.queues",
        "workers.sending imports ingest.queue",
    ]


def test_every_layer_imports_only_what_the_layout_table_allows() -> None:
    trees = {module: ast.parse(path.read_text(encoding="utf-8")) for module, path in project_files().items()}
    assert layer_violations(trees) == []
