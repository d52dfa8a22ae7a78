"""Importing reference data (FHI-vibes netCDF and son, extxyz) and the time-decorrelated split.

The FHI-vibes fixtures are written here with the variable names, dimensions, attributes and
units of FHI-vibes' ``get_trajectory_dataset`` and ``step2file`` (see the docstring of
:mod:`alkappa.io.reference` for the sources), from EMT-labelled structures whose ASE stress is
the ground truth for the sign convention.
"""

from __future__ import annotations

import json
import warnings

import ase.io
import numpy as np
import pytest
import xarray as xr
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.stress import full_3x3_to_voigt_6_stress

from alkappa.io.dataset import labels
from alkappa.io.reference import read_reference, time_decorrelated_split
from alkappa.io.trajectory import TrajectoryWriter

TIMESTEP_FS = 5.0
T_NOMINAL = 300.0


def _md_like_frames(n: int, seed: int = 0):
    """Rattled, strained 4-atom Cu cells with velocities; EMT labels computed on the fly."""
    rng = np.random.default_rng(seed)
    base = bulk("Cu", "fcc", cubic=True)
    frames = []
    for _ in range(n):
        atoms = base.copy()
        eps = 0.01 * rng.uniform(-1, 1, size=(3, 3))
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
        atoms.positions += rng.normal(scale=0.05, size=(4, 3))
        # Maxwell-Boltzmann velocities (ASE units) at T_NOMINAL
        kt = units.kB * T_NOMINAL
        sd = np.sqrt(kt / atoms.get_masses())[:, None]
        atoms.set_velocities(rng.normal(size=(4, 3)) * sd)
        atoms.calc = EMT()
        frames.append(atoms)
    return frames


def _vibes_dataset(frames, broken: int | None = None) -> xr.Dataset:
    """An FHI-vibes ``trajectory.nc`` as ``vibes output trajectory`` writes it.

    Frame 2 has no stress (NaN, as in MD steps without stress); frame ``broken`` a NaN force.
    """
    ref = frames[0]
    n = len(frames)
    stress_pot = np.array([a.get_stress(voigt=False) for a in frames])
    stress_full = np.array([a.get_stress(voigt=False, include_ideal_gas=True) for a in frames])
    # stress is computed only every few steps in FHI-vibes MD: NaN elsewhere
    stress_pot[2] = np.nan
    stress_full[2] = np.nan
    atoms_reference = {
        "pbc": [True, True, True],
        "cell": ref.cell.tolist(),
        "positions": ref.positions.tolist(),
        "symbols": ref.get_chemical_symbols(),
        "masses": ref.get_masses().tolist(),
        "info": {},
    }
    raw_metadata = {
        "MD": {
            "type": "molecular-dynamics",
            "md-type": "Langevin",
            "timestep": TIMESTEP_FS * units.fs,
            "temperature_K": T_NOMINAL,
            "friction": 0.02,
            "fs": units.fs,
            "kB": units.kB,
            "dt": TIMESTEP_FS * units.fs,
        }
    }
    tia, ta, tab = ("time", "I", "a"), ("time",), ("time", "a", "b")
    forces = np.array([a.get_forces() for a in frames])
    if broken is not None:
        forces[broken, 1, 2] = np.nan
    data = {
        "positions_reference": (("I", "a"), ref.positions),
        "lattice_reference": (("a", "b"), ref.cell.array),
        "positions": (tia, np.array([a.positions for a in frames])),
        "displacements": (tia, np.array([a.positions - ref.positions for a in frames])),
        # FHI-vibes stores atoms.get_velocities(): ASE units
        "velocities": (tia, np.array([a.get_velocities() for a in frames])),
        "momenta": (tia, np.array([a.get_momenta() for a in frames])),
        "forces": (tia, forces),
        "energy_kinetic": (ta, np.array([a.get_kinetic_energy() for a in frames])),
        "energy_potential": (ta, np.array([a.get_potential_energy() for a in frames])),
        "temperature": (ta, np.array([a.get_temperature() for a in frames])),
        "cell": (tab, np.array([a.cell.array for a in frames])),
        "volume": (ta, np.array([a.get_volume() for a in frames])),
        "stress": (tab, stress_full),
        "stress_kinetic": (tab, stress_full - stress_pot),
        "stress_potential": (tab, stress_pot),
        "pressure": (ta, -np.trace(stress_full, axis1=1, axis2=2) / 3),
    }
    attrs = {
        "name": "trajectory",
        "system_name": "Cu",
        "natoms": len(ref),
        "time_unit": "fs",
        "timestep": TIMESTEP_FS,
        "nsteps": n - 1,
        "symbols": ref.get_chemical_symbols(),
        "masses": ref.get_masses(),
        "atoms_reference": json.dumps(atoms_reference),
        "volume": float(np.mean([a.get_volume() for a in frames])),
        "raw_metadata": json.dumps(raw_metadata),
        "hash": "0" * 40,
    }
    coords = {"time": np.arange(n) * TIMESTEP_FS}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def test_vibes_netcdf_values_units_and_stress_convention(tmp_path):
    frames = _md_like_frames(6)
    path = tmp_path / "trajectory.nc"
    _vibes_dataset(frames, broken=4).to_netcdf(path)

    with pytest.warns(RuntimeWarning, match="skipped 1 of 6"):
        read = read_reference(path, fidelity="emt")
    kept = [0, 1, 2, 3, 5]  # frame 4 has a NaN force
    assert len(read) == len(kept)
    for k, atoms in zip(kept, read, strict=True):
        src = frames[k]
        lab = labels(atoms)
        assert atoms.get_chemical_symbols() == src.get_chemical_symbols()
        np.testing.assert_allclose(atoms.positions, src.positions)
        np.testing.assert_allclose(atoms.cell.array, src.cell.array)
        assert lab["energy"] == pytest.approx(src.get_potential_energy())
        np.testing.assert_allclose(lab["forces"], src.get_forces())
        # velocities in ASE units, unchanged (FHI-vibes stores get_velocities())
        np.testing.assert_allclose(atoms.get_velocities(), src.get_velocities())
        if k == 2:
            assert "stress" not in lab  # not computed in that step: no label, frame kept
        else:
            # the label is stress_potential, i.e. exactly ASE's (sign and eV/Å^3) stress, not
            # the full stress with the kinetic part
            np.testing.assert_allclose(lab["stress"], src.get_stress(voigt=True), atol=1e-12)
            full = full_3x3_to_voigt_6_stress(src.get_stress(voigt=False, include_ideal_gas=True))
            assert not np.allclose(lab["stress"], full)
        assert atoms.info["time"] == pytest.approx(k * TIMESTEP_FS)
        assert atoms.info["temperature"] == T_NOMINAL  # nominal, from raw_metadata["MD"]
        assert atoms.info["temperature_kinetic"] == pytest.approx(src.get_temperature())
        assert atoms.info["source"] == "reference"
        assert atoms.info["fidelity"] == "emt"
        assert atoms.info["trajectory"] == str(path)


def test_vibes_netcdf_older_ase_kt_in_ev_and_no_stress_potential(tmp_path):
    frames = _md_like_frames(3, seed=1)
    ds = _vibes_dataset(frames).drop_vars(["stress_potential", "stress_kinetic", "stress"])
    ds["stress"] = (("time", "a", "b"), np.array([a.get_stress(voigt=False) for a in frames]))
    md = json.loads(ds.attrs["raw_metadata"])["MD"]
    del md["temperature_K"]
    md["temperature"] = 450.0 * units.kB  # older ASE Langevin.todict(): kT in eV
    ds.attrs["raw_metadata"] = json.dumps({"MD": md})
    path = tmp_path / "old.nc"
    ds.to_netcdf(path)
    read = read_reference(path)
    assert len(read) == 3
    assert read[0].info["temperature"] == pytest.approx(450.0)
    assert read[0].info["fidelity"] == "reference"
    np.testing.assert_allclose(labels(read[1])["stress"], frames[1].get_stress(), atol=1e-12)


def test_alkappa_exploration_trajectory_velocities_in_a_per_fs(tmp_path):
    frames = _md_like_frames(3, seed=2)
    path = tmp_path / "T300.nc"
    writer = TrajectoryWriter(path, reference=frames[0], attrs={"temperature_target": 300.0})
    for k, atoms in enumerate(frames):
        writer.append(
            k * 2.0,
            positions=atoms.positions,
            velocities=atoms.get_velocities() * units.fs,  # Å/fs
            forces=atoms.get_forces(),
            energy_potential=atoms.get_potential_energy(),
            temperature=atoms.get_temperature(),
            stress=atoms.get_stress(voigt=False),
            cell=atoms.cell.array,
        )
    writer.flush()
    read = read_reference(path)
    assert [a.info["time"] for a in read] == [0.0, 2.0, 4.0]
    for atoms, src in zip(read, frames, strict=True):
        # detected from the temperature: Å/fs converted back to ASE units
        np.testing.assert_allclose(atoms.get_velocities(), src.get_velocities(), rtol=1e-10)
        assert atoms.info["temperature"] == 300.0
        np.testing.assert_allclose(labels(atoms)["stress"], src.get_stress(), atol=1e-12)


def _son_text(frames, *, kt_ev: float) -> str:
    """An FHI-vibes ``trajectory.son``: metadata, ``===``, then records each ending ``---``."""
    ref = frames[0]
    metadata = {
        "MD": {
            "type": "molecular-dynamics",
            "md-type": "Langevin",
            "timestep": TIMESTEP_FS * units.fs,
            "temperature": kt_ev,
            "friction": 0.02,
            "fs": units.fs,
            "kB": units.kB,
            "dt": TIMESTEP_FS * units.fs,
        },
        "calculator": {"calculator": "EMT", "calculator_parameters": {}},
        "atoms": {
            "pbc": [True, True, True],
            "cell": ref.cell.tolist(),
            "positions": ref.positions.tolist(),
            # run-length reduced as helpers.lists.reduce_list writes them
            "symbols": [[4, "Cu"]],
            "masses": [[4, float(ref.get_masses()[0])]],
            "info": {},
        },
        "vibes": {"version": "1.0.5"},
    }
    parts = [json.dumps(metadata, indent=1), "\n===\n"]
    for k, atoms in enumerate(frames):
        record = {
            "atoms": {
                "pbc": [True, True, True],
                "cell": atoms.cell.tolist(),
                "positions": atoms.positions.tolist(),
                "velocities": atoms.get_velocities().tolist(),
                "symbols": [[4, "Cu"]],
                "masses": [[4, float(atoms.get_masses()[0])]],
                "info": {"nsteps": 2 * k, "dt": TIMESTEP_FS * units.fs},
            },
            "calculator": {
                "energy": atoms.get_potential_energy(),
                "free_energy": atoms.get_potential_energy(),
                "forces": atoms.get_forces().tolist(),
                "stress": atoms.get_stress(voigt=False).tolist(),  # 3x3, as results2dict
            },
        }
        parts += [json.dumps(record, indent=1), "\n---\n"]
    parts.append('{"atoms": {"positions": [[0.0, ')  # a record cut off by a killed run
    return "".join(parts)


def test_vibes_son_values_units_and_time(tmp_path):
    frames = _md_like_frames(4, seed=3)
    path = tmp_path / "trajectory.son"
    path.write_text(_son_text(frames, kt_ev=600.0 * units.kB))
    read = read_reference(path)
    assert len(read) == 4
    for k, (atoms, src) in enumerate(zip(read, frames, strict=True)):
        lab = labels(atoms)
        assert atoms.get_chemical_symbols() == ["Cu"] * 4
        np.testing.assert_allclose(atoms.get_masses(), src.get_masses())
        np.testing.assert_allclose(atoms.positions, src.positions)
        np.testing.assert_allclose(atoms.cell.array, src.cell.array)
        assert lab["energy"] == pytest.approx(src.get_potential_energy())
        np.testing.assert_allclose(lab["forces"], src.get_forces())
        np.testing.assert_allclose(lab["stress"], src.get_stress(voigt=True), atol=1e-12)
        np.testing.assert_allclose(atoms.get_velocities(), src.get_velocities())
        # time = nsteps * dt / fs = 2k steps of 5 fs
        assert atoms.info["time"] == pytest.approx(2 * k * TIMESTEP_FS)
        assert atoms.info["temperature"] == pytest.approx(600.0)
        assert atoms.info["source"] == "reference"


def test_extxyz_values_provenance_and_skipping(tmp_path):
    frames = []
    for k, atoms in enumerate(_md_like_frames(4, seed=4)):
        out = atoms.copy()
        out.calc = SinglePointCalculator(
            out,
            energy=atoms.get_potential_energy(),
            forces=atoms.get_forces(),
            stress=atoms.get_stress(),
        )
        out.info.update({"time": 10.0 * k, "temperature": 500.0})
        frames.append(out)
    frames[1].calc.results["energy"] = float("nan")  # skipped
    unlabelled = frames[0].copy()
    unlabelled.calc = None  # skipped: no labels at all
    path = tmp_path / "ref.extxyz"
    ase.io.write(path, [*frames, unlabelled], format="extxyz")

    with pytest.warns(RuntimeWarning, match="skipped 2 of 5"):
        read = read_reference(path, fidelity="pbe")
    assert len(read) == 3
    for atoms, src in zip(read, [frames[0], frames[2], frames[3]], strict=True):
        lab, ref = labels(atoms), labels(src)
        assert lab["energy"] == pytest.approx(ref["energy"])
        np.testing.assert_allclose(lab["forces"], ref["forces"])
        np.testing.assert_allclose(lab["stress"], ref["stress"])
        assert atoms.info["time"] == src.info["time"]
        assert atoms.info["temperature"] == 500.0
        assert atoms.info["fidelity"] == "pbe"
        assert atoms.info["source"] == "reference"
    # an explicit temperature overrides the file's
    with pytest.warns(RuntimeWarning, match="skipped 2"):
        assert read_reference(path, temperature=300.0)[0].info["temperature"] == 300.0


def test_no_warning_when_everything_is_fine(tmp_path):
    path = tmp_path / "trajectory.nc"
    _vibes_dataset(_md_like_frames(6, seed=5)).to_netcdf(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_reference(path)) == 6


# --- time-decorrelated split -----------------------------------------------------------------


def _timed(n: int, dt: float, trajectory: str, temperature: float):
    base = bulk("Cu", "fcc", cubic=True)
    out = []
    for k in range(n):
        atoms = base.copy()
        atoms.info.update({"time": k * dt, "trajectory": trajectory, "temperature": temperature})
        out.append(atoms)
    return out


def _check_split(frames, train, test, min_sep):
    assert not set(train) & set(test)
    assert train == sorted(train) and test == sorted(test)
    key = [(a.info.get("trajectory"), a.info.get("temperature")) for a in frames]
    t = [a.info.get("time") for a in frames]
    for i in test:
        for j in test:
            if i < j and key[i] == key[j]:
                assert abs(t[i] - t[j]) >= min_sep
        for j in train:
            if key[i] == key[j]:
                assert abs(t[i] - t[j]) >= min_sep
    # every frame left out of both is within min_sep of a test frame of its group
    for j in set(range(len(frames))) - set(train) - set(test):
        assert any(key[i] == key[j] and abs(t[i] - t[j]) < min_sep for i in test)


def test_split_is_disjoint_separated_and_covers_all_groups():
    frames = _timed(100, 1.0, "a.nc", 300.0) + _timed(60, 2.0, "b.nc", 600.0)
    train, test = time_decorrelated_split(frames, n_test=8, min_separation_fs=10.0, seed=1)
    assert len(test) == 8
    _check_split(frames, train, test, 10.0)
    # round-robin over groups: both temperatures contribute equally
    assert sum(frames[i].info["temperature"] == 600.0 for i in test) == 4
    # each test frame removes at most the 2 * 9 neighbours closer than 10 fs (grid of 1 fs)
    assert len(train) >= 160 - 8 - 8 * 18
    # reproducible
    assert time_decorrelated_split(frames, n_test=8, min_separation_fs=10.0, seed=1) == (
        train,
        test,
    )


def test_split_warns_when_the_separation_cannot_be_met():
    frames = _timed(10, 1.0, "a.nc", 300.0)
    with pytest.warns(RuntimeWarning, match="test frames fit"):
        train, test = time_decorrelated_split(frames, n_test=5, min_separation_fs=5.0, seed=0)
    assert 1 <= len(test) <= 2  # at most 2 frames fit 5 fs apart in 0..9 fs
    _check_split(frames, train, test, 5.0)


def test_split_untimed_frames_are_independent():
    frames = [bulk("Cu") for _ in range(10)]
    train, test = time_decorrelated_split(frames, n_test=3, min_separation_fs=100.0, seed=2)
    assert len(test) == 3
    assert sorted(train + test) == list(range(10))
