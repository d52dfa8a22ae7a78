"""Reusable test helpers: small labelled datasets made with cheap analytic potentials."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from alkappa.io.dataset import write_dataset

if TYPE_CHECKING:
    from pathlib import Path

    from ase import Atoms
    from ase.calculators.calculator import Calculator


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
