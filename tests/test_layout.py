"""The shape of the code, read from the source with ast: no import cycle inside a package (function-local imports
included, since they only hide a cycle), no private name imported from another module, and the SDK and the SQL
connector imported only by the exporter's sources."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"databricks_exporter": ROOT / "exporter" / "databricks_exporter",
            "databricks_sim": ROOT / "simulator" / "databricks_sim"}


def modules(package: str) -> dict[str, ast.Module]:
    """Dotted module name -> parsed source, for every .py file of the package."""
    root = PACKAGES[package]
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = (package, *path.relative_to(root).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(), filename=str(path))
    return out


def imports(name: str, tree: ast.Module, is_package: bool) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import statement anywhere in the module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((base, [alias.name for alias in node.names], node.lineno))
    return found


def graph(package: str) -> tuple[dict[str, set[str]], list[str]]:
    """The package's internal import graph and the private names one module imports from another."""
    mods = modules(package)
    packages = {n for n in mods if (PACKAGES[package] / Path(*n.split(".")[1:]) / "__init__.py").exists()}
    edges: dict[str, set[str]] = {n: set() for n in mods}
    private = []
    for name, tree in mods.items():
        for target, names, line in imports(name, tree, name in packages):
            for candidate in [target] + [f"{target}.{n}" for n in names]:
                if candidate in mods and candidate != name:
                    edges[name].add(candidate)
            if target in mods and target != name:
                private += [f"{name}:{line} imports {n} from {target}" for n in names
                            if n.startswith("_") and not n.startswith("__")]
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first search (each reported once, from where the search entered it)."""
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [node])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_cycle(package):
    edges, _ = graph(package)
    assert sum(map(len, edges.values())) > 5      # the graph was really read
    assert cycles(edges) == []


@pytest.mark.parametrize("package", ["databricks_exporter", "databricks_sim"])
def test_no_private_name_imported_across_modules(package):
    _, private = graph(package)
    assert private == []


def test_only_the_sources_import_the_sdk_and_the_connector():
    leaks = []
    for name, tree in modules("databricks_exporter").items():
        if name.startswith("databricks_exporter.sources"):
            continue
        for target, _, line in imports(name, tree, False):
            if target.split(".")[:2] in (["databricks", "sdk"], ["databricks", "sql"]):
                leaks.append(f"{name}:{line} imports {target}")
    assert leaks == []
