"""Running at scale: conda environments of the rules, the SLURM profile, the campaign configs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
ENV_NAMES = ("oracle", "mlip", "phonons", "analysis")
#: directives that make a rule run something (a rule without any is a target, like `all`)
ACTIONS = ("script", "shell", "run", "wrapper", "notebook", "cwl")


def smk_files() -> list[Path]:
    return [ROOT / "Snakefile", *sorted((ROOT / "workflow/rules").glob("*.smk"))]


def rule_blocks(path: Path) -> list[tuple[str, str]]:
    """(name, text) of every rule and checkpoint of a Snakemake file; anonymous rules (made
    in loops) are named by their `name:` directive."""
    text = path.read_text()
    starts = [m for m in re.finditer(r"^(\s*)(rule|checkpoint)\s*(\w*)\s*:", text, flags=re.M)]
    blocks = []
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        body = text[m.end() : end]
        name = m.group(3)
        if not name:
            # e.g. `"production" if ... else f"production_{_runs}runs"`: its first name
            found = re.search(r"name:\s*\n\s*[\"'](\w+)", body)
            name = found.group(1) if found else "<anonymous>"
        blocks.append((name, body))
    return blocks


def directive(body: str, name: str) -> str | None:
    """The value of a directive (on its line or the next) in a rule body."""
    m = re.search(rf"^\s+{name}:[ \t]*(\S.*)?\n(\s+(\S.*))?", body, flags=re.M)
    if m is None:
        return None
    return (m.group(1) or m.group(3) or "").strip()


def all_rules() -> dict[str, str]:
    return {name: body for path in smk_files() for name, body in rule_blocks(path)}


def test_rule_parser_sees_the_workflow():
    # the parser must find the rules it checks (else the next test would pass on nothing)
    rules = all_rules()
    for name in ("all", "label", "train_member", "select", "decide", "kappa", "campaign_summary"):
        assert name in rules
    assert "production" in rules
    assert directive(rules["label"], "conda") == '"../envs/oracle.yaml"'
    assert directive(rules["all"], "conda") is None


def test_every_rule_that_runs_something_has_a_conda_env():
    missing, wrong = [], []
    for name, body in all_rules().items():
        if not any(directive(body, action) is not None for action in ACTIONS):
            continue
        env = directive(body, "conda")
        if env is None:
            missing.append(name)
            continue
        env_file = Path(env.strip("\"'"))
        if env_file.parent.name != "envs" or env_file.stem not in ENV_NAMES:
            wrong.append((name, env))
            continue
        assert (ROOT / "workflow/envs" / env_file.name).is_file()
    assert not missing, f"rules without conda: {missing}"
    assert not wrong, f"rules with an unknown environment: {wrong}"


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def env_requirements(name: str) -> tuple[dict, list[str]]:
    env = yaml.safe_load((ROOT / "workflow/envs" / f"{name}.yaml").read_text())
    assert "conda-forge" in env["channels"]
    pip = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, f"envs/{name}.yaml: one pip section expected"
    return env, pip[0]


@pytest.mark.parametrize("name", ENV_NAMES)
def test_environment_pins_what_pyproject_pins(name):
    project = pyproject()["project"]
    ours = {canonicalize_name(r.name): r for r in map(Requirement, project["dependencies"])}
    pinned = {n: r for n, r in ours.items() if any(s.operator == "==" for s in r.specifier)}
    assert "torch" in pinned  # the pin that matters most: an unpinned torch pulls CUDA builds
    env, pip = env_requirements(name)
    # the package itself, from the checkout (relative to workflow/envs/)
    assert "-e ../../" in pip
    listed = {canonicalize_name(r.name): r for r in (Requirement(p) for p in pip if p[0] != "-")}
    for dep, req in pinned.items():
        assert dep in listed, f"envs/{name}.yaml does not pin {req}"
        assert listed[dep].specifier == req.specifier, f"envs/{name}.yaml: {listed[dep]} != {req}"
    # whatever the environment shares with pyproject, it asks the same of
    for dep, req in listed.items():
        if dep in ours:
            assert req.specifier == ours[dep].specifier, f"envs/{name}.yaml: {req} != {ours[dep]}"
    # a Python the package supports
    python = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python=")]
    minimum = project["requires-python"].removeprefix(">=")
    version = python[0].split("=")[1]
    assert tuple(map(int, version.split("."))) >= tuple(map(int, minimum.split(".")))


def test_slurm_profile_names_real_rules_and_scales_with_attempt():
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert profile["retries"] >= 1
    rules = all_rules()
    names = set(rules)
    for rule, resources in profile["set-resources"].items():
        assert rule in names, f"set-resources names no rule {rule!r}"
        for key in ("mem_mb", "runtime"):
            first = eval(str(resources[key]), {"attempt": 1})
            second = eval(str(resources[key]), {"attempt": 2})
            assert 0 < first < second, (rule, key)
    # labelling jobs are batched through a group that the label rule really is in
    groups = dict(entry.split("=") for entry in profile["group-components"])
    assert directive(rules["label"], "group") == '"label"'
    assert int(groups["label"]) > 1


def test_slurm_profile_gives_every_job_its_resources(tmp_path):
    """A dry run through the profile: every job gets memory and wall time from it (attempt 1),
    and a training job its GPU when the config asks."""
    cfg = yaml.safe_load((ROOT / "config/test.yaml").read_text())
    cfg["results"] = str(tmp_path / "results")
    cfg["resources"] = {"train_gpus": 1}
    cfgfile = tmp_path / "config.yaml"
    cfgfile.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [SNAKEMAKE, "-n", "--profile", "profiles/slurm", "--configfile", str(cfgfile)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = re.findall(r"^rule (\w+):\n(?:.*\n)*?\s+resources: (.*)$", proc.stdout, flags=re.M)
    assert len(jobs) >= 10
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    for rule, resources in jobs:
        mem = int(re.search(r"mem_mb=(\d+)", resources).group(1))
        runtime = int(re.search(r"runtime=(\d+)", resources).group(1))
        expected = profile["set-resources"].get(rule, profile["default-resources"])
        assert mem == eval(str(expected["mem_mb"]), {"attempt": 1}), rule
        assert runtime == eval(str(expected["runtime"]), {"attempt": 1}), rule
        if rule == "train_member":
            assert "gpu=1" in resources


@pytest.mark.parametrize(
    ("config", "materials"),
    [
        ("config/seeds.yaml", ["CuI", "AgGaSe2", "Si", "c-BAs", "SnSe"]),
        ("config/studies/kang2024_fhiaims.yaml", ["CuI"]),
    ],
)
def test_campaign_configs_list_every_materials_jobs(config, materials, tmp_path):
    # results elsewhere: finished results in the checkout would hide jobs from the dry run
    proc = subprocess.run(
        [
            SNAKEMAKE,
            "-n",
            "--cores",
            "1",
            "--configfile",
            config,
            "--config",
            f"results={tmp_path / 'results'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for m in materials:
        for rule in ("prepare_structure", "initial_data", "train_member"):
            assert re.search(
                rf"rule {rule}:\n(?:.*\n)*?\s+wildcards: material={re.escape(m)}\b", proc.stdout
            ), (m, rule)
    assert "rule campaign_summary:" in proc.stdout


def test_every_report_item_has_a_caption_and_the_readme_redraws_every_figure_rule():
    figure_rules = set()
    for name, body in all_rules().items():
        for caption in re.findall(r'caption="([^"]+)"', body):
            assert (ROOT / "workflow/rules" / caption).resolve().is_file(), (name, caption)
        if re.search(r'report\(\s*f?"[^"]+\.png"', body):
            figure_rules.add(name)
    assert {"summary", "campaign_summary", "green_kubo"} <= figure_rules
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"`snakemake figures --forcerun ([^`]+)`", readme).group(1).split()
    # every figure rule but `summary` (it also exports the model: forcing it reruns stages)
    assert set(command) == figure_rules - {"summary"}


def test_seed_structures_have_their_space_groups_and_bad_ones_are_named():
    import spglib

    from alkappa.structure import read_unit_cell

    expected = {"CuI": 216, "AgGaSe2": 122, "Si": 227, "c-BAs": 216, "SnSe": 62}
    formula = {"CuI": "CuI", "AgGaSe2": "AgGaSe2", "Si": "Si", "c-BAs": "AsB", "SnSe": "SeSn"}
    materials = yaml.safe_load((ROOT / "config/seeds.yaml").read_text())["materials"]
    assert list(materials) == list(expected)
    for name, entry in materials.items():
        atoms = read_unit_cell(entry["structure"])
        cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
        assert spglib.get_symmetry_dataset(cell, symprec=1e-3).number == expected[name], name
        assert atoms.get_chemical_formula(empirical=True) == formula[name]
    with pytest.raises(ValueError, match=r"ase.spacegroup.crystal\(.*\) failed"):
        read_unit_cell(
            {
                "crystal": {
                    "symbols": ["Sn"],
                    "basis": [[0, 0, 0]],
                    "spacegroup": 999,
                    "cellpar": [4, 4, 4, 90, 90, 90],
                }
            }
        )
