"""Structure preparation: unit cell, supercell, geometry checks, relaxation with the oracle."""

from __future__ import annotations

from alkappa.structure._build import (
    build_supercell,
    check_geometry,
    nearest_neighbour_distance,
    read_unit_cell,
    resize_supercell,
    supercell_matrix,
)
from alkappa.structure._relax import RelaxResult, has_stress, relax_structure

__all__ = [
    "RelaxResult",
    "build_supercell",
    "check_geometry",
    "has_stress",
    "nearest_neighbour_distance",
    "read_unit_cell",
    "relax_structure",
    "resize_supercell",
    "supercell_matrix",
]
