"""Test-set errors of an ensemble and the uncertainty statistics that normalise the selection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from ase import units

from alkappa.al.explore import frame_uncertainty
from alkappa.io.dataset import labels

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ase import Atoms
    from ase.calculators.calculator import Calculator

EV_PER_A3_TO_GPA = 1.0 / units.GPa


def error_statistics(predicted: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and maximum absolute error over all entries of two arrays."""
    diff = np.asarray(predicted, dtype=float) - np.asarray(reference, dtype=float)
    if diff.size == 0:
        return {"rmse": float("nan"), "mae": float("nan"), "max": float("nan")}
    return {
        "rmse": float(np.sqrt(np.mean(diff**2))),
        "mae": float(np.mean(np.abs(diff))),
        "max": float(np.max(np.abs(diff))),
    }


def evaluate_ensemble(frames: Sequence[Atoms], calculator: Calculator) -> dict[str, Any]:
    """Errors of the ensemble mean on labelled ``frames`` and the per-frame uncertainties.

    Returns energy errors per atom (meV/atom), force errors (eV/Å, per Cartesian component),
    stress errors (GPa), and for every uncertainty statistic its per-frame values with mean
    and standard deviation (``U_test`` and ``sigma_test`` of the selection).
    """
    e_pred, e_ref, f_pred, f_ref, s_pred, s_ref = [], [], [], [], [], []
    per_frame: dict[str, list[float]] = {}
    for atoms in frames:
        ref = labels(atoms)
        work = atoms.copy()
        work.calc = calculator
        n = len(work)
        e_pred.append(work.get_potential_energy() / n)
        e_ref.append(float(ref["energy"]) / n)
        f_pred.append(work.get_forces())
        f_ref.append(np.asarray(ref["forces"]))
        if "stress" in ref and work.pbc.all():
            s_pred.append(work.get_stress(voigt=True))
            s_ref.append(np.asarray(ref["stress"]))
        for key, value in frame_uncertainty(calculator).items():
            per_frame.setdefault(key, []).append(value)
    out: dict[str, Any] = {
        "n_frames": len(frames),
        "energy_per_atom_meV": {k: 1000.0 * v for k, v in error_statistics(e_pred, e_ref).items()},
        "forces_eV_per_A": error_statistics(np.concatenate(f_pred), np.concatenate(f_ref))
        if f_pred
        else error_statistics([], []),
        "stress_GPa": {k: v * EV_PER_A3_TO_GPA for k, v in error_statistics(s_pred, s_ref).items()}
        if s_pred
        else error_statistics([], []),
        "uncertainty": {
            key: {
                "mean": float(np.mean(values)),
                "std": float(np.std(values)),
                "per_frame": [float(v) for v in values],
            }
            for key, values in per_frame.items()
        },
    }
    return out
