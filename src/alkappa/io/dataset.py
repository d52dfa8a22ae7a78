"""Datasets as extended XYZ: energy, stress and provenance in ``info``, forces in ``arrays``.

Provenance keys every labelled frame carries (design section 2): ``fidelity``, ``oracle``,
``source`` (what produced the structure: ``relax``, ``initial``, ``test``, ``al``, ...),
``iteration`` and, for frames taken from MD, ``trajectory``, ``time`` (fs) and ``temperature`` (K).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import ase.io
import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator

from alkappa.io._atomic import atomic_path

if TYPE_CHECKING:
    import os
    from collections.abc import Iterable

    from ase import Atoms


def read_dataset(path: str | os.PathLike[str]) -> list[Atoms]:
    """All frames of an extxyz file (an empty file is an empty dataset)."""
    p = Path(path)
    if p.stat().st_size == 0:
        return []
    return list(ase.io.iread(p, index=":", format="extxyz"))


def read_structure(path: str | os.PathLike[str]) -> Atoms:
    """The first structure of an extxyz file, without its labels (a relaxed cell, say)."""
    atoms = read_dataset(path)[0]
    atoms.calc = None
    return atoms


def write_dataset(path: str | os.PathLike[str], frames: Iterable[Atoms]) -> None:
    """Write ``frames`` to extxyz atomically (an empty list gives an empty file)."""
    frames = list(frames)
    with atomic_path(path) as tmp:
        if frames:
            ase.io.write(tmp, frames, format="extxyz")
        else:
            tmp.write_text("")


def labels(atoms: Atoms) -> dict[str, np.ndarray | float]:
    """Energy, forces and (if present) stress stored on a labelled frame."""
    calc = atoms.calc
    if calc is None or "energy" not in calc.results or "forces" not in calc.results:
        raise ValueError("frame carries no energy/forces labels")
    out: dict[str, np.ndarray | float] = {
        "energy": float(calc.results["energy"]),
        "forces": np.asarray(calc.results["forces"], dtype=float),
    }
    if "stress" in calc.results:
        out["stress"] = np.asarray(calc.results["stress"], dtype=float)
    return out


def strip_labels(atoms: Atoms) -> Atoms:
    """A copy of ``atoms`` with no calculator and no labels (what an oracle gets to see)."""
    out = atoms.copy()
    out.calc = None
    for key in ("energy", "free_energy", "stress", "forces"):
        out.info.pop(key, None)
        if key in out.arrays:
            del out.arrays[key]
    return out


def with_labels(
    atoms: Atoms, energy: float, forces: np.ndarray, stress: np.ndarray | None
) -> Atoms:
    out = atoms.copy()
    results: dict[str, object] = {"energy": energy, "forces": forces}
    if stress is not None:
        results["stress"] = stress
    out.calc = SinglePointCalculator(out, **results)
    return out
