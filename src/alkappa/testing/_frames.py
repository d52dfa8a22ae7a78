"""Small labelled training sets made on the spot, for the model contract."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from ase.build import bulk

if TYPE_CHECKING:
    from ase import Atoms


def emt_frames(
    n_frames: int = 8,
    *,
    element: str = "Cu",
    repeat: int = 1,
    rattle: float = 0.05,
    strain: float = 0.01,
    seed: int = 0,
) -> list[Atoms]:
    """Rattled, slightly strained fcc cells labelled by the ``emt`` oracle.

    Parameters
    ----------
    n_frames
        Number of frames.
    element
        An fcc metal that ASE's EMT knows (Cu, Ag, Au, Al, Ni, Pd, Pt).
    repeat
        Repetitions of the cubic 4-atom cell along each axis.
    rattle
        Standard deviation of the random displacements, in Å.
    strain
        Amplitude of the random symmetric strain of each cell (0: all frames share the cell,
        as a model of one fixed supercell needs).
    seed
        Seed of the displacements and strains.

    Returns
    -------
    list of ase.Atoms
        Frames carrying energy, forces and stress (and the oracle's ``info`` entries).
    """
    from alkappa.oracles import get_oracle

    oracle = get_oracle({"name": "emt"})
    rng = np.random.default_rng(seed)
    ideal = bulk(element, "fcc", cubic=True).repeat(repeat)
    frames = []
    for _ in range(n_frames):
        atoms = ideal.copy()
        if strain:
            eps = strain * rng.uniform(-1.0, 1.0, size=(3, 3))
            atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
        atoms.positions += rng.normal(scale=rattle, size=atoms.positions.shape)
        frames.append(oracle.label(atoms))
    return frames
