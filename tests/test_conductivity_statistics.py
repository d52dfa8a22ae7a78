"""phono3py with classical statistics and on exactly the q-points of an MD supercell.

Independent references: phono3py's own quantum values far above the Debye temperature (the
classical limit), a second reference temperature, the commensurate q-points of
:func:`alkappa.greenkubo.commensurate_qpoints` (a group-generation route from the cell
geometry), and an ordinary regular mesh written as a non-diagonal grid matrix.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.lj import LennardJones
from phonopy.physical_units import get_physical_units

from alkappa.config import load_config, material_settings
from alkappa.greenkubo import commensurate_qpoints
from alkappa.phonons import (
    commensurate_mesh,
    make_phono3py,
    read_netcdf,
    run_fc3,
    run_phono3py,
    write_fc3,
)
from alkappa.phonons.steps import kappa_commensurate_step, kappa_step

A_AR = 5.3  # Å, fcc LJ argon near its 0 K lattice constant


def _argon_lj() -> LennardJones:
    return LennardJones(epsilon=0.0104, sigma=3.4, rc=8.5, smooth=True)


@pytest.fixture(scope="module")
def argon():
    """fc2/fc3 of LJ argon in the conventional 2x2x2 supercell (32 atoms, about a second)."""
    cell = bulk("Ar", "fcc", a=A_AR, cubic=True)
    return run_fc3(cell, _argon_lj(), supercell_matrix=[2, 2, 2])


def _grid_qpoints(ph3) -> np.ndarray:
    """All q-points of phono3py's current grid (reduced, primitive reciprocal basis, [0, 1))."""
    grid = ph3.grid
    addresses = grid.addresses[grid.grg2bzg]
    q = addresses @ np.asarray(grid.QDinv).T
    return np.mod(np.round(q, 10), 1.0)


def _as_set(points: np.ndarray) -> set[tuple[float, ...]]:
    return {tuple(p) for p in np.round(np.mod(np.round(points, 8), 1.0), 8)}


def _cell_matrix(ph3) -> np.ndarray:
    """Supercell rows = M @ primitive rows, from the two cells' geometry alone."""
    m = np.asarray(ph3.supercell.cell) @ np.linalg.inv(np.asarray(ph3.primitive.cell))
    assert np.allclose(m, np.rint(m), atol=1e-6)
    return np.rint(m).astype(int)


@pytest.mark.parametrize(
    ("structure", "supercell", "n_points", "diagonal"),
    [
        # the MD cell of the issue: conventional fcc 2x2x2, 32 points, not an n x n x n mesh
        (bulk("Ar", "fcc", a=A_AR, cubic=True), [2, 2, 2], 32, False),
        # the pipeline's case: the MD supercell itself is phono3py's unit cell
        (bulk("Ar", "fcc", a=A_AR, cubic=True).repeat(2), None, 32, False),
        # zincblende CuI's 64-atom MD cell (two atoms per primitive cell)
        (bulk("CuI", "zincblende", a=6.05, cubic=True).repeat(2), None, 32, False),
        # a supercell of the primitive cell: an ordinary 3x3x3 mesh
        (bulk("Ar", "fcc", a=A_AR), [3, 3, 3], 27, True),
        # a rotated (sqrt 3 x sqrt 3) hexagonal cell: the grid matrix is not symmetric, so
        # this also tells S^T from S
        (bulk("Mg", "hcp", a=3.2, c=5.2), [[2, -1, 0], [1, 1, 0], [0, 0, 1]], 3, False),
    ],
)
def test_commensurate_grid_holds_exactly_the_supercell_qpoints(
    structure, supercell, n_points, diagonal
):
    ph3 = make_phono3py(structure, supercell_matrix=supercell)
    grid = commensurate_mesh(ph3)
    assert round(np.linalg.det(grid)) == n_points
    assert np.array_equal(grid, np.diag(np.diagonal(grid))) == diagonal
    ph3.mesh_numbers = grid
    phono3py_points = _grid_qpoints(ph3)
    assert len(phono3py_points) == n_points
    expected = commensurate_qpoints(_cell_matrix(ph3))
    assert _as_set(phono3py_points) == _as_set(expected)


def test_bad_meshes_are_refused(argon):
    ph3 = argon.phono3py
    with pytest.raises(ValueError, match="non-singular"):
        commensurate_mesh(ph3, [[1, 0, 0], [1, 0, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="'commensurate'"):
        run_phono3py(ph3, mesh="md", temperatures=[50])
    with pytest.raises(ValueError, match="not closed under the crystal's point group"):
        run_phono3py(ph3, mesh=[[2, 1, 0], [0, 1, 0], [0, 0, 1]], temperatures=[50])
    with pytest.raises(ValueError, match="non-singular integer"):
        run_phono3py(ph3, mesh=[[2, 0, 0], [0, 2, 0], [2, 0, 0]], temperatures=[50])


def test_commensurate_conductivity_uses_those_points(argon):
    ds = run_phono3py(argon.phono3py, mesh="commensurate", temperatures=[50])
    assert ds.attrs["n_grid_points"] == 32 == int(ds["weight"].sum())
    assert len(ds.attrs["grid_matrix"]) == 9
    expected = _as_set(commensurate_qpoints(_cell_matrix(argon.phono3py)))
    assert _as_set(ds["qpoints"].values) <= expected
    assert 0 < ds["kappa_rta_average"].item() < np.inf


@pytest.mark.parametrize("sigma", [0.1, None])
def test_generalized_grid_equals_the_regular_mesh_it_spans(argon, sigma):
    # G = 4 U (U unimodular) spans the same points as the 4x4x4 mesh. With Gaussian smearing
    # kappa depends only on the points: identical. The tetrahedra follow the grid's basis, so
    # the tetrahedron method differs a little (1.36 vs 1.34 W/mK here).
    unimodular = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]])
    ph3 = argon.phono3py
    regular = run_phono3py(ph3, mesh=4, temperatures=[50], sigma=sigma)
    general = run_phono3py(ph3, mesh=4 * unimodular, temperatures=[50], sigma=sigma)
    k_regular, k_general = regular["kappa_rta_average"].item(), general["kappa_rta_average"].item()
    assert k_general == pytest.approx(k_regular, rel=1e-9 if sigma else 0.05)


def test_classical_limit_is_reached_and_independent_of_the_reference(argon):
    ph3 = argon.phono3py
    temps = [10.0, 50.0, 3000.0]  # the Debye temperature of argon is about 90 K
    both = run_phono3py(
        ph3, mesh=4, temperatures=temps, lbte=True, statistics=("quantum", "classical")
    )
    hotter = run_phono3py(
        ph3,
        mesh=4,
        temperatures=temps,
        lbte=True,
        statistics="classical",
        classical_temperature=1e6,
    )
    for method in ("rta", "lbte"):
        quantum = both[f"kappa_{method}_average"].values
        classical = both[f"kappa_{method}_classical_average"].values
        # a 10x higher reference changes nothing (the corrections are O((h nu / k_B T_ref)^2))
        np.testing.assert_allclose(
            hotter[f"kappa_{method}_classical_average"], classical, rtol=1e-6
        )
        # far above the Debye temperature phono3py's quantum kappa is the classical one
        assert quantum[2] / classical[2] == pytest.approx(1.0, abs=1e-3)
        # far below, the quantum heat capacity is frozen out: classical is much larger
        assert quantum[0] < 0.5 * classical[0]
        # classical kappa ~ 1/T exactly
        np.testing.assert_allclose(classical * np.array(temps), classical[1] * temps[1], rtol=1e-10)
    # per mode: classical and quantum linewidths agree at 3000 K
    tau_q, tau_c = both["tau"].values[2], both["tau_classical"].values[2]
    ok = np.isfinite(tau_q)
    assert np.array_equal(ok, np.isfinite(tau_c)) and ok.sum() > 0
    np.testing.assert_allclose(tau_c[ok], tau_q[ok], rtol=1e-3)
    assert both["heat_capacity"].values[2].max() == pytest.approx(get_physical_units().KB, rel=1e-3)
    # the RTA mode sum is kappa
    summed = both["mode_kappa_rta_classical"].sum(("qpoint", "band")) / both.attrs["n_grid_points"]
    np.testing.assert_allclose(summed, both["kappa_rta_classical"], rtol=1e-12)
    # classical only: no quantum variables
    assert "kappa_rta" not in hotter and "tau_classical" in hotter
    assert both.attrs["statistics"] == ["quantum", "classical"]


def test_bad_statistics_options_are_refused_before_running(argon):
    with pytest.raises(ValueError, match="statistics"):
        run_phono3py(argon.phono3py, mesh=4, temperatures=[50], statistics="boltzmann")
    with pytest.raises(ValueError, match="classical_temperature"):
        run_phono3py(
            argon.phono3py,
            mesh=4,
            temperatures=[50],
            statistics="classical",
            classical_temperature=2000.0,
        )


def test_kappa_steps_write_classical_and_commensurate_values(argon, tmp_path):
    # the config's defaults; the material only has to validate (the steps read fc3_dir)
    cu = {"structure": {"build": {"name": "Cu", "crystalstructure": "fcc", "a": 3.6}}}
    cfg = load_config(
        {
            "materials": {"Cu": cu},
            "oracle": {"name": "emt"},
            "conductivity": {"mesh": [4, 4, 4], "temperatures": [50, 300], "commensurate": True},
        }
    )
    settings = material_settings(cfg, "Cu")
    assert settings["conductivity"]["statistics"] == ["quantum", "classical"]
    write_fc3(argon, tmp_path / "fc")
    kappa_step(settings, tmp_path / "fc", tmp_path / "kappa.nc")
    kappa = read_netcdf(tmp_path / "kappa.nc")
    assert {"kappa_rta_average", "kappa_rta_classical_average", "tau_classical"} <= set(kappa)
    np.testing.assert_array_equal(kappa["temperature"], [50, 300])
    kappa_commensurate_step(settings, tmp_path / "fc", tmp_path / "kappa_commensurate.nc")
    commensurate = read_netcdf(tmp_path / "kappa_commensurate.nc")
    assert commensurate.attrs["n_grid_points"] == 32
    assert {"kappa_rta_average", "kappa_rta_classical_average"} <= set(commensurate)


def test_mode_breakdown_attributes_a_lifetime_change_to_the_lifetimes(argon):
    # phono3py's linewidths go with |Phi_3|^2: scaling fc3 by s divides every lifetime and
    # kappa by s^2 and leaves the harmonic part alone. The breakdown must put all of that
    # change on the lifetimes, none on the heat capacities and velocities.
    from alkappa.phonons import compare_conductivity, kappa_mode_breakdown

    ph3, s = argon.phono3py, 1.25
    reference = run_phono3py(ph3, mesh=4, temperatures=[50])
    fc3 = ph3.fc3.copy()
    try:
        ph3.fc3 = fc3 * s
        scaled = run_phono3py(ph3, mesh=4, temperatures=[50])
    finally:
        ph3.fc3 = fc3
    b = kappa_mode_breakdown(reference, scaled, 50.0)
    k_ref = reference["kappa_rta_average"].item()
    assert b["reference"] == pytest.approx(k_ref, rel=1e-9)
    assert b["other"] == pytest.approx(k_ref / s**2, rel=1e-6)
    assert b["lifetimes_only"] == pytest.approx(b["other"], rel=1e-6)
    assert b["harmonic_only"] == pytest.approx(b["reference"], rel=1e-9)
    assert b["kappa_weighted_tau_ratio"] == pytest.approx(1 / s**2, rel=1e-6)
    assert b["acoustic_reference"] + b["optical_reference"] == pytest.approx(k_ref)
    assert sum(w["other"] for w in b["windows"]) == pytest.approx(b["other"])
    for w in b["windows"]:
        assert w["other"] == pytest.approx(w["reference"] / s**2, rel=1e-6, abs=1e-12)
    assert compare_conductivity(reference, scaled)["modes"][0]["other"] == pytest.approx(b["other"])

    # faster group velocities (a stiffer lattice seen by the heat current alone): harmonic
    faster = scaled.copy(deep=True)
    faster["group_velocity"] = reference["group_velocity"] * 2.0
    faster["tau"] = reference["tau"]
    faster["mode_kappa_rta"] = reference["mode_kappa_rta"] * 4.0
    b = kappa_mode_breakdown(reference, faster, 50.0)
    assert b["harmonic_only"] == pytest.approx(4 * b["reference"], rel=1e-6)
    assert b["lifetimes_only"] == pytest.approx(b["reference"], rel=1e-6)
