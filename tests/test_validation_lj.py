"""The fast Lennard-Jones calculator of the Green-Kubo validation equals ASE's."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.calculators.lj import LennardJones

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "validation"))
from _lj import ARGON, PairListLennardJones


def _both(atoms):
    ours, ase = atoms.copy(), atoms.copy()
    ours.calc, ase.calc = PairListLennardJones(**ARGON), LennardJones(**ARGON)
    return ours, ase


def test_pair_list_lennard_jones_equals_ase_also_after_the_list_is_rebuilt():
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(3)
    atoms.rattle(0.1, seed=3)
    ours, ase = _both(atoms)
    for move in (0.0, 0.3, 1.5):  # within the skin, then past half of it (rebuild)
        rng = np.random.default_rng(int(10 * move))
        shift = move * rng.normal(size=(len(atoms), 3)) / np.sqrt(3)
        ours.positions = atoms.positions + shift
        ase.positions = atoms.positions + shift
        assert np.isclose(ours.get_potential_energy(), ase.get_potential_energy(), atol=1e-10)
        np.testing.assert_allclose(
            ours.get_potential_energies(), ase.get_potential_energies(), atol=1e-12
        )
        np.testing.assert_allclose(ours.get_forces(), ase.get_forces(), atol=1e-10)
        np.testing.assert_allclose(ours.get_stress(), ase.get_stress(), atol=1e-12)
        np.testing.assert_allclose(ours.get_stresses(), ase.get_stresses(), atol=1e-12)
