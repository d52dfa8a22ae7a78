"""A fast Lennard-Jones calculator for long validation MD of solids (fixed pair list with a skin).

Same potential and conventions as ASE's :class:`ase.calculators.lj.LennardJones` with
``smooth=False`` (energy shifted to zero at ``rc``, forces cut off at ``rc``): energies,
per-atom energies, forces, stress and per-atom stresses agree with it to rounding
(``tests/test_validation_lj.py``). It differs only in speed: the neighbour pairs (directed,
both ways) are kept between steps and rebuilt when an atom has moved more than half the skin,
and every sum is a vectorised ``numpy.bincount``; a 108-atom argon crystal with a 13 Å cutoff
costs about a millisecond per call instead of ASE's ~18 ms.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.neighborlist import neighbor_list

#: FHI-vibes' Lennard-Jones argon (docs, "Rapid prototyping" and "Green-Kubo" tutorials)
ARGON = {"sigma": 3.405, "epsilon": 0.010325, "rc": 13.0}


class PairListLennardJones(Calculator):
    """Lennard-Jones with a kept pair list (``sigma`` Å, ``epsilon`` eV, cutoff ``rc`` Å)."""

    implemented_properties = ("energy", "energies", "free_energy", "forces", "stress", "stresses")

    def __init__(
        self, sigma: float = 1.0, epsilon: float = 1.0, rc: float = 3.0, skin: float = 2.0
    ) -> None:
        super().__init__()
        self.sigma, self.epsilon, self.rc, self.skin = float(sigma), float(epsilon), float(rc), skin
        self._pairs: tuple[np.ndarray, np.ndarray, np.ndarray, Any] | None = None
        self._built_at: np.ndarray | None = None
        self._cell: np.ndarray | None = None

    def _pair_list(self, atoms) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
        pos = atoms.positions
        stale = (
            self._pairs is None
            or self._built_at.shape != pos.shape
            or not np.allclose(self._cell, atoms.cell.array)
            or np.max(np.linalg.norm(pos - self._built_at, axis=1)) > 0.5 * self.skin
        )
        if stale:
            from scipy.sparse import csr_matrix

            i, j, shift = neighbor_list("ijS", atoms, self.rc + self.skin)
            # sums over the pairs of each atom i as one sparse product
            gather = csr_matrix(
                (np.ones(len(i)), (i, np.arange(len(i)))), shape=(len(atoms), len(i))
            )
            self._pairs = (i, j, shift @ atoms.cell.array, gather)
            self._built_at = pos.copy()
            self._cell = atoms.cell.array.copy()
        return self._pairs

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        n = len(atoms)
        i, j, offset, gather = self._pair_list(atoms)
        d = atoms.positions[j] + offset - atoms.positions[i]  # r_j - r_i, each pair both ways
        r2 = np.einsum("pa,pa->p", d, d)
        inside = r2 < self.rc**2
        r2 = np.where(inside, r2, self.rc**2)
        s2 = self.sigma**2 / r2
        c6 = s2 * s2 * s2
        c12 = c6 * c6
        e0 = 4 * self.epsilon * ((self.sigma / self.rc) ** 12 - (self.sigma / self.rc) ** 6)
        pair_energy = np.where(inside, 4 * self.epsilon * (c12 - c6) - e0, 0.0)
        # force on i from j: -dV/dr_i = -24 eps (2 c12 - c6) d / r^2
        f_on_i = np.where(inside, -24 * self.epsilon * (2 * c12 - c6) / r2, 0.0)[:, None] * d
        energies = 0.5 * (gather @ pair_energy)
        self.results = {
            "energy": float(energies.sum()),
            "free_energy": float(energies.sum()),
            "energies": energies,
            "forces": gather @ f_on_i,
        }
        if "stresses" in properties or "stress" in properties:
            # per-atom virial (ASE's convention): stresses_i = 1/(2V) sum_j f_ij (x) d_ij
            outer = (f_on_i[:, :, None] * d[:, None, :]).reshape(-1, 9)
            stresses = 0.5 * (gather @ outer).reshape(n, 3, 3) / atoms.get_volume()
            stress = stresses.sum(axis=0)
            self.results["stresses"] = stresses
            self.results["stress"] = np.array(
                [stress[0, 0], stress[1, 1], stress[2, 2], stress[1, 2], stress[0, 2], stress[0, 1]]
            )
