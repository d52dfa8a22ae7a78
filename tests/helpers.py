"""Reusable test helpers: small labelled datasets made with cheap analytic potentials."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from alkappa.io.dataset import write_dataset

if TYPE_CHECKING:
    from pathlib import Path


def labelled(atoms: Atoms, calc: Calculator) -> Atoms:
    """A copy of ``atoms`` carrying ``calc``'s energy, forces and stress as a single point."""
    work = atoms.copy()
    work.calc = calc
    out = atoms.copy()
    out.calc = SinglePointCalculator(
        out,
        energy=float(work.get_potential_energy()),
        forces=np.array(work.get_forces()),
        stress=np.array(work.get_stress(voigt=True)),
    )
    return out


def rattled_frames(
    n_frames: int,
    *,
    element: str = "Cu",
    repeat: int = 1,
    rattle: float = 0.05,
    strain: float = 0.01,
    seed: int = 0,
    calc_factory=EMT,
) -> list[Atoms]:
    """``n_frames`` rattled and slightly strained fcc cells labelled by ``calc_factory()``.

    The cubic 4-atom cell repeated ``repeat`` times; the random strain (relative amplitude
    ``strain``) makes the stress labels informative.
    """
    rng = np.random.default_rng(seed)
    base = bulk(element, "fcc", cubic=True).repeat(repeat)
    frames = []
    for _ in range(n_frames):
        atoms = base.copy()
        eps = strain * rng.uniform(-1.0, 1.0, size=(3, 3))
        eps = 0.5 * (eps + eps.T)
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        atoms.positions += rng.normal(scale=rattle, size=atoms.positions.shape)
        frames.append(labelled(atoms, calc_factory()))
    return frames


def write_emt_dataset(
    path: Path, n_frames: int, *, seed: int = 0, repeat: int = 1, rattle: float = 0.05
) -> list[Atoms]:
    """Write ``n_frames`` EMT-labelled Cu frames to extxyz ``path`` and return them."""
    frames = rattled_frames(n_frames, repeat=repeat, rattle=rattle, seed=seed)
    write_dataset(path, frames)
    return frames


class SpringCalculator(Calculator):
    """Isotropic nearest-neighbour springs on a simple cubic lattice of edge ``a``: exact F = -K u.

    Every nearest-neighbour pair adds the energy ``k/2 |u_i - u_j|^2`` (a spring resisting any
    relative displacement, not only stretching), where ``u_j - u_i`` is the bond vector minus
    its rest value (the nearest lattice vector of the simple cubic lattice). The forces are
    exactly linear in the displacements, and for one atom of mass m per cell the three phonon
    branches are degenerate with ``omega^2(q) = (2k/m) sum_alpha (1 - cos(2 pi q_alpha))``
    (q in reduced coordinates), the textbook monatomic chain in each direction.
    """

    implemented_properties = ("energy", "forces")

    def __init__(self, a: float, k: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.a = a
        self.k = k

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):  # type: ignore[no-untyped-def]
        from ase.neighborlist import neighbor_list

        super().calculate(atoms, properties, system_changes)
        i, vectors = neighbor_list("iD", self.atoms, 1.2 * self.a)
        stretch = vectors - self.a * np.round(vectors / self.a)  # u_j - u_i per ordered pair
        forces = np.zeros((len(self.atoms), 3))
        np.add.at(forces, i, self.k * stretch)
        # each bond appears twice among the ordered pairs
        self.results = {
            "energy": 0.25 * self.k * float((stretch**2).sum()),
            "forces": forces,
        }


def simple_cubic(a: float = 2.5, symbol: str = "Cu", mass: float = 50.0) -> Atoms:
    """One atom of mass ``mass`` in a cubic cell of edge ``a``."""
    atoms = Atoms(symbol, cell=np.eye(3) * a, pbc=True)
    atoms.set_masses([mass])
    return atoms


def spring_frequencies(qpoints: np.ndarray, k: float, mass: float) -> np.ndarray:
    """Analytic frequencies (THz) of :class:`SpringCalculator` at reduced ``qpoints``."""
    from phonopy.physical_units import get_physical_units

    q = np.atleast_2d(np.asarray(qpoints, dtype=float))
    omega2 = 2.0 * k / mass * (1.0 - np.cos(2.0 * np.pi * q)).sum(axis=1)
    return get_physical_units().DefaultToTHz * np.sign(omega2) * np.sqrt(np.abs(omega2))


class NoStressEMT(EMT):
    """EMT without the stress, like oracles (e.g. legacy NequIP models) that lack it."""

    implemented_properties = ("energy", "free_energy", "forces")
