"""alkappa: active learning of reliable MLIPs and lattice thermal conductivity.

The small public surface; everything else lives in the subpackages (``alkappa.al``,
``alkappa.oracles``, ``alkappa.models``, ``alkappa.structure``, ``alkappa.io``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alkappa.models.ensemble import EnsembleCalculator

__version__ = "0.1.0"


def load_model(directory: str | Path, device: str = "cpu") -> EnsembleCalculator:
    """The final ensemble of a campaign as one ASE calculator.

    ``atoms.calc = alkappa.load_model("results/CuI/model")`` gives the ensemble-mean energy,
    forces and stress, and the ensemble uncertainty in ``atoms.calc.results``.
    """
    from alkappa.io import read_json
    from alkappa.models.ensemble import load_ensemble

    directory = Path(directory)
    spec = read_json(directory / "ensemble.json")
    return load_ensemble(
        [directory / name for name in spec["members"]], device=device, model=spec["model"]
    )


__all__ = ["__version__", "load_model"]
