"""Uncertainty-biased exploration MD (Kulichenko et al. 2023) and its viability factor."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.lj import LennardJones

from alkappa.al.bias import UncertaintyBias, thermal_range, viability
from alkappa.al.explore import run_exploration
from alkappa.io import read_trajectory
from alkappa.models.ensemble import EnsembleCalculator

N_ATOMS = 8
SPRING = 5.0  # eV/Å^2
STAGGER = np.array([1, -1] * (N_ATOMS // 2), dtype=float)  # orthogonal to the centre of mass
COUPLINGS = 0.1 * np.array([-1.5, -0.5, 0.5, 1.5])  # eV/Å; mean 0, variance 0.0125


class TetheredEnsemble(Calculator):
    """M members: atoms on springs around their sites, plus ``c_m U``, U = sum_i s_i u_ix.

    The couplings ``c_m`` have mean 0, so the ensemble mean is the springs alone, and the
    members disagree by ``(c_m - cbar) U``: the disagreement grows along U, a staggered
    displacement, and nowhere else. All members in one call, as the NequIP ensemble does.
    """

    implemented_properties = ("energy", "forces")

    def __init__(self, sites: np.ndarray):
        super().__init__()
        self.sites = sites

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        u = self.atoms.positions - self.sites
        springs = 0.5 * SPRING * float((u * u).sum())
        energies = springs + COUPLINGS * float(STAGGER @ u[:, 0])
        forces = np.repeat((-SPRING * u)[None], len(COUPLINGS), axis=0)
        forces[:, :, 0] -= COUPLINGS[:, None] * STAGGER[None, :]
        self.results = {
            "energy": float(energies.mean()),
            "forces": forces.mean(axis=0),
            "energy_members": energies,
            "forces_members": forces,
        }


def _tethered_ensemble() -> tuple[Atoms, TetheredEnsemble]:
    sites = 3.0 * np.array([[i % 2, (i // 2) % 2, i // 4] for i in range(N_ATOMS)], dtype=float)
    return Atoms(f"Cu{N_ATOMS}", positions=sites), TetheredEnsemble(sites)


def _beta(width: float) -> float:
    """x = beta U^2 for the tethered ensemble: sigma2 / (M N B^2) with sigma2 = M var(c) U^2 / 2."""
    return COUPLINGS.var() / (2 * N_ATOMS * width**2)


def test_bias_force_of_the_tethered_ensemble_is_analytic():
    atoms, ensemble = _tethered_ensemble()
    atoms.positions[:, 0] += 0.05 * STAGGER  # U = 0.4 Å
    atoms.positions[:, 1] += 0.03
    strength, width = 0.3, 0.035
    atoms.calc = UncertaintyBias(ensemble, strength=strength, width=width, viability_shift=None)
    forces = atoms.get_forces()
    u = 0.05 * N_ATOMS
    x = _beta(width) * u**2
    # E_bias = A (exp(-beta U^2) - 1): F_i = -dE/du_ix = 2 A beta U exp(-x) s_i, outward along U
    f_bias = 2 * strength * _beta(width) * u * math.exp(-x)
    expected = -SPRING * (atoms.positions - ensemble.sites)
    expected[:, 0] += f_bias * STAGGER
    np.testing.assert_allclose(forces, expected, atol=1e-12)
    assert atoms.get_potential_energy() == pytest.approx(
        0.5 * SPRING * N_ATOMS * (0.05**2 + 0.03**2) + strength * (math.exp(-x) - 1)
    )
    res = atoms.calc.results
    assert res["energy_bias"] == pytest.approx(strength * (math.exp(-x) - 1))
    np.testing.assert_allclose(
        res["forces_unbiased"], res["forces"] - f_bias * np.outer(STAGGER, [1, 0, 0]), atol=1e-12
    )


def _central(energy, atoms: Atoms, move, step: float) -> float:
    plus, minus = atoms.copy(), atoms.copy()
    move(plus, step)
    move(minus, -step)
    return (energy(plus) - energy(minus)) / (2 * step)


def test_biased_forces_and_stress_are_the_gradient_of_the_biased_energy():
    # an LJ ensemble whose members differ in epsilon and sigma, periodic, with the viability
    # factor in its steepest part (w = 1/2), where its own gradient matters most
    atoms = bulk("Ar", "fcc", a=5.3, cubic=True)
    atoms.rattle(0.15, seed=3)
    members = [
        LennardJones(epsilon=0.0104 * f, sigma=3.4 * g, rc=8.0, smooth=True)
        for f, g in [(1.0, 1.0), (1.2, 0.99), (0.9, 1.01), (1.1, 1.0)]
    ]
    ensemble = EnsembleCalculator(members)
    bias = UncertaintyBias(ensemble, strength=0.05, width=0.002, viability_shift=3.0)
    probe = atoms.copy()
    probe.calc = ensemble
    mean, std = thermal_range(len(atoms), 300.0)
    bias.set_thermal_range(probe.get_potential_energy() - mean - 3.0 * std, 300.0)

    def energy(a: Atoms) -> float:
        a.calc = bias
        return a.get_potential_energy()

    atoms.calc = bias
    forces = atoms.get_forces()
    res = bias.results
    assert res["bias_viability"] == pytest.approx(0.5, abs=1e-9)
    # the bias is not negligible here, or the check below would not test it
    assert np.abs(forces - res["forces_unbiased"]).max() > 1e-3
    for i, axis in [(0, 0), (1, 1), (2, 2), (3, 0)]:

        def shift(a, h, i=i, axis=axis):
            a.positions[i, axis] += h

        assert forces[i, axis] == pytest.approx(-_central(energy, atoms, shift, 1e-5), abs=1e-6)
    stress = atoms.get_stress()
    volume = atoms.get_volume()
    for k, (a, b) in enumerate([(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]):

        def strain(at, h, a=a, b=b):
            eps = np.eye(3)
            eps[a, b] += 0.5 * h
            eps[b, a] += 0.5 * h
            at.set_cell(at.cell.array @ eps, scale_atoms=True)

        assert stress[k] == pytest.approx(_central(energy, atoms, strain, 1e-6) / volume, abs=1e-7)


def test_viability_factor():
    mean, std = thermal_range(10, 300.0)
    assert mean == pytest.approx(15 * units.kB * 300.0)
    w, dw = viability(1.0 + mean + 3 * std, reference=1.0, n_atoms=10, temperature=300.0, shift=3)
    assert w == pytest.approx(0.5) and dw == pytest.approx(-1 / (std * math.sqrt(2 * math.pi)))
    assert viability(1.0, reference=1.0, n_atoms=10, temperature=300.0, shift=3)[0] > 0.999
    assert (
        viability(1.0 + mean + 6 * std, reference=1.0, n_atoms=10, temperature=300.0, shift=3)[0]
        < 0.002
    )


def test_bias_needs_an_ensemble():
    atoms = bulk("Ar", "fcc", a=5.3, cubic=True)
    atoms.calc = UncertaintyBias(
        EnsembleCalculator([LennardJones()]), strength=1.0, width=0.01, viability_shift=None
    )
    with pytest.raises(RuntimeError, match="at least two members"):
        atoms.get_forces()


MD = {
    "steps": 5000,
    "timestep": 5.0,
    "friction": 0.03,  # about critical damping of U (period ~230 fs): fast decorrelation
    "log_interval": 5,
    "seed": 7,
    "max_force": 25.0,
    "min_distance_fraction": 0.6,
    "max_temperature_factor": 50.0,
}


def _run(tmp_path, name, **options):
    atoms, ensemble = _tethered_ensemble()
    run_exploration(
        atoms,
        ensemble,
        tmp_path / f"{name}.nc",
        temperature=300.0,
        settings={**MD, **options},
        nn_distance=3.0,
        progress=False,
    )
    ds = read_trajectory(tmp_path / f"{name}.nc")
    u = ds.positions.values - atoms.positions
    return ds, u


def _quadrature_u2(strength: float, beta: float, kt: float) -> float:
    """<U^2> under exp(-V/kT), V = k U^2 / (2N) + A (exp(-beta U^2) - 1) (U's own spring)."""
    grid = np.linspace(-4.0, 4.0, 40001)
    v = 0.5 * SPRING / N_ATOMS * grid**2 + strength * (np.exp(-beta * grid**2) - 1)
    p = np.exp(-(v - v.min()) / kt)
    return float((grid**2 * p).sum() / p.sum())


def test_biased_md_samples_the_biased_boltzmann_distribution(tmp_path):
    kt = units.kB * 300.0
    width = 0.035
    beta = _beta(width)
    strength = 0.75 * SPRING / (2 * N_ATOMS * beta)  # curvature along U at 0 down to 1/4
    plain, u_plain = _run(tmp_path, "plain")
    biased, u_bias = _run(
        tmp_path,
        "biased",
        uncertainty_bias={"strength": strength, "width": width, "viability": False},
    )
    burn = 40
    big_u = {
        name: (u[burn:, :, 0] @ STAGGER) for name, u in (("plain", u_plain), ("biased", u_bias))
    }
    expect_plain = _quadrature_u2(0.0, beta, kt)
    expect_bias = _quadrature_u2(strength, beta, kt)
    assert expect_plain == pytest.approx(N_ATOMS * kt / SPRING, rel=1e-3)
    assert expect_bias > 2.5 * expect_plain
    assert np.mean(big_u["plain"] ** 2) == pytest.approx(expect_plain, rel=0.25)
    assert np.mean(big_u["biased"] ** 2) == pytest.approx(expect_bias, rel=0.25)
    # the MD goes where the members disagree: the logged uncertainty is larger
    assert biased.uncertainty_energy_std_per_atom.values[burn:].mean() > 1.4 * (
        plain.uncertainty_energy_std_per_atom.values[burn:].mean()
    )
    # directions without disagreement are left alone: y stays at kT / k per atom
    for u in (u_plain, u_bias):
        assert np.mean(u[burn:, :, 1] ** 2) == pytest.approx(kt / SPRING, rel=0.15)
    # the frames hold the unbiased energy and the bias on its own
    assert np.all(biased.energy_bias.values <= 0)
    np.testing.assert_allclose(
        biased.energy_potential.values,
        0.5 * SPRING * (u_bias**2).sum(axis=(1, 2)),
        atol=1e-9,
    )
    assert "energy_bias" not in plain


def test_viability_keeps_a_strong_bias_in_the_thermal_range(tmp_path):
    width = 0.035
    beta = _beta(width)
    # a bias deep enough to make U = 0 unstable: its well lies at E_springs ~ 0.74 eV
    strength = math.exp(1.5) * SPRING / (2 * N_ATOMS * beta)
    mean, std = thermal_range(N_ATOMS, 300.0)
    limit = mean + 3 * std  # where the viability factor is 1/2 (E_0 = 0 at the sites)
    options = {"steps": 1500, "friction": 0.05}
    bias = {"strength": strength, "width": width, "energy_shift": 3.0}
    free, _ = _run(tmp_path, "free", **options, uncertainty_bias={**bias, "viability": False})
    capped, _ = _run(tmp_path, "capped", **options, uncertainty_bias={**bias, "viability": True})
    assert len(free.time) == len(capped.time) == 301  # neither run stopped
    late = slice(150, None)
    # without the factor the MD settles far above the thermal range ...
    assert free.energy_potential.values[late].mean() > limit + 3 * std
    # ... with it, the bias fades out there: the energy stays below the limit
    assert capped.energy_potential.values.max() < limit + std
    assert capped.bias_viability.values[late].min() < 0.9
    assert "bias_viability" not in free  # no factor: the selection estimates P_E itself


def test_bias_has_a_stress_only_where_the_ensemble_has_one():
    from alkappa.structure import has_stress

    atoms, ensemble = _tethered_ensemble()
    bias = UncertaintyBias(ensemble, strength=0.1, width=0.01, viability_shift=None)
    assert not has_stress(bias)
    atoms.calc = bias
    atoms.get_forces()
    assert "stress" not in bias.results
    lj = EnsembleCalculator([LennardJones(epsilon=e) for e in (0.9, 1.1)])
    assert has_stress(UncertaintyBias(lj, strength=0.1, width=0.01, viability_shift=None))
