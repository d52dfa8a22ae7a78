"""The lattice-dynamics basis: force constants of order 2..n in hiphive's cluster space.

The potential energy is expanded in the displacements ``u`` from a reference lattice,
``E = E0 + sum_n 1/n! Phi^(n) u^n``, with the force constants ``Phi^(n)`` written as linear
combinations of symmetry-adapted eigentensors (hiphive: Eriksson, Fransson, Erhart,
Adv. Theory Simul. 2, 1800184 (2019)). Forces are linear in the free parameters theta:
``F = A(u) theta`` with ``A`` from :meth:`hiphive.force_constant_model.ForceConstantModel.
get_fit_matrix`. Since the order-n term is homogeneous of degree n in u, its energy is
``-u . F_n / n``, so the energy is linear in theta too (Euler's theorem), up to ``E0``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ase import Atoms
    from hiphive.force_constants import ForceConstants


class FCBasis:
    """Symmetry-reduced force-constant basis on one reference supercell.

    Parameters
    ----------
    reference
        The ideal supercell (periodic in all three directions) the displacements refer to.
    cutoffs
        Cluster cutoffs in Å, one per order starting at order 2 (``[r2, r3, r4]``: up to
        fourth order).
    symprec
        Symmetry tolerance (Å) of the cluster-space construction.
    """

    def __init__(self, reference: Atoms, cutoffs: Sequence[float], *, symprec: float = 1e-3):
        cutoffs = [float(c) for c in cutoffs]
        if not cutoffs or any(c <= 0 for c in cutoffs):
            raise ValueError(f"cutoffs must be positive, one per order from 2 on: {cutoffs}")
        if not np.all(reference.pbc):
            raise ValueError("the reference structure must be periodic in all directions")
        half = _max_sphere_radius(np.asarray(reference.cell))
        if cutoffs[0] > half + 1e-6:
            raise ValueError(
                f"the second-order cutoff {cutoffs[0]} Å exceeds half the supercell's smallest "
                f"width ({half:.3f} Å): use a larger supercell or a smaller cutoff"
            )
        from ase.spacegroup.symmetrize import check_symmetry

        if len(check_symmetry(reference, symprec).rotations) <= 1:
            raise ValueError(
                f"the reference structure has no symmetry at symprec={symprec} Å: it must be "
                "the ideal (relaxed) lattice, not a displaced snapshot"
            )
        from hiphive import ClusterSpace
        from hiphive.force_constant_model import ForceConstantModel

        logging.getLogger("hiphive").setLevel(logging.WARNING)
        self.reference = reference.copy()
        self.reference.calc = None
        self.cutoffs = cutoffs
        self.symprec = float(symprec)
        self.cluster_space = ClusterSpace(self.reference, cutoffs, symprec=symprec)
        self._fcm = ForceConstantModel(self.reference, self.cluster_space)
        orders = np.zeros(self.cluster_space.n_dofs, dtype=int)
        for order in self.cluster_space.cutoffs.orders:
            orders[self.cluster_space.get_parameter_indices(order)] = order
        #: order (2, 3, ...) of each parameter
        self.orders = orders

    @property
    def n_params(self) -> int:
        """Number of free parameters."""
        return int(self.cluster_space.n_dofs)

    @property
    def n_atoms(self) -> int:
        return len(self.reference)

    def displacements(self, atoms: Atoms) -> np.ndarray:
        """Displacements (N, 3) of ``atoms`` from the reference (minimum image)."""
        from ase.geometry import find_mic

        if len(atoms) != self.n_atoms or not np.array_equal(atoms.numbers, self.reference.numbers):
            raise ValueError(
                f"structure ({atoms.get_chemical_formula()}, {len(atoms)} atoms) does not match "
                f"the reference supercell ({self.reference.get_chemical_formula()}): same atoms "
                "in the same order are needed"
            )
        if np.abs(np.asarray(atoms.cell) - np.asarray(self.reference.cell)).max() > 1e-4:
            raise ValueError("the cell differs from the reference supercell's")
        raw = atoms.positions - self.reference.positions
        return find_mic(raw, self.reference.cell, pbc=True)[0]

    def design(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Force design matrix (3N, P), energy row (P,) and displacements (N, 3) of ``atoms``."""
        u = self.displacements(atoms)
        return (*self.design_from_displacements(u), u)

    def design_from_displacements(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Force design matrix (3N, P) and energy row (P,) for displacements ``u`` (N, 3)."""
        a = self._fcm.get_fit_matrix(np.ascontiguousarray(u, dtype=float))
        energy_row = -(u.reshape(-1) @ a) / self.orders
        return a, energy_row

    def force_constants(
        self, parameters: np.ndarray, supercell: Atoms | None = None
    ) -> ForceConstants:
        """hiphive ``ForceConstants`` of ``parameters`` on ``supercell`` (default: reference)."""
        from hiphive import ForceConstantPotential

        fcp = ForceConstantPotential(self.cluster_space, np.asarray(parameters, dtype=float))
        return fcp.get_force_constants(supercell if supercell is not None else self.reference)


def _max_sphere_radius(cell: np.ndarray) -> float:
    """Half the smallest perpendicular width of the cell."""
    volume = abs(np.linalg.det(cell))
    widths = [
        volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)
    ]
    return 0.5 * min(widths)
