"""The bad-input suite: configs, structure files, trajectories and results directories that
are wrong in one way each. Every case must be refused by the ``alkappa`` command with exit
status 1 and exactly one line on stderr that names the problem and the file, without a
traceback, and without running code the input names (a marker file must not appear).

The same checks run before any expensive work in the pipeline (``common.smk`` validates the
config with :func:`alkappa.config.load_config`), so this suite is also the pipeline's.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING

import numpy as np
import pytest
import yaml
from ase.build import bulk

from alkappa.cli import main
from alkappa.io import TrajectoryWriter

if TYPE_CHECKING:
    from pathlib import Path

BASE = {
    "materials": {
        "Cu": {"structure": {"build": {"name": "Cu", "crystalstructure": "fcc", "a": 3.6}}}
    },
    "oracle": {"name": "emt"},
}
MARKER = "ALKAPPA_BAD_INPUT_MARKER"


def _with(path: tuple[str, ...], value):
    """BASE with ``value`` set at ``path`` (a tuple of keys)."""

    def make(tmp: Path) -> dict:
        cfg = copy.deepcopy(BASE)
        node = cfg
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value(tmp) if callable(value) else value
        return cfg

    return make


def _material(entry):
    return _with(("materials",), lambda tmp: {"Cu": entry(tmp) if callable(entry) else entry})


def _structure_file(name: str, text: str):
    def make(tmp: Path) -> dict:
        (tmp / name).write_text(text)
        return {"structure": {"file": str(tmp / name)}}

    return make


def _cu(**extra):
    return {"structure": {"build": {"name": "Cu", "crystalstructure": "fcc", "a": 3.6}}, **extra}


def _cubic_cu(**extra):
    build = {"name": "Cu", "crystalstructure": "fcc", "a": 3.6, "cubic": True}
    return {"structure": {"build": build}, **extra}


# (id, config: a dict maker or raw YAML text, regex the one stderr line must match)
CONFIG_CASES = [
    ("yaml-syntax", "materials: [\n", r"not valid YAML: line 2, column 1"),
    ("yaml-tab-indent", "materials:\n\tCu: {}\n", r"not valid YAML: line \d+"),
    ("yaml-list", "- materials\n- oracle\n", r"top level must be a mapping"),
    ("yaml-scalar", "42\n", r"top level must be a mapping .* not a int"),
    ("empty-file", "", r"'materials' is a required property"),
    ("unknown-section", _with(("oracel",), {"name": "emt"}), r"oracel"),
    ("no-materials", lambda tmp: {"oracle": {"name": "emt"}}, r"'materials' is a required"),
    ("empty-materials", _with(("materials",), {}), r"materials: \{\} should be non-empty"),
    ("unknown-oracle", _with(("oracle",), {"name": "vasp9"}), r"oracle.*vasp9"),
    ("unknown-model", _with(("model",), {"name": "mace9"}), r"model\.name.*mace9"),
    (
        "model-epochs-text",
        _with(("model",), {"name": "nequip", "max_epochs": "hundred"}),
        r"model: max_epochs must be an integer >= 1, not 'hundred'",
    ),
    (
        "model-zero-layers",
        _with(("model",), {"name": "nequip", "num_layers": 0}),
        r"model: num_layers must be an integer >= 1",
    ),
    (
        "model-negative-cutoff",
        _with(("model",), {"name": "nequip", "r_max": -5.0}),
        r"model: r_max must be a positive number",
    ),
    (
        "model-unknown-option",
        _with(("model",), {"name": "nequip", "num_layer": 2}),
        r"unknown nequip model option\(s\): num_layer",
    ),
    (
        "model-loss-text",
        _with(("model",), {"name": "nequip", "loss_coeffs": {"forces": "lots"}}),
        r"loss_coeffs must be non-negative numbers",
    ),
    (
        # one member needs a one-model uncertainty (model.uncertainty: llpr)
        "ensemble-of-one",
        _with(("ensemble",), {"size": 1}),
        r"ensemble\.size: 1 member has no spread .*model\.uncertainty: llpr",
    ),
    ("negative-temperature", _with(("explore",), {"temperatures": [-300]}), r"temperatures"),
    ("timestep-text", _with(("explore",), {"timestep": "fast"}), r"explore\.timestep"),
    ("negative-max-frames", _with(("select",), {"max_frames": -1}), r"select\.max_frames"),
    (
        "min-above-max-iterations",
        _with(("convergence",), {"min_iterations": 4, "max_iterations": 2}),
        r"min_iterations: 4 is more than max_iterations 2",
    ),
    ("material-dotdot", _with(("materials",), {"..": _cu()}), r"not '\.' or '\.\.'"),
    ("material-dot", _with(("materials",), {".": _cu()}), r"not '\.' or '\.\.'"),
    (
        "negative-lattice-constant",
        _material({"structure": {"build": {"name": "Cu", "crystalstructure": "fcc", "a": -3.6}}}),
        r"structure\.build\.a: must be positive",
    ),
    (
        "build-and-file",
        _material(lambda tmp: {"structure": {"build": _cu()["structure"]["build"], "file": "x"}}),
        r"structure: give exactly one of 'file' or 'build'",
    ),
    (
        "structure-file-missing",
        _material(lambda tmp: {"structure": {"file": str(tmp / "nothere.cif")}}),
        r"nothere\.cif",
    ),
    (
        "corrupt-cif",
        _material(_structure_file("bad.cif", "data_broken\n_cell_length_a\n")),
        r"bad\.cif (cannot be read|holds no atoms)",
    ),
    ("empty-cif", _material(_structure_file("empty.cif", "")), r"empty\.cif"),
    (
        "empty-extxyz",
        _material(_structure_file("none.extxyz", '0\nLattice="3 0 0 0 3 0 0 0 3"\n')),
        r"none\.extxyz",
    ),
    (
        "overlapping-atoms",
        _material(
            _structure_file(
                "overlap.xyz",
                '2\nLattice="3.6 0 0 0 3.6 0 0 0 3.6" pbc="T T T"\nCu 0 0 0\nCu 0.1 0 0\n',
            )
        ),
        r"overlap\.xyz|closer than",
    ),
    (
        "element-the-oracle-lacks",
        _material({"structure": {"build": {"name": "Si", "crystalstructure": "diamond"}}}),
        r"Si",
    ),
    (
        "singular-supercell",
        _material(_cubic_cu(supercell=[[1, 0, 0], [0, 1, 0], [1, 0, 0]])),
        r"supercell: .*non-singular",
    ),
    (
        "huge-supercell",
        _material(_cubic_cu(supercell=[40, 40, 40])),
        r"supercell: \[40, 40, 40\] makes 256000 atoms",
    ),
    ("supercell-two-numbers", _material(_cu(supercell=[2, 2])), r"supercell"),
    (
        "ase-oracle-runs-code",
        _with(
            ("oracle",),
            lambda tmp: {
                "name": "ase",
                "calculator": "subprocess.call",
                "kwargs": {"args": f"touch {tmp / MARKER}", "shell": True},
            },
        ),
        r"oracle.*subprocess\.call",
    ),
    (
        "ase-oracle-os-system",
        _with(
            ("oracle",),
            lambda tmp: {"name": "ase", "calculator": "os.system", "kwargs": {}},
        ),
        r"oracle.*os\.system",
    ),
    (
        "ase-oracle-missing-module",
        _with(("oracle",), {"name": "ase", "calculator": "nosuchpackage.Calc"}),
        r"oracle.*nosuchpackage",
    ),
    (
        "gk-target-unreachable",
        _with(("greenkubo",), {"enabled": True, "target_error": 0.01, "max_runs": 1}),
        r"greenkubo",
    ),
    ("gk-negative-target", _with(("greenkubo",), {"target_error": -0.1}), r"target_error"),
    (
        "reference-file-missing",
        _with(("reference",), lambda tmp: {"files": [{"path": str(tmp / "ref_missing.nc")}]}),
        r"reference\.files\.0\.path: .*ref_missing\.nc",
    ),
    ("phonon-mesh-zero", _with(("phonons",), {"mesh": [0, 0, 0]}), r"phonons\.mesh"),
    ("initial-no-frames", _with(("initial",), {"n_frames": 0}), r"initial\.n_frames"),
    (
        "two-problems-at-once",
        lambda tmp: {**BASE, "ensemble": {"size": 0}, "explore": {"timestep": "fast"}},
        r"2 problems: ensemble\.size: 0 is less .*; explore\.timestep: 'fast' is not",
    ),
    (
        # past the schema: every problem of the materials and of the model plugin's options
        "plugin-and-material-problems-at-once",
        lambda tmp: {
            **BASE,
            "model": {"name": "nequip", "max_epochs": "hundred", "foo": 1},
            "convergence": {"min_iterations": 5, "max_iterations": 2},
            "reference": {"files": [{"path": str(tmp / "ref_missing.nc")}]},
        },
        r"3 problems: .*min_iterations: 5 is more than max_iterations 2; "
        r".*reference\.files\.0\.path: .*ref_missing\.nc does not exist; "
        r".*model: unknown nequip model option\(s\): foo.*; max_epochs must be an integer",
    ),
    ("retries-negative", _with(("oracle",), {"name": "emt", "retries": -1}), r"retries"),
]


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("config", "message"), [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES]
)
def test_bad_config_is_one_line(tmp_path, capsys, monkeypatch, config, message):
    monkeypatch.chdir(tmp_path)  # a relative path the input might write to stays here
    path = tmp_path / "campaign.yaml"
    if isinstance(config, str):
        path.write_text(config)
    else:
        path.write_text(yaml.safe_dump(config(tmp_path)))
    assert main(["validate", str(path)]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("alkappa: invalid config: ")
    assert "campaign.yaml" in line, line  # the file
    assert re.search(message, line), line  # the problem
    assert not (tmp_path / MARKER).exists(), "validation ran code the config names"


# --------------------------------------------------------------------------------------------
# trajectories and results directories


def _trajectory(path: Path, *, dt: float = 4.0, n: int = 64, flux: bool = True) -> Path:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    rng = np.random.default_rng(0)
    writer = TrajectoryWriter(path, atoms, attrs={"timestep": dt, "temperature": 300.0})
    for i in range(n):
        frame = {
            "positions": atoms.positions + 0.02 * rng.standard_normal((4, 3)),
            "velocities": 0.01 * rng.standard_normal((4, 3)),
            "temperature": 300.0,
        }
        if flux:
            frame["heat_flux"] = 1e-4 * rng.standard_normal(3)
        writer.append(i * dt, **frame)
    writer.flush()
    return path


def _text(path: Path, text: str = "not a netCDF file\n") -> Path:
    path.write_text(text)
    return path


# (id, argv maker (tmp -> list of str), regex of the line, file name the line must contain)
CLI_CASES = [
    ("gk-missing-file", lambda t: ["gk", str(t / "run0.nc")], r"does not exist", "run0.nc"),
    ("gk-not-netcdf", lambda t: ["gk", str(_text(t / "run.nc"))], r"not a netCDF", "run.nc"),
    (
        "gk-no-heat-flux",
        lambda t: ["gk", str(_trajectory(t / "noflux.nc", flux=False))],
        r"no 'heat_flux' variable",
        "noflux.nc",
    ),
    (
        "gk-correction-without-force-constants",
        lambda t: ["gk", str(_trajectory(t / "plain.nc", n=400)), "--correction"],
        r"no force constants",
        "plain.nc",
    ),
    (
        "gk-force-constants-missing",
        lambda t: ["gk", str(_trajectory(t / "a.nc")), "--force-constants", str(t / "fc.npy")],
        r"does not exist",
        "fc.npy",
    ),
    (
        "gk-force-constants-wrong-shape",
        lambda t: [
            "gk",
            str(_trajectory(t / "a.nc")),
            "--force-constants",
            str(_npy(t / "fc.npy", np.zeros((3, 3)))),
        ],
        r"shape|atoms",
        "fc.npy",
    ),
    (
        "gk-different-time-steps",
        lambda t: [
            "gk",
            str(_trajectory(t / "dt4.nc", n=200)),
            str(_trajectory(t / "dt2.nc", dt=2.0, n=200)),
            "--window-fs",
            "10",
        ],
        r"different time steps",
        ".nc",
    ),
    ("events-missing-file", lambda t: ["events", str(t / "md.nc")], r"does not exist", "md.nc"),
    ("events-not-netcdf", lambda t: ["events", str(_text(t / "md.nc"))], r"not a netCDF", "md.nc"),
    (
        "anharmonicity-no-harmonic-forces",
        lambda t: ["anharmonicity", str(_trajectory(t / "md.nc"))],
        r"force",
        "md.nc",
    ),
    (
        "anharmonicity-not-netcdf",
        lambda t: ["anharmonicity", str(_text(t / "md.nc"))],
        r"not a netCDF",
        "md.nc",
    ),
    ("oracle-calls-no-directory", lambda t: ["oracle-calls", str(t / "Cu")], r"not a dir", "Cu"),
    (
        "oracle-retry-no-store",
        lambda t: ["oracle-retry", str(_mkdir(t / "results" / "Cu"))],
        r"no oracle store",
        "Cu",
    ),
]


def _npy(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


@pytest.mark.parametrize(
    ("argv", "message", "name"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES]
)
def test_bad_trajectory_or_directory_is_one_line(
    tmp_path, capsys, monkeypatch, argv, message, name
):
    monkeypatch.chdir(tmp_path)
    args = argv(tmp_path)
    assert main(args) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("alkappa: ") and name in line, line
    assert re.search(message, line), line
    assert not (tmp_path / "greenkubo.nc").exists()  # nothing written for a refused input


def test_the_suite_has_at_least_40_cases():
    assert len(CONFIG_CASES) + len(CLI_CASES) >= 40
    ids = [c[0] for c in CONFIG_CASES + CLI_CASES]
    assert len(ids) == len(set(ids))
