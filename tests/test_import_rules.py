"""The package's borders, checked on the source: a private module (``_name``) is imported only
inside its own package, and the lower layers never import the stages that use them."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

#: stage packages: the lower layers (io, oracles, models, plotting) must not import them
STAGES = {"al", "bayesfc", "campaign", "events", "greenkubo", "multifidelity", "phonons"}
LOWER = {"io", "oracles", "models", "plotting"}
#: known upward imports, each with the work that removes it
ALLOWED_UPWARD = {
    # issue 21, item 3: the plugin adapters of the Bayesian force field and of multi-fidelity
    # SevenNet still live apart from their implementations
    "alkappa.models.bayesian_fc",
    "alkappa.models.sevenn_mf",
}

#: known crossings, each with the work that removes it
ALLOWED_PRIVATE = {
    # issue 21, item 2: the NequIP heat flux moves into the NequIP model plugin
    ("alkappa.greenkubo._flux", "alkappa.models._nequip_ensemble"),
}


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


def test_lower_layers_never_import_the_stages():
    upward = set()
    for module, _, tree in _modules():
        layer = module.split(".")[1] if "." in module else ""
        if layer not in LOWER or module in ALLOWED_UPWARD:
            continue
        for name in _imports(tree):
            parts = name.split(".")
            if parts[0] == "alkappa" and len(parts) > 1 and parts[1] in STAGES:
                upward.add((module, name))
    assert not upward, sorted(upward)


def test_the_rule_sees_a_crossing(tmp_path, monkeypatch):
    # the check itself can fail: a module that reaches into another package's private module
    fake = tmp_path / "alkappa" / "io"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("from alkappa.phonons._plots import thing\n")
    monkeypatch.setattr(__import__(__name__), "SRC", tmp_path)
    assert private_crossings() == {("alkappa.io.bad", "alkappa.phonons._plots")}
