"""extxyz datasets with provenance, netCDF trajectories, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from alkappa.io import (
    TrajectoryWriter,
    atomic_path,
    labels,
    read_dataset,
    read_trajectory,
    with_labels,
    write_dataset,
)


def test_dataset_roundtrip_keeps_labels_and_provenance(tmp_path):
    atoms = bulk("Cu", cubic=True)
    rng = np.random.default_rng(0)
    frames = []
    for i in range(3):
        f = with_labels(atoms, -1.0 * i, rng.normal(size=(4, 3)), rng.normal(size=6))
        f.info.update({"fidelity": "emt", "iteration": i, "source": "al", "time": 12.5 * i})
        frames.append(f)
    path = tmp_path / "d.extxyz"
    write_dataset(path, frames)
    back = read_dataset(path)
    assert len(back) == 3
    for a, b in zip(frames, back, strict=True):
        la, lb = labels(a), labels(b)
        assert lb["energy"] == pytest.approx(la["energy"])
        np.testing.assert_allclose(lb["forces"], la["forces"])
        np.testing.assert_allclose(lb["stress"], la["stress"])
        for key in ("fidelity", "iteration", "source", "time"):
            assert b.info[key] == a.info[key]


def test_empty_dataset(tmp_path):
    write_dataset(tmp_path / "e.extxyz", [])
    assert read_dataset(tmp_path / "e.extxyz") == []


def test_atomic_path_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_trajectory_uses_fhi_vibes_names(tmp_path):
    atoms = bulk("Cu", cubic=True)
    w = TrajectoryWriter(tmp_path / "t.nc", atoms, attrs={"temperature_target": 300.0})
    for k in range(4):
        w.append(
            5.0 * k,
            positions=atoms.positions + k,
            forces=np.zeros((4, 3)),
            velocities=np.ones((4, 3)),
            energy_potential=-k,
            temperature=300.0 + k,
            stress=np.eye(3),
            cell=np.asarray(atoms.cell),
            uncertainty_force_max=0.1 * k,
        )
    w.flush()
    ds = read_trajectory(tmp_path / "t.nc")
    assert ds.positions.dims == ("time", "I", "a")
    assert ds.stress.dims == ("time", "a", "b")
    assert ds.energy_potential.dims == ("time",)
    np.testing.assert_allclose(ds.time.values, [0, 5, 10, 15])
    np.testing.assert_allclose(ds.uncertainty_force_max.values, [0, 0.1, 0.2, 0.3])
    assert list(ds.attrs["symbols"]) == ["Cu"] * 4
    assert ds.attrs["volume"] == pytest.approx(atoms.get_volume())
    assert ds.positions_reference.shape == (4, 3)


def test_trajectory_copies_arrays_that_change_in_place(tmp_path):
    # MD integrators move atoms.positions in place: each frame must keep its own values
    atoms = bulk("Cu", cubic=True)
    w = TrajectoryWriter(tmp_path / "t.nc", atoms)
    positions = atoms.positions
    for k in range(3):
        w.append(float(k), positions=positions)
        positions += 1.0
    w.flush()
    ds = read_trajectory(tmp_path / "t.nc")
    np.testing.assert_allclose(ds.positions.values[2] - ds.positions.values[0], 2.0)


def test_ensemble_members_stay_inside_their_model_directory(tmp_path):
    import pytest

    from alkappa.io import write_json
    from alkappa.models import ensemble_members

    model = tmp_path / "model"
    model.mkdir()
    write_json(model / "ensemble.json", {"members": ["member_0.nequip.zip"]})
    assert ensemble_members(model) == [model / "member_0.nequip.zip"]
    for bad in ("../elsewhere.nequip.zip", str(tmp_path / "abs.nequip.zip"), "a/../../b"):
        write_json(model / "ensemble.json", {"members": ["member_0.nequip.zip", bad]})
        with pytest.raises(ValueError, match=r"ensemble\.json: member .* lies outside"):
            ensemble_members(model)
    write_json(model / "ensemble.json", {"members": []})
    with pytest.raises(ValueError, match="non-empty list"):
        ensemble_members(model)
