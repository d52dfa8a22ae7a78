"""The alkappa command line."""

from __future__ import annotations

import shutil

from ase.build import bulk
from ase.calculators.emt import EMT

from alkappa.al.explore import run_exploration
from alkappa.cli import main
from alkappa.labelling import label_frames
from alkappa.oracles import get_oracle


def test_plugins_lists_builtins(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "alkappa.oracles:" in out and "tblite" in out and "torchscript-nequip" in out
    models = next(line for line in out.splitlines() if line.startswith("alkappa.models:"))
    assert {"nequip", "bayesian-fc", "sevenn-mf"} <= set(
        models.split(":", 1)[1].replace(",", " ").split()
    )


def test_oracle_calls_counts_the_store(tmp_path, capsys):
    spec = {"name": "emt"}
    frames = []
    for i in range(3):
        a = bulk("Cu", cubic=True)
        a.positions[0, 0] += 0.01 * (i + 1)
        frames.append(a)
    store = tmp_path / "Cu" / "oracle"
    label_frames(frames[:2], get_oracle(spec), spec, store, purpose="initial", progress=False)
    label_frames(frames, get_oracle(spec), spec, store, purpose="al", progress=False)
    assert main(["oracle-calls", str(tmp_path / "Cu")]) == 0
    lines = dict(line.split() for line in capsys.readouterr().out.splitlines())
    assert lines == {"initial": "2", "al": "1", "total": "3"}
    assert main(["oracle-calls", str(tmp_path / "missing")]) == 1

    # reference MD: every step of a finished run is one call; an unfinished run not yet
    atoms = bulk("Cu", cubic=True)
    settings = {
        "steps": 6,
        "timestep": 2.0,
        "friction": 0.02,
        "log_interval": 3,
        "seed": 0,
        "max_force": 25.0,
        "min_distance_fraction": 0.6,
        "max_temperature_factor": 3.0,
    }
    ref = tmp_path / "Cu" / "reference"
    ref.mkdir()
    run_exploration(
        atoms,
        EMT(),
        ref / "md_T300.nc",
        temperature=300.0,
        settings=settings,
        nn_distance=2.55,
        progress=False,
    )
    shutil.copy(ref / "md_T300.nc", ref / "md_T600.partial.nc")
    assert main(["oracle-calls", str(tmp_path / "Cu")]) == 0
    lines = dict(line.split() for line in capsys.readouterr().out.splitlines())
    assert lines == {"initial": "2", "al": "1", "reference-md": "7", "total": "10"}
