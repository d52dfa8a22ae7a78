"""The ``relax`` section."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from alkappa.settings._base import _Section


@dataclass(frozen=True)
class RelaxSettings(_Section):
    """The ``relax`` section: relaxation of the structure.

    Parameters
    ----------
    enabled
        Whether the structure is relaxed with the oracle.
    cell
        Relax the cell as well as the positions.
    keep_symmetry
        Keep the space group.
    fmax
        eV/Å.
    max_steps
        Optimiser steps.
    """

    SECTION: ClassVar[str] = "relax"

    enabled: bool
    cell: bool
    keep_symmetry: bool
    fmax: float
    max_steps: int
