"""The package's borders, checked on the source: a private module (``_name``) is imported only
inside its own package, the lower layers never import the stages that use them, and no import
cycle runs between the package's top-level units."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

#: stage packages: the lower layers (io, oracles, models, plotting) must not import them
STAGES = {"al", "bayesfc", "campaign", "events", "greenkubo", "multifidelity", "phonons"}
LOWER = {"io", "oracles", "models", "plotting"}
#: known upward imports (lower-layer modules), each with the work that removes it. Empty since
#: issue 21, item 3 moved the model plugins of a stage next to their implementation
#: (``alkappa.bayesfc.plugin``, ``alkappa.multifidelity.plugin``).
ALLOWED_UPWARD: set[str] = set()

#: known crossings, each with the work that removes it. Empty since issue 21, item 2 moved the
#: NequIP heat flux into the NequIP model plugin (``alkappa.models._nequip_flux``).
ALLOWED_PRIVATE: set[tuple[str, str]] = set()


def _modules():
    for path in sorted((SRC / "alkappa").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        package = parts[:-1]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), package, ast.parse(path.read_text())


def _imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            for alias in node.names:
                yield f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def private_crossings():
    found = set()
    for module, package, tree in _modules():
        for name in _imports(tree):
            parts = name.split(".")
            if parts[0] != "alkappa":
                continue
            for i, part in enumerate(parts):
                if part.startswith("_") and not part.startswith("__"):
                    owner = parts[:i]  # the package the private name belongs to
                    if package[: len(owner)] != owner:
                        found.add((module, ".".join(parts[: i + 1])))
                    break
    return found


def test_private_modules_are_imported_only_inside_their_package():
    crossings = private_crossings()
    assert crossings - ALLOWED_PRIVATE == set(), sorted(crossings - ALLOWED_PRIVATE)
    assert ALLOWED_PRIVATE <= crossings, "an allowed crossing is gone: remove it from the list"


def upward_imports():
    found = set()
    for module, _, tree in _modules():
        layer = module.split(".")[1] if "." in module else ""
        if layer not in LOWER:
            continue
        for name in _imports(tree):
            parts = name.split(".")
            if parts[0] == "alkappa" and len(parts) > 1 and parts[1] in STAGES:
                found.add((module, name))
    return found


def test_lower_layers_never_import_the_stages():
    found = upward_imports()
    upward = {(module, name) for module, name in found if module not in ALLOWED_UPWARD}
    assert not upward, sorted(upward)
    still = {module for module, _ in found}
    assert ALLOWED_UPWARD <= still, "an allowed upward import is gone: remove it from the list"


def test_the_rule_sees_an_upward_import(tmp_path, monkeypatch):
    # the check itself can fail: a lower layer that imports a stage, even inside a function
    fake = tmp_path / "alkappa" / "models"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("def f():\n    import alkappa.bayesfc.plugin\n")
    monkeypatch.setattr(__import__(__name__), "SRC", tmp_path)
    assert upward_imports() == {("alkappa.models.bad", "alkappa.bayesfc.plugin")}


def test_the_rule_sees_a_crossing(tmp_path, monkeypatch):
    # the check itself can fail: a module that reaches into another package's private module
    fake = tmp_path / "alkappa" / "io"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("from alkappa.phonons._plots import thing\n")
    monkeypatch.setattr(__import__(__name__), "SRC", tmp_path)
    assert private_crossings() == {("alkappa.io.bad", "alkappa.phonons._plots")}


# -- no cycle between the package's units (issue 21) ------------------------------------------
# A unit is a top-level subpackage (``al``, ``settings``, ...) or module (``config``,
# ``reference_data``, ...) of ``alkappa``; ``alkappa`` itself stands for the package's
# ``__init__``. An import of another unit is an edge, at module level or inside a function, but
# not one under ``if TYPE_CHECKING:`` (never run).


def _type_checking_only(tree):
    """The nodes under ``if TYPE_CHECKING:`` (their ``else`` runs)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (
            (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
            or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
        ):
            for stmt in node.body:
                skip.update(id(n) for n in ast.walk(stmt))
    return skip


def _is_unit(name):
    root = SRC / "alkappa"
    return (root / name / "__init__.py").is_file() or (root / f"{name}.py").is_file()


def unit_imports():
    """``{(unit, imported unit): where}``, ``where`` the first import's ``module:line``."""
    edges = {}
    for module, _, tree in _modules():
        parts = module.split(".")
        unit = parts[1] if len(parts) > 1 else "alkappa"
        skip = _type_checking_only(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = node.module.split(".")
                if names[0] != "alkappa":
                    continue
                if len(names) > 1:
                    targets = [names[1]]
                else:  # from alkappa import X: the unit X, or the package's __init__
                    targets = [a.name if _is_unit(a.name) else "alkappa" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name.split(".") for a in node.names]
                targets = [n[1] if len(n) > 1 else "alkappa" for n in names if n[0] == "alkappa"]
            else:
                continue
            for target in targets:
                if target != unit:
                    edges.setdefault((unit, target), f"{module}:{node.lineno}")
    return edges


def unit_cycles(edges):
    """Every elementary cycle of the graph ``edges``, each once, starting at its least unit."""
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    found = []

    def walk(start, path):
        for nxt in sorted(graph.get(path[-1], ())):
            if nxt == start:
                found.append(tuple(path))
            elif nxt > start and nxt not in path:
                walk(start, [*path, nxt])

    for start in sorted(graph):
        walk(start, [start])
    return found


def _describe(cycle, edges):
    steps = zip(cycle, (*cycle[1:], cycle[0]), strict=True)
    return cycle[0] + "".join(f" -> {b} ({edges[a, b]})" for a, b in steps)


def test_no_cycle_between_the_packages():
    edges = unit_imports()
    assert ("steps", "al") in edges  # the graph is the package's, not empty
    cycles = unit_cycles(edges)
    assert not cycles, "import cycles between units:\n" + "\n".join(
        _describe(c, edges) for c in cycles
    )


def test_the_rule_sees_a_cycle(tmp_path, monkeypatch):
    # the check itself can fail: a cycle through an import inside a function and a
    # ``from alkappa import unit``; an import for type hints only makes none
    root = tmp_path / "alkappa"
    (root / "low").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "low" / "__init__.py").write_text("")
    (root / "low" / "x.py").write_text("from alkappa.high import f\n")
    (root / "high.py").write_text(
        "import alkappa.other\n\n\ndef f():\n    from alkappa import low\n"
    )
    (root / "other.py").write_text(
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from alkappa.high import f\n"
    )
    monkeypatch.setattr(__import__(__name__), "SRC", tmp_path)
    edges = unit_imports()
    assert edges == {
        ("low", "high"): "alkappa.low.x:1",
        ("high", "other"): "alkappa.high:1",
        ("high", "low"): "alkappa.high:5",
    }
    assert unit_cycles(edges) == [("high", "low")]
    assert _describe(("high", "low"), edges) == (
        "high -> low (alkappa.high:5) -> high (alkappa.low.x:1)"
    )
