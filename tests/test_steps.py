"""The one entry of every rule (``workflow/scripts/step.py`` -> :mod:`alkappa.steps`): each
rule has a step, each step a rule, and the step imports what it names; the logic the rule
scripts used to hold (warm start, the events' trajectory order) as library functions."""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from alkappa.al.steps import warm_start_checkpoint
from alkappa.events.steps import mlip_md_by_model
from alkappa.io import write_json
from alkappa.steps import STEPS, Step, run_rule

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def script_rules() -> dict[str, str]:
    """Rule (or checkpoint) name -> its ``script:`` path, from ``workflow/rules/*.smk``."""
    found = {}
    for path in sorted((ROOT / "workflow/rules").glob("*.smk")):
        text = path.read_text()
        starts = list(re.finditer(r"^(rule|checkpoint)\s+(\w+)\s*:", text, flags=re.M))
        for i, m in enumerate(starts):
            end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
            script = re.search(r"^\s+script:\s*\n\s+\"([^\"]+)\"", text[m.end() : end], re.M)
            if script:
                found[m.group(2)] = script.group(1)
    return found


def test_every_rule_runs_the_one_entry_and_has_a_step():
    rules = script_rules()
    assert len(rules) > 40  # the parser sees the workflow
    assert set(rules.values()) == {"../scripts/step.py"}
    assert (ROOT / "workflow/scripts/step.py").is_file()
    assert not (ROOT / "scripts").exists()
    assert set(rules) == set(STEPS), set(rules) ^ set(STEPS)


def _defined_names(module: str) -> set[str]:
    """Top-level names of a module of the package, from its source (nothing imported)."""
    path = SRC / Path(*module.split("."))
    tree = ast.parse(
        (path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).read_text()
    )
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


@pytest.mark.parametrize("rule", sorted(STEPS))
def test_a_step_imports_only_from_its_stage_what_the_stage_defines(rule):
    found = STEPS[rule]
    tree = ast.parse(textwrap.dedent(inspect.getsource(found.call)))
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom | ast.Import)]
    assert imports, f"{rule}: the step imports its stage function inside the adapter"
    for node in imports:
        # run_rule imports `module` before the log opens; the adapter must not need another
        assert isinstance(node, ast.ImportFrom) and node.module == found.module, rule
        missing = {a.name for a in node.names} - _defined_names(found.module)
        assert not missing, f"{rule}: {found.module} has no {missing}"


class _Named(list):
    """A small stand-in for Snakemake's named lists (``job.output.result``, ``keys()``)."""

    def __init__(self, **items):
        super().__init__(items.values())
        self._names = items
        for name, value in items.items():
            setattr(self, name, value)

    def keys(self):
        return self._names.keys()

    def get(self, name, default=None):
        return self._names.get(name, default)


def test_run_rule_calls_the_step_in_the_rules_log(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setitem(
        STEPS, "toy", Step("alkappa.io", lambda job, settings: calls.append((job, settings)))
    )
    log = tmp_path / "toy.log"
    job = SimpleNamespace(
        rule="toy",
        input=_Named(),
        output=_Named(result=str(tmp_path / "out.json")),
        params=_Named(settings={"model": {"name": "x"}}),
        wildcards=_Named(),
        log=[str(log)],
        threads=1,
    )
    run_rule(job)
    assert calls == [(job, {"model": {"name": "x"}})]
    assert log.read_text().strip().endswith(f"wrote {tmp_path / 'out.json'}")
    assert log.read_text().startswith("toy: finished in ")


def test_run_rule_refuses_a_rule_without_a_step():
    job = SimpleNamespace(rule="no_such_rule")
    with pytest.raises(KeyError, match="no_such_rule"):
        run_rule(job)


def test_warm_start_from_the_previous_member_record(tmp_path):
    record = tmp_path / "iter_0/ensemble/member_1/member.json"
    record.parent.mkdir(parents=True)
    write_json(record, {"model_file": "model.pt"})
    assert warm_start_checkpoint(str(record)) == record.parent / "model.pt"
    assert warm_start_checkpoint([str(record)]) == record.parent / "model.pt"
    # no record (first iteration, a baseline, warm start off): a cold start
    assert warm_start_checkpoint([]) is None
    assert warm_start_checkpoint("") is None


def test_mlip_trajectories_by_model_then_temperature():
    files = [f"{m}/md_T{t}.nc" for m in ("al", "random") for t in ("300", "600")]
    assert mlip_md_by_model(files, ["al", "random"], ["300", "600"]) == {
        "al": {"300": "al/md_T300.nc", "600": "al/md_T600.nc"},
        "random": {"300": "random/md_T300.nc", "600": "random/md_T600.nc"},
    }
    assert mlip_md_by_model([], [], ["300"]) == {}
    with pytest.raises(ValueError, match="3 MLIP trajectories for 2 models"):
        mlip_md_by_model(files[:3], ["al", "random"], ["300", "600"])
