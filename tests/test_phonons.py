"""Harmonic phonons (phonopy) and thermal conductivity (phono3py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from helpers import SpringCalculator, simple_cubic, spring_frequencies
from phonopy.physical_units import get_physical_units

from alkappa.phonons import (
    ImaginaryModeWarning,
    compare_conductivity,
    compare_phonons,
    count_fc3_supercells,
    find_imaginary_modes,
    load_fc3,
    load_phonopy,
    make_phonopy,
    plot_kappa,
    plot_lifetimes,
    plot_phonons,
    primitive_lattice,
    read_netcdf,
    run_fc3,
    run_harmonic,
    run_mesh_convergence,
    run_phono3py,
    write_fc3,
    write_harmonic,
    write_netcdf,
)

A, K, MASS = 2.5, 2.0, 50.0  # simple cubic spring model: Å, eV/Å^2, amu


def _spring_harmonic(k: float = K, **kwargs):
    return run_harmonic(
        simple_cubic(A, mass=MASS).repeat(3),
        SpringCalculator(A, k),
        mesh=kwargs.pop("mesh", (6, 6, 6)),
        band_npoints=kwargs.pop("band_npoints", 21),
        **kwargs,
    )


def test_spring_model_frequencies_are_analytic():
    # the 27-atom supercell itself is the input: phonopy finds the 1-atom primitive cell
    result = _spring_harmonic()
    ds = result.dataset
    assert result.n_supercells == 1
    assert ds.attrs["n_atoms_primitive"] == 1 and ds.attrs["n_atoms_supercell"] == 27
    expected = spring_frequencies(ds["mesh_qpoint"].values, K, MASS)
    np.testing.assert_allclose(
        ds["mesh_frequency"].values, expected[:, None] * [1, 1, 1], atol=1e-5
    )
    along_path = spring_frequencies(ds["band_qpoint"].values, K, MASS)
    np.testing.assert_allclose(
        ds["band_frequency"].values, along_path[:, None] * [1, 1, 1], atol=1e-5
    )
    # the standard simple-cubic path, and the zone-boundary value at R = (1/2, 1/2, 1/2)
    labels = {x for pair in json.loads(ds.attrs["band_labels"]) for x in pair}
    assert labels == {"GAMMA", "X", "M", "R"}
    assert ds["band_frequency"].max() == pytest.approx(
        get_physical_units().DefaultToTHz * np.sqrt(12 * K / MASS), rel=1e-6
    )
    assert ds["mesh_weight"].sum() == 6**3
    assert result.imaginary_modes == [] and result.warning is None
    # DOS: 3 states per primitive cell
    dos = ds["dos_total"].values
    assert np.trapezoid(dos, ds["dos_frequency"].values) == pytest.approx(3.0, rel=0.02)


def test_unit_cell_with_supercell_matrix_equals_supercell_input():
    from_unit = run_harmonic(
        simple_cubic(A, mass=MASS),
        SpringCalculator(A, K),
        supercell_matrix=[3, 3, 3],
        mesh=(4, 4, 4),
        band_npoints=11,
    )
    from_supercell = _spring_harmonic(mesh=(4, 4, 4), band_npoints=11)
    diff = compare_phonons(from_supercell.phonon, from_unit.phonon, mesh=(4, 4, 4))
    assert diff["rmse"] < 1e-6


@pytest.mark.parametrize(
    "structure",
    [
        bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2),
        bulk("CuI", "zincblende", a=6.05, cubic=True).repeat((2, 2, 1)),
        bulk("Si", "diamond", a=5.43).repeat((3, 2, 2)),
        bulk("Fe", "bcc", a=2.87, cubic=True).repeat(3),
    ],
    ids=["fcc-conventional", "zincblende-221", "diamond-primitive-322", "bcc"],
)
def test_primitive_lattice_is_the_one_phonopy_finds(structure):
    structure = structure.copy()
    structure.rotate(17, "z", rotate_cell=True)  # no lattice axis along x
    expected = make_phonopy(structure).primitive.cell
    assert np.allclose(primitive_lattice(structure), expected, atol=1e-8)


def test_frequency_rmse_has_the_analytic_value():
    # four times the spring constant doubles every frequency, so the error equals the
    # frequency itself; its mean square over a full mesh is (2k/m) * 3 (the cosines average
    # to zero), in phonopy's units
    soft, stiff = _spring_harmonic(K), _spring_harmonic(4 * K)
    diff = compare_phonons(soft.phonon, stiff.phonon, mesh=(6, 6, 6))
    factor = get_physical_units().DefaultToTHz
    assert diff["rmse"] == pytest.approx(factor * np.sqrt(6 * K / MASS), rel=1e-6)
    assert diff["relative_rmse"] == pytest.approx(1.0, rel=1e-6)
    assert diff["mean_error"] > 0
    assert diff["mesh"] == [6, 6, 6] and diff["n_qpoints"] == 20


def test_species_resolved_dos_sums_to_the_total():
    # alternating masses along x: two species in the primitive cell, same springs
    cell = simple_cubic(A, mass=MASS).repeat((2, 1, 1))
    cell.set_chemical_symbols(["Cu", "Ag"])
    cell.set_masses([MASS, 2 * MASS])
    result = run_harmonic(
        cell.repeat((2, 3, 3)), SpringCalculator(A, K), mesh=(6, 6, 6), band_npoints=11
    )
    ds = result.dataset
    assert list(ds["species"].values) == ["Cu", "Ag"]
    np.testing.assert_allclose(ds["dos_species"].sum("species"), ds["dos_total"], atol=1e-10)
    for species in ("Cu", "Ag"):
        states = np.trapezoid(ds["dos_species"].sel(species=species), ds["dos_frequency"])
        assert states == pytest.approx(3.0, rel=0.05)
    assert result.imaginary_modes == []


def test_imaginary_modes_are_reported():
    with pytest.warns(ImaginaryModeWarning, match="imaginary"):
        result = _spring_harmonic(-1.0, mesh=(4, 4, 4), band_npoints=11)
    summary = result.summary()
    assert summary["n_imaginary_modes"] > 0
    assert summary["warning"].startswith("WARNING")
    assert result.dataset.attrs["n_imaginary_modes"] == summary["n_imaginary_modes"]
    # at Gamma (or an equivalent point) the three lowest modes are acoustic and never counted
    modes = find_imaginary_modes(
        [[0, 0, 0], [1, 0, 0], [0.5, 0, 0]],
        [[-0.5, -0.4, -0.3, -0.2], [-0.3, 0, 0, 1], [-0.05, -0.2, 1, 2]],
        threshold=-0.1,
    )
    assert [(m["qpoint"], m["band"]) for m in modes] == [([0, 0, 0], 3), ([0.5, 0, 0], 1)]


def test_write_load_and_plot_harmonic(tmp_path):
    result = _spring_harmonic(mesh=(4, 4, 4), band_npoints=11)
    paths = write_harmonic(result, tmp_path / "mlip")
    assert {p.name for p in paths.values()} == {
        "phonopy_params.yaml",
        "phonons.nc",
        "phonons.json",
    }
    summary = json.loads(paths["summary"].read_text())
    assert summary["n_imaginary_modes"] == 0 and summary["warning"] is None
    loaded = load_phonopy(paths["phonopy"])
    assert compare_phonons(result.phonon, loaded, mesh=(4, 4, 4))["rmse"] < 1e-8
    back = read_netcdf(paths["netcdf"])
    np.testing.assert_allclose(back["band_frequency"], result.dataset["band_frequency"])
    stiff = _spring_harmonic(1.5 * K, mesh=(4, 4, 4), band_npoints=11)
    figure = tmp_path / "phonons.png"
    plot_phonons({"MLIP": paths["netcdf"], "oracle": stiff.dataset}, figure, title="springs")
    assert figure.stat().st_size > 1000


def test_fc3_of_a_harmonic_model_vanishes():
    result = run_fc3(simple_cubic(A, mass=MASS).repeat(3), SpringCalculator(A, K))
    assert np.abs(result.phono3py.fc3).max() < 1e-6
    assert np.abs(result.phono3py.fc2).max() == pytest.approx(6 * K, rel=1e-6)  # self term


def test_fc3_pair_cutoff_reduces_the_supercells():
    cu = bulk("Cu", "fcc", a=3.61)
    full = count_fc3_supercells(cu, supercell_matrix=[3, 3, 3])
    cut = count_fc3_supercells(cu, supercell_matrix=[3, 3, 3], cutoff_pair_distance=3.0)
    assert 0 < cut < full
    # nearest-neighbour pairs carry most of fc3 in Cu: kappa barely changes
    kappas = []
    for cutoff in (None, 3.0):
        fc = run_fc3(cu, EMT(), supercell_matrix=[3, 3, 3], cutoff_pair_distance=cutoff)
        assert fc.n_supercells == (full if cutoff is None else cut)
        kappas.append(run_phono3py(fc.phono3py, mesh=5, temperatures=[300]))
    ratio = kappas[1]["kappa_rta_average"].item() / kappas[0]["kappa_rta_average"].item()
    assert ratio == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize(
    ("name", "cutoff"),
    [
        ("fcc", None),
        ("fcc", 3.0),
        ("zincblende", None),
        ("zincblende", 4.0),
        ("wurtzite", 3.5),
        ("rocksalt", None),
        ("pnma", 4.5),
    ],
)
def test_fast_fc3_count_equals_phono3py_own_displacements(name, cutoff):
    # the planning-time count (one spglib search of the supercell) against the supercells a
    # full Phono3py object generates: equal for cubic, hexagonal and orthorhombic cells
    from alkappa.phonons import fc3_displacements

    if name == "fcc":
        unit, repeat = bulk("Cu", "fcc", a=3.61), (3, 3, 3)
    elif name == "zincblende":
        unit, repeat = bulk("CuI", "zincblende", a=6.05, cubic=True), (1, 1, 1)
    elif name == "wurtzite":
        unit, repeat = bulk("ZnO", "wurtzite", a=3.25, c=5.2), (2, 2, 2)
    elif name == "rocksalt":
        unit, repeat = bulk("NaCl", "rocksalt", a=5.64), (2, 2, 2)
    else:  # a distorted rocksalt with Pnma-like lower symmetry: orthorhombic, two species
        unit = bulk("SnSe", "rocksalt", a=5.8, orthorhombic=True)
        unit.cell[0, 0] *= 1.04
        unit.positions[0, 2] += 0.05
        unit.positions[2, 2] -= 0.05
        repeat = (1, 1, 2)
    supercell = unit.repeat(repeat)
    ph3 = fc3_displacements(supercell, cutoff_pair_distance=cutoff)
    expected = sum(cell is not None for cell in ph3.supercells_with_displacements)
    assert count_fc3_supercells(supercell, cutoff_pair_distance=cutoff) == expected
    assert expected > 0


def test_phono3py_rta_and_lbte_end_to_end(tmp_path):
    # Cu (EMT), 27-atom supercell of the primitive cell, 5x5x5 mesh: about a second
    cu = bulk("Cu", "fcc", a=3.61)
    fc = run_fc3(cu, EMT(), supercell_matrix=[3, 3, 3])
    assert fc.method == "displacements" and fc.n_supercells > 0
    ds = run_phono3py(fc.phono3py, mesh=5, temperatures=[300, 600], hdf5_directory=tmp_path / "rta")
    kappa = ds["kappa_rta_average"].values
    assert 5.0 < kappa[0] < 60.0 and kappa[1] < kappa[0]  # W/mK; falls with T
    assert (tmp_path / "rta" / "kappa-m555.hdf5").is_file()
    assert int(ds["weight"].sum()) == 125 == ds.attrs["n_grid_points"]
    # tau = 1 / (4 pi gamma), NaN for the acoustic modes at Gamma
    gamma, tau = ds["gamma"].values, ds["tau"].values
    ok = gamma > 0
    np.testing.assert_allclose(tau[ok], 1.0 / (4 * np.pi * gamma[ok]))
    assert np.isnan(tau[~ok]).all() and (~ok).sum() == 2 * 3
    # mode kappa sums to kappa
    summed = ds["mode_kappa_rta"].sum(("qpoint", "band")) / ds.attrs["n_grid_points"]
    np.testing.assert_allclose(summed, ds["kappa_rta"], atol=1e-8)
    write_netcdf(ds, tmp_path / "kappa.nc")
    back = read_netcdf(tmp_path / "kappa.nc")
    np.testing.assert_allclose(back["tau"], ds["tau"])

    # LBTE: one run gives both; the full solution is above RTA here (normal processes)
    both = run_phono3py(fc.phono3py, mesh=5, temperatures=[300, 600], lbte=True)
    np.testing.assert_allclose(both["kappa_rta_average"], kappa, rtol=1e-10)
    assert (both["kappa_lbte_average"].values > 0.9 * kappa).all()

    # written and reloaded force constants give the same kappa
    write_fc3(fc, tmp_path / "fc")
    reloaded = run_phono3py(load_fc3(tmp_path / "fc"), mesh=5, temperatures=[300, 600])
    comparison = compare_conductivity(ds, reloaded)
    assert comparison["same_qpoints"]
    assert np.allclose(comparison["kappa_rta"]["relative_difference"], 0.0, atol=1e-8)
    assert comparison["tau"][0]["log10_ratio_rms"] < 1e-8

    convergence = run_mesh_convergence(fc.phono3py, meshes=[3, [5, 5, 5]], temperatures=[300])
    assert convergence["kappa_rta_average"].shape == (2, 1)
    assert convergence["kappa_rta_average"].values[1, 0] == pytest.approx(kappa[0])
    assert np.isnan(convergence["relative_change_rta"].values[0, 0])

    plot_kappa({"MLIP": both, "oracle": ds}, tmp_path / "kappa.png")
    plot_lifetimes({"MLIP": ds, "oracle": reloaded}, tmp_path / "tau.png")
    assert (tmp_path / "kappa.png").is_file() and (tmp_path / "tau.png").is_file()


def test_random_displacements_with_symfc_agree_with_systematic_ones():
    cu = bulk("Cu", "fcc", a=3.61)
    systematic = run_phono3py(
        run_fc3(cu, EMT(), supercell_matrix=[3, 3, 3]).phono3py, mesh=5, temperatures=[300]
    )
    fc = run_fc3(cu, EMT(), supercell_matrix=[3, 3, 3], random_snapshots=20, random_seed=1)
    assert fc.method == "random" and fc.n_supercells == 20
    random = run_phono3py(fc.phono3py, mesh=5, temperatures=[300])
    ratio = random["kappa_rta_average"].item() / systematic["kappa_rta_average"].item()
    assert ratio == pytest.approx(1.0, abs=0.15)


def test_too_few_random_snapshots_are_refused_not_fitted_to_zero():
    # one snapshot under-determines fc2 + fc3 of a 32-atom fcc cell: symfc alone would return
    # force constants near zero (0.002 instead of 7.8 eV/Å^2)
    from alkappa.phonons._conductivity import harmonic_r2

    cu = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    with pytest.raises(ValueError, match="under-determined"):
        run_fc3(cu, EMT(), random_snapshots=1, cutoff_pair_distance=3.0)
    enough = run_fc3(cu, EMT(), random_snapshots=2, cutoff_pair_distance=3.0)
    assert harmonic_r2(enough.phono3py) > 0.99
    assert np.abs(enough.phono3py.fc2).max() == pytest.approx(7.8, rel=0.05)


def test_isotope_scattering_adds_a_temperature_independent_linewidth():
    # Cu: 69 % 63Cu, 31 % 65Cu (mass variance ~2e-4); its isotope linewidth (Tamura) adds to
    # the three-phonon one, does not depend on T, and lowers kappa
    cu = bulk("Cu", "fcc", a=3.61)
    fc = run_fc3(cu, EMT(), supercell_matrix=[3, 3, 3])
    plain = run_phono3py(fc.phono3py, mesh=5, temperatures=[100, 300])
    iso = run_phono3py(fc.phono3py, mesh=5, temperatures=[100, 300], isotopes=True)
    assert "gamma_isotope" not in plain and iso.attrs["isotopes"] == 1
    g_iso = iso["gamma_isotope"].values
    assert g_iso.shape == iso["frequency"].shape and (g_iso >= 0).all()
    moving = iso["frequency"].values > 0.5
    assert (g_iso[moving] > 0).all()
    # the three-phonon part is unchanged; tau from the total
    np.testing.assert_allclose(iso["gamma"], plain["gamma"], rtol=1e-10)
    total = iso["gamma"].values + g_iso[None]
    ok = total > 0
    np.testing.assert_allclose(iso["tau"].values[ok], 1.0 / (4 * np.pi * total[ok]))
    k_plain, k_iso = plain["kappa_rta_average"].values, iso["kappa_rta_average"].values
    assert (k_iso < k_plain).all()
    # isotopes matter more where three-phonon scattering is weak (low T)
    assert 1 - k_iso[0] / k_plain[0] > 1 - k_iso[1] / k_plain[1]
    with pytest.raises(ValueError, match="quantum statistics"):
        run_phono3py(fc.phono3py, mesh=5, temperatures=[300], isotopes=True, statistics="classical")
