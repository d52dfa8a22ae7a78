"""The active-learning loop: exploration, uncertainty, selection, convergence (design 1.2)."""

from __future__ import annotations

from alkappa.al.convergence import decide
from alkappa.al.selection import acceptance_probability, energy_viability, select_frames
from alkappa.models.uncertainty import uncertainty_statistics

__all__ = [
    "acceptance_probability",
    "decide",
    "energy_viability",
    "select_frames",
    "uncertainty_statistics",
]
