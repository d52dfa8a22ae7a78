"""Shared by the benchmarks: the CuI cell and throw-away training data for timing models."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

    from ase import Atoms


def cui_supercell(repeat: int = 2) -> Atoms:
    """Zincblende CuI, conventional cell repeated ``repeat`` times (2: 64 atoms, 3: 216)."""
    from ase.build import bulk

    return bulk("CuI", "zincblende", a=6.05, cubic=True).repeat(repeat)


def write_timing_data(directory: Path) -> tuple[Path, Path]:
    """``train.xyz`` (4 frames) and ``val.xyz`` (2) of rattled 64-atom CuI labelled with a
    Lennard-Jones potential: enough to build a NequIP model whose cost, not accuracy, is timed.
    """
    from ase.calculators.lj import LennardJones
    from ase.calculators.singlepoint import SinglePointCalculator

    from alkappa.io.dataset import write_dataset

    rng = np.random.default_rng(0)
    frames = []
    for _ in range(6):
        atoms = cui_supercell(2)
        atoms.positions += rng.normal(scale=0.1, size=atoms.positions.shape)
        atoms.calc = LennardJones(sigma=2.3, epsilon=0.05, rc=5.0, smooth=True)
        labels = {
            "energy": atoms.get_potential_energy(),
            "forces": atoms.get_forces(),
            "stress": atoms.get_stress(),
        }
        atoms.calc = SinglePointCalculator(atoms, **labels)
        frames.append(atoms)
    directory.mkdir(parents=True, exist_ok=True)
    write_dataset(directory / "train.xyz", frames[:4])
    write_dataset(directory / "val.xyz", frames[4:])
    return directory / "train.xyz", directory / "val.xyz"
