"""The anharmonicity score sigma^A and the ``alkappa anharmonicity`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from ase.calculators.emt import EMT
from helpers import SpringCalculator, simple_cubic

from alkappa.cli import main
from alkappa.io import TrajectoryWriter
from alkappa.phonons import (
    anharmonicity_from_trajectory,
    harmonic_forces,
    plot_anharmonicity,
    read_force_constants,
    run_harmonic,
    sigma_a,
    write_harmonic,
)

A, K = 2.5, 2.0


def test_sigma_a_by_hand():
    # frame 0: F^A = (1, 0, 0) on A and (0, 1, 0) on B; frame 1: no anharmonic force
    forces = np.array([[[1.0, 0, 0], [0, 2.0, 0]], [[0, 0, 3.0], [0, 0, 0]]])
    harmonic = np.array([[[0.0, 0, 0], [0, 1.0, 0]], [[0, 0, 3.0], [0, 0, 0]]])
    score = sigma_a(forces, harmonic, ["Cu", "I"])
    # sum (F - F_h)^2 = 1 + 1 = 2; sum F^2 = 1 + 4 + 9 = 14
    assert score.total == pytest.approx(np.sqrt(2 / 14))
    assert score.per_species == pytest.approx({"Cu": np.sqrt(1 / 10), "I": np.sqrt(1 / 4)})
    np.testing.assert_allclose(score.per_frame, [np.sqrt(2 / 5), 0.0])
    assert score.n_frames == 2
    out = score.to_dict()
    assert out["sigma_A"] == pytest.approx(score.total)
    assert json.dumps(out)  # JSON-ready


def test_sigma_a_is_zero_for_harmonic_forces_and_drops_incomplete_frames():
    rng = np.random.default_rng(0)
    n = 4
    fc = rng.normal(size=(3 * n, 3 * n))
    fc = fc + fc.T
    u = rng.normal(scale=0.1, size=(3, n, 3))
    f_harm = harmonic_forces(u, fc)
    # the (N, N, 3, 3) layout gives the same forces as the (3N, 3N) one
    fc4 = fc.reshape(n, 3, n, 3).transpose(0, 2, 1, 3)
    np.testing.assert_allclose(harmonic_forces(u, fc4), f_harm)
    np.testing.assert_allclose(harmonic_forces(u[0], fc4), f_harm[0])
    forces = f_harm.copy()
    forces[1, 0, 0] = np.nan  # a frame without forces (e.g. padded) is dropped
    score = sigma_a(forces, f_harm)
    assert score.total == 0.0 and score.n_frames == 2 and score.per_species == {}
    with pytest.raises(ValueError, match="frames, atoms, 3"):
        sigma_a(forces[:, :2], f_harm)


def _write_trajectory(path, reference, calc, n_frames=3, seed=0):
    rng = np.random.default_rng(seed)
    writer = TrajectoryWriter(path, reference)
    for k in range(n_frames):
        atoms = reference.copy()
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        atoms.calc = calc
        writer.append(10.0 * k, positions=atoms.positions, forces=atoms.get_forces())
    writer.flush()


def test_trajectory_with_our_force_constants(tmp_path):
    # springs: the harmonic model is exact, so sigma^A vanishes; the trajectory's atoms are
    # in another order than phonopy's supercell, which read_force_constants must undo
    supercell = simple_cubic(A).repeat(3)
    result = run_harmonic(supercell, SpringCalculator(A, K), mesh=(2, 2, 2), band_npoints=5)
    paths = write_harmonic(result, tmp_path / "phonons")
    shuffled = supercell[np.random.default_rng(1).permutation(len(supercell))]
    _write_trajectory(tmp_path / "springs.nc", shuffled, SpringCalculator(A, K))
    fc = read_force_constants(paths["phonopy"], shuffled)
    assert fc.shape == (27, 27, 3, 3)
    score = anharmonicity_from_trajectory(tmp_path / "springs.nc", paths["phonopy"])
    assert score.total < 1e-6 and score.n_frames == 3
    assert score.harmonic_source.startswith("force constants")
    # the directory holding phonopy_params.yaml works as well
    assert anharmonicity_from_trajectory(tmp_path / "springs.nc", tmp_path / "phonons").total < 1e-6


def test_trajectory_of_an_anharmonic_potential(tmp_path):
    from ase.build import bulk

    supercell = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    result = run_harmonic(supercell, EMT(), mesh=(2, 2, 2), band_npoints=5)
    write_harmonic(result, tmp_path)
    _write_trajectory(tmp_path / "emt.nc", supercell, EMT(), n_frames=2)
    score = anharmonicity_from_trajectory(tmp_path / "emt.nc", tmp_path / "phonopy_params.yaml")
    assert 0.0 < score.total < 0.5  # small displacements: mostly harmonic
    assert set(score.per_species) == {"Cu"}
    plot_anharmonicity({"300 K": score, "600 K": score.to_dict()}, tmp_path / "sigma.png")
    assert (tmp_path / "sigma.png").stat().st_size > 1000


def _vibes_file(path, *, with_harmonic_forces=True):
    """A small trajectory.nc as FHI-vibes writes it (dims time, I, a; attribute symbols)."""
    rng = np.random.default_rng(3)
    n, frames = 4, 3
    lattice = np.eye(3) * 5.0
    reference = np.array([[0, 0, 0], [2.5, 2.5, 0], [2.5, 0, 2.5], [0, 2.5, 2.5]], dtype=float)
    u = rng.normal(scale=0.05, size=(frames, n, 3))
    fc = rng.normal(size=(3 * n, 3 * n))
    fc = fc + fc.T
    f_harm = harmonic_forces(u, fc)
    forces = f_harm + 0.1 * rng.normal(size=f_harm.shape)
    data = {
        "positions": (("time", "I", "a"), reference + u),
        "forces": (("time", "I", "a"), forces),
        "energy_potential": (("time",), rng.normal(size=frames)),
        "positions_reference": (("I", "a"), reference),
        "lattice_reference": (("a", "b"), lattice),
    }
    if with_harmonic_forces:
        data["forces_harmonic"] = (("time", "I", "a"), f_harm)
    else:
        data["force_constants_remapped"] = (("Ia", "Jb"), fc)
    ds = xr.Dataset(
        data,
        coords={"time": np.arange(frames) * 5.0},
        attrs={"symbols": ["Cu", "Cu", "I", "I"], "masses": [63.5, 63.5, 126.9, 126.9]},
    )
    ds.to_netcdf(path, engine="h5netcdf")
    return sigma_a(forces, f_harm, ["Cu", "Cu", "I", "I"])


@pytest.mark.parametrize("with_harmonic_forces", [True, False])
def test_cli_reads_vibes_trajectory(tmp_path, capsys, with_harmonic_forces):
    path = tmp_path / "trajectory.nc"
    expected = _vibes_file(path, with_harmonic_forces=with_harmonic_forces)
    out_json = tmp_path / "sigma.json"
    assert main(["anharmonicity", str(path), "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "3 frames" in text
    source = "forces_harmonic" if with_harmonic_forces else "force_constants_remapped"
    assert source in text
    lines = {line.split()[1]: float(line.split()[2]) for line in text.splitlines()[1:]}
    assert lines["total"] == pytest.approx(expected.total, abs=1e-4)
    assert lines["Cu"] == pytest.approx(expected.per_species["Cu"], abs=1e-4)
    assert lines["I"] == pytest.approx(expected.per_species["I"], abs=1e-4)
    record = json.loads(out_json.read_text())
    assert record["sigma_A"] == pytest.approx(expected.total)
    assert len(record["sigma_A_per_frame"]) == 3


def test_cli_reports_missing_inputs(tmp_path, capsys):
    assert main(["anharmonicity", str(tmp_path / "nope.nc")]) == 1
    assert "does not exist" in capsys.readouterr().err
    ds = xr.Dataset(
        {"forces": (("time", "I", "a"), np.ones((1, 1, 3)))},
        attrs={"symbols": ["Cu"]},
    )
    ds.to_netcdf(tmp_path / "bare.nc", engine="h5netcdf")
    assert main(["anharmonicity", str(tmp_path / "bare.nc")]) == 1
    assert "no harmonic forces" in capsys.readouterr().err
