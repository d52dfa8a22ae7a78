"""Phonon lifetimes from MD: commensurate modes, Langevin decay = 1/friction, no decay in NVE,
matching phono3py's irreducible q-points."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from ase import units
from ase.calculators.calculator import Calculator, all_changes
from ase.constraints import FixCom
from ase.md.langevin import Langevin
from ase.md.verlet import VelocityVerlet
from helpers import SpringCalculator, simple_cubic, spring_frequencies
from phonopy.harmonic.dynmat_to_fc import get_commensurate_points

from alkappa.greenkubo import (
    commensurate_modes,
    commensurate_qpoints,
    compare_mode_lifetimes,
    mode_energies,
    plot_mode_lifetimes,
    run_mode_lifetimes,
)
from alkappa.io import TrajectoryWriter
from alkappa.phonons import run_harmonic

A, K, MASS = 2.5, 0.25, 50.0  # simple cubic springs: Å, eV/Å^2, amu (1.9-3.3 THz)
TEMPERATURE = 300.0
TAU_FS = 500.0  # 1 / friction


class LinearCalculator(Calculator):
    """F = -Phi u with u the displacement from ``reference`` (minimum image): exactly harmonic
    and cheaper than :class:`helpers.SpringCalculator` for long MD runs."""

    implemented_properties = ("energy", "forces")

    def __init__(self, reference, force_constants, **kwargs) -> None:
        super().__init__(**kwargs)
        n = len(reference)
        self.positions0 = reference.get_positions()
        self.lattice = np.asarray(reference.cell)
        self.phi = np.asarray(force_constants).transpose(0, 2, 1, 3).reshape(3 * n, 3 * n)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):  # type: ignore[no-untyped-def]
        super().calculate(atoms, properties, system_changes)
        frac = (self.atoms.positions - self.positions0) @ np.linalg.inv(self.lattice)
        u = ((frac - np.rint(frac)) @ self.lattice).ravel()
        force = -self.phi @ u
        self.results = {"energy": -0.5 * float(force @ u), "forces": force.reshape(-1, 3)}


@pytest.fixture(scope="module")
def spring():
    reference = simple_cubic(A, mass=MASS).repeat(3)
    phonon = run_harmonic(reference, SpringCalculator(A, K), mesh=(3, 3, 3), band_npoints=3).phonon
    return reference, phonon


def _md(reference, phonon, seed, n_steps, *, dt=10.0, friction=True) -> xr.Dataset:
    """An FHI-vibes-style trajectory (velocities in ASE units) of the harmonic model."""
    atoms = reference.copy()
    atoms.calc = LinearCalculator(reference, phonon.force_constants)
    atoms.set_constraint(FixCom())
    rng = np.random.default_rng(seed)
    # Maxwell-Boltzmann velocities at the reference positions (total energy ~ 3N kT / 2)
    momenta = rng.normal(size=(len(atoms), 3)) * np.sqrt(MASS * units.kB * TEMPERATURE)
    atoms.set_momenta(momenta - momenta.mean(axis=0))
    if friction:
        dyn = Langevin(
            atoms,
            dt * units.fs,
            temperature_K=TEMPERATURE,
            friction=1.0 / (TAU_FS * units.fs),
            fixcm=False,
            rng=rng,
        )
    else:
        dyn = VelocityVerlet(atoms, dt * units.fs)
    writer = TrajectoryWriter("unused.nc", reference)
    for step in range(n_steps):
        dyn.run(1)
        writer.append(
            step * dt,
            positions=atoms.positions,
            velocities=atoms.get_velocities(),
            temperature=atoms.get_temperature(),
        )
    return writer.to_dataset()


@pytest.fixture(scope="module")
def langevin(spring):
    reference, phonon = spring
    runs = [_md(reference, phonon, seed, 5000) for seed in (1, 2)]  # 2 x 50 ps, tau 0.5 ps
    return runs, run_mode_lifetimes(runs, phonon)


def test_commensurate_points_agree_with_phonopy():
    q = commensurate_qpoints(np.diag([3, 3, 3]))
    assert len(q) == 27 and np.allclose(q * 3, np.rint(q * 3))
    fcc_conventional_2x2x2 = 2 * np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]])  # symmetric
    ours = commensurate_qpoints(fcc_conventional_2x2x2)
    theirs = get_commensurate_points(fcc_conventional_2x2x2)
    assert len(ours) == len(theirs) == 32
    key = {tuple(np.round(np.mod(p, 1.0), 6) % 1.0) for p in theirs}
    assert {tuple(np.round(p, 6) % 1.0) for p in ours} == key


def test_modes_are_the_analytic_phonons_and_unitary(spring):
    reference, phonon = spring
    # shuffled atom order: atoms are matched to phonopy's supercell by position
    order = np.random.default_rng(0).permutation(len(reference))
    shuffled = reference[order]
    modes = commensurate_modes(phonon, shuffled)
    expected = spring_frequencies(modes.qpoints, K, MASS)
    np.testing.assert_allclose(modes.frequencies, expected[:, None] * [1, 1, 1], atol=1e-6)
    w = modes.vectors.reshape(3 * len(reference), -1)
    np.testing.assert_allclose(w.conj().T @ w, np.eye(w.shape[1]), atol=1e-10)
    # Parseval: mode energies sum to the harmonic energy of any configuration
    rng = np.random.default_rng(1)
    u = 0.05 * rng.standard_normal((2, len(reference), 3))
    v = 0.01 * rng.standard_normal((2, len(reference), 3))
    energies = modes.energies(u, v).sum(axis=(1, 2))
    calc = LinearCalculator(shuffled, np.asarray(phonon.force_constants)[np.ix_(order, order)])
    for k in range(2):
        atoms = shuffled.copy()
        atoms.positions += u[k]
        harmonic = calc.get_potential_energy(atoms) + 0.5 * MASS * float((v[k] ** 2).sum())
        assert energies[k] == pytest.approx(harmonic, rel=1e-9)
    assert modes.self_conjugate.sum() == 1  # only Gamma on a 3x3x3 grid
    assert len(modes.rotations) == 48


def test_velocity_unit_of_the_file_is_recognised(spring, langevin):
    _, phonon = spring
    runs, _ = langevin
    ase_units = runs[0].isel(time=slice(2000, 2400))  # equilibrated
    per_fs = ase_units.copy(deep=True)
    per_fs["velocities"] = per_fs["velocities"] * units.fs  # alkappa's exploration files: Å/fs
    per_fs.attrs.pop("atoms_reference")
    modes = commensurate_modes(phonon, simple_cubic(A, mass=MASS).repeat(3))
    _, e_ase = mode_energies(ase_units, modes)
    _, e_fs = mode_energies(per_fs, modes)
    np.testing.assert_allclose(e_ase, e_fs, rtol=1e-9, atol=1e-20)
    # equipartition: kT per mode on average
    assert e_ase[:, 1:].mean() == pytest.approx(units.kB * TEMPERATURE, rel=0.2)


def test_langevin_lifetimes_are_the_inverse_friction(langevin):
    # ASE's Langevin: dv/dt = F/m - friction v + noise; a harmonic mode's amplitude decays at
    # friction/2, its energy autocorrelation as exp(-friction t): tau = 1/friction for all
    # modes (= phono3py's 1/(4 pi gamma) with gamma = friction/(4 pi) the half width)
    _, ds = langevin
    tau = ds["tau"].values
    finite = np.isfinite(tau)
    assert finite.sum() == 27 * 3 - 3  # all but the acoustic modes at Gamma
    assert np.isnan(tau[0, :3]).all()
    expected = TAU_FS / 1000.0  # ps
    assert np.median(tau[finite]) == pytest.approx(expected, rel=0.15)
    within = np.abs(np.log(tau[finite] / expected)) < np.log(2.0)
    assert within.mean() > 0.9
    assert ds["decay_observed"].values[finite].all()
    assert np.median(ds["tau_integral"].values[finite]) == pytest.approx(expected, rel=0.2)
    np.testing.assert_allclose(ds["relative_fluctuation"].values[finite], 1.0, atol=0.5)
    assert ds.attrs["temperature"] == pytest.approx(TEMPERATURE, rel=0.05)
    assert ds["energy_acf"].shape == (27, 3, ds.sizes["time"])
    # leave-one-run-out lifetimes: here each is one run's estimate of the same 1/friction
    jk = ds["tau_jackknife"].values
    assert jk.shape == (2, 27, 3)
    assert np.array_equal(np.isfinite(jk[0]), finite)
    assert np.median(jk[:, finite]) == pytest.approx(expected, rel=0.15)
    assert not np.allclose(jk[0][finite], jk[1][finite])


def test_harmonic_nve_modes_do_not_decay(spring):
    reference, phonon = spring
    runs = [_md(reference, phonon, seed, 800, friction=False) for seed in (3, 4)]
    length_ps = 8.0
    for subset in (runs[:1], runs):  # one run: no fluctuation at all; two: no decay
        ds = run_mode_lifetimes(subset, phonon)
        tau = ds["tau"].values[ds["frequency"].values > 0.1]
        assert np.all(np.isinf(tau) | (tau > 50 * length_ps))
        assert not ds["decay_observed"].values.any()


def test_comparison_matches_irreducible_qpoints(tmp_path, langevin):
    _, md = langevin
    freq = lambda q: spring_frequencies(np.atleast_2d(q), K, MASS)[0]  # noqa: E731
    # phono3py-like irreducible points of a 3x3x3 mesh, written in other members of their
    # stars (rotated, time-reversed, shifted by reciprocal lattice vectors)
    irreducible = np.array([[0, 0, 0], [0, -1 / 3, 0], [1 / 3, 0, -1 / 3], [-1 / 3, 2 / 3, 1 / 3]])
    tau = np.array([[np.nan] * 3, [0.4] * 3, [0.5] * 3, [0.6] * 3])
    kappa = xr.Dataset(
        {
            "qpoints": (("qpoint", "reciprocal"), irreducible),
            "frequency": (("qpoint", "band"), np.array([[freq(q)] * 3 for q in irreducible])),
            "tau": (("temperature", "qpoint", "band"), np.stack([2 * tau, tau])),
        },
        coords={"temperature": [100.0, 300.0]},
    )
    out = compare_mode_lifetimes(md, kappa)
    assert out.attrs["temperature_phono3py"] == 300.0
    assert out.attrs["n_matched_qpoints"] == 27 and out["matched"].values.all()
    assert out.attrs["max_frequency_difference"] < 1e-6
    # MD q-points have components 0, 1/3, 2/3; their number of non-zero components is the star
    n_nonzero = (md["qpoints"].values > 1e-8).sum(axis=1)  # 0: Gamma, 1: X, 2: M, 3: R-like
    expected = np.array([np.nan, 0.4, 0.5, 0.6])[n_nonzero]
    np.testing.assert_allclose(out["tau_phono3py"].values, expected[:, None] * [1, 1, 1])
    assert out.attrs["n_modes_compared"] == 78
    assert out.attrs["median_ratio"] == pytest.approx(0.5 / 0.5, rel=0.3)
    # degenerate bands: MD rates averaged, as phono3py averages linewidths
    rate = 1 / out["tau_md_band"].values[1]
    assert out["tau_md"].values[1, 0] == pytest.approx(1 / rate.mean())

    # a 4x4x4 mesh holds only Gamma of the 3x3x3 supercell's points: the rest stays NaN
    kappa4 = kappa.isel(qpoint=[0]).assign(qpoints=(("qpoint", "reciprocal"), [[0.0, 0.0, 0.0]]))
    sparse = compare_mode_lifetimes(md, kappa4, temperature=100.0)
    assert sparse.attrs["n_matched_qpoints"] == 1 and sparse.attrs["n_modes_compared"] == 0
    assert np.isnan(sparse["tau_phono3py"].values[1:]).all()

    plot_mode_lifetimes(out, tmp_path / "lifetimes.png")
    assert (tmp_path / "lifetimes.png").stat().st_size > 0
