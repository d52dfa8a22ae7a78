"""The package's borders, checked on the source: a private module (``_name``) is imported only
inside its own package, and the lower layers never import the stages that use them."""

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
