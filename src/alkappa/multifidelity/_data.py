"""Fidelity as data: grouping labelled frames by level, per-level per-element energy references.

Energies of two oracle levels (GFN1-xTB and GFN2-xTB, PBE and r2SCAN, ...) have unrelated
zeros: the difference of total energies is dominated by per-atom constants that carry no
physics. They are therefore never mixed raw. For each fidelity a per-element reference energy
``e_f(Z)`` is fitted by least squares, ``E ~ sum_i e_f(Z_i)``, and every model in this package is
trained on referenced energies ``E - sum_i e_f(Z_i)``; the reference is added back when the
model predicts at fidelity ``f``. Forces and stress are unaffected. When all frames share one
composition the fit is rank-deficient; the minimum-norm solution is used, which gives every
frame of that composition the same (mean) reference, which is all that matters.

The same per-fidelity per-element shift is what SevenNet's multi-fidelity training does with
``use_modal_wise_shift`` (Kim et al., "Data-efficient multifidelity training for
high-fidelity machine learning interatomic potentials", arXiv:2409.07947); doing it here keeps
the baselines (high-only, transfer, Delta) on exactly the same footing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from ase.data import chemical_symbols

from alkappa.io.dataset import labels, with_labels

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from ase import Atoms


def fidelity_of(atoms: Atoms) -> str:
    """The ``info["fidelity"]`` of a labelled frame; a clear error when it is missing."""
    fid = atoms.info.get("fidelity")
    if fid is None or str(fid) == "":
        raise ValueError(
            "labelled frame has no info['fidelity'] (every frame of a multi-fidelity "
            "dataset must say which oracle level labelled it)"
        )
    return str(fid)


def group_by_fidelity(
    frames: Iterable[Atoms], levels: Sequence[str] | None = None
) -> dict[str, list[Atoms]]:
    """Frames grouped by fidelity, in the order of ``levels`` (low to high) when given.

    Raises
    ------
    ValueError
        If a frame lacks a fidelity, or has one that is not among ``levels``.
    """
    groups: dict[str, list[Atoms]] = {name: [] for name in levels or ()}
    for atoms in frames:
        fid = fidelity_of(atoms)
        if levels is not None and fid not in groups:
            raise ValueError(f"frame of fidelity '{fid}' is not one of the levels {list(levels)}")
        groups.setdefault(fid, []).append(atoms)
    return groups


@dataclass
class EnergyReference:
    """Per-fidelity, per-element reference energies (eV per atom of that element).

    Attributes
    ----------
    shifts
        ``{fidelity: {symbol: energy}}``.
    """

    shifts: dict[str, dict[str, float]] = field(default_factory=dict)

    def energy(self, atoms: Atoms, fidelity: str) -> float:
        """``sum_i e_f(Z_i)`` of ``atoms`` at ``fidelity``."""
        if fidelity not in self.shifts:
            raise KeyError(f"no energy reference for fidelity '{fidelity}'")
        table = self.shifts[fidelity]
        missing = sorted(set(atoms.get_chemical_symbols()) - set(table))
        if missing:
            raise KeyError(f"no '{fidelity}' reference energy for element(s) {missing}")
        return float(sum(table[s] for s in atoms.get_chemical_symbols()))

    def to_dict(self) -> dict[str, Any]:
        return {"shifts": self.shifts}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnergyReference:
        return cls({f: {s: float(e) for s, e in t.items()} for f, t in data["shifts"].items()})


def fit_element_energies(frames: Sequence[Atoms]) -> dict[str, float]:
    """Least-squares per-element energies ``e(Z)`` with ``E ~ sum_i e(Z_i)`` (minimum norm)."""
    if not frames:
        raise ValueError("cannot fit reference energies to an empty set of frames")
    species = sorted({z for a in frames for z in a.numbers})
    counts = np.array([[np.count_nonzero(a.numbers == z) for z in species] for a in frames], float)
    energies = np.array([labels(a)["energy"] for a in frames])
    coef, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return {chemical_symbols[z]: float(c) for z, c in zip(species, coef, strict=True)}


def fit_reference(frames: Iterable[Atoms]) -> EnergyReference:
    """Fit one :func:`fit_element_energies` table per fidelity found in ``frames``."""
    return EnergyReference(
        {fid: fit_element_energies(group) for fid, group in group_by_fidelity(frames).items()}
    )


def referenced(frames: Iterable[Atoms], reference: EnergyReference) -> list[Atoms]:
    """Copies of ``frames`` with energies minus their fidelity's reference (info kept)."""
    out = []
    for atoms in frames:
        lab = labels(atoms)
        new = with_labels(
            atoms,
            float(lab["energy"]) - reference.energy(atoms, fidelity_of(atoms)),
            np.asarray(lab["forces"]),
            lab.get("stress"),  # type: ignore[arg-type]
        )
        new.info = dict(atoms.info)
        out.append(new)
    return out


def difference_frames(high: Sequence[Atoms], low: Sequence[Atoms], name: str) -> list[Atoms]:
    """Frames labelled with ``high - low`` (energy, forces, stress): Delta-learning targets.

    ``high[i]`` and ``low[i]`` must be the same structure; their ``info["fidelity"]`` of the
    result is ``name``.
    """
    if len(high) != len(low):
        raise ValueError(f"{len(high)} high-level frames but {len(low)} low-level ones")
    out = []
    for h, lo in zip(high, low, strict=True):
        if len(h) != len(lo) or not np.allclose(h.positions, lo.positions, atol=1e-5):
            raise ValueError("Delta-learning needs both levels on the same structures")
        lh, ll = labels(h), labels(lo)
        stress = None
        if "stress" in lh and "stress" in ll:
            stress = np.asarray(lh["stress"]) - np.asarray(ll["stress"])
        new = with_labels(
            h,
            float(lh["energy"]) - float(ll["energy"]),
            np.asarray(lh["forces"]) - np.asarray(ll["forces"]),
            stress,
        )
        new.info = {**h.info, "fidelity": name}
        out.append(new)
    return out
