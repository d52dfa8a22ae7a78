"""alkappa: active learning of reliable MLIPs and lattice thermal conductivity.

The small public surface; everything else lives in the subpackages (``alkappa.al``,
``alkappa.oracles``, ``alkappa.models``, ``alkappa.structure``, ``alkappa.io``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alkappa.models.ensemble import EnsembleCalculator

__version__ = "0.1.0"


def load_model(
    directory: str | Path, device: str = "cpu", threads: int | None = None, **options: Any
) -> EnsembleCalculator:
    """The final ensemble of a campaign as one ASE calculator.

    ``atoms.calc = alkappa.load_model("results/CuI/model", threads=4)`` gives the
    ensemble-mean energy, forces and stress, and the ensemble uncertainty in
    ``atoms.calc.results``. It is the model plugin's fast ensemble calculator (for NequIP: one
    neighbour list per step, compiled members when ``member_*.nequip.pt2`` files are present,
    members spread over ``threads``); ``options`` go to
    :func:`alkappa.models.ensemble.load_ensemble` (e.g. ``compile=True`` to compile the
    members first, worth it for long MD).
    """
    from alkappa.io import read_json
    from alkappa.models import ensemble_members
    from alkappa.models.ensemble import load_ensemble

    directory = Path(directory)
    spec = read_json(directory / "ensemble.json")
    return load_ensemble(
        ensemble_members(directory),
        device=device,
        model=spec["model"],
        threads=threads,
        **options,
    )


__all__ = ["__version__", "load_model"]
