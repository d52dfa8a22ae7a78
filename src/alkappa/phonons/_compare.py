"""MLIP against oracle phonons: frequency errors on a common q-mesh."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    from phonopy import Phonopy


def compare_phonons(
    reference: Phonopy, other: Phonopy, *, mesh: float | Sequence[int] = (20, 20, 20)
) -> dict[str, Any]:
    """Frequency errors of ``other`` against ``reference`` (e.g. MLIP against oracle).

    Both are evaluated on the symmetry-reduced Gamma-centred mesh of ``reference``; every
    mode counts with the weight of its q-point, so the statistics are Brillouin-zone averages
    over all modes. Both objects must describe the same primitive cell (same number of bands).

    Returns
    -------
    dict
        ``rmse``, ``mae``, ``max_abs_error`` (THz), ``rms_reference`` (THz, RMS frequency of the
        reference) and ``relative_rmse = rmse / rms_reference``, ``mean_error`` (THz, other minus
        reference), ``mesh`` and ``n_qpoints``.
    """
    reference.run_mesh(mesh, is_mesh_symmetry=True, is_gamma_center=True)
    qpoints = np.asarray(reference.mesh.qpoints, dtype=float)
    weights = np.asarray(reference.mesh.weights, dtype=float)
    f_ref = np.asarray(reference.mesh.frequencies, dtype=float)
    other.run_qpoints(qpoints)
    f_other = np.asarray(other.qpoints.frequencies, dtype=float)
    if f_other.shape != f_ref.shape:
        raise ValueError(
            f"different numbers of bands ({f_ref.shape[1]} and {f_other.shape[1]}): "
            "the two force-constant sets are not for the same primitive cell"
        )
    out = frequency_errors(f_ref, f_other, weights)
    out["mesh"] = [int(n) for n in reference.mesh.mesh_numbers]
    out["n_qpoints"] = len(qpoints)
    return out


def frequency_errors(
    reference: np.ndarray, other: np.ndarray, weights: np.ndarray | None = None
) -> dict[str, float]:
    """Weighted error statistics of ``other`` against ``reference`` (arrays (n_q, n_band))."""
    ref = np.asarray(reference, dtype=float)
    oth = np.asarray(other, dtype=float)
    w = np.ones(len(ref)) if weights is None else np.asarray(weights, dtype=float)
    w = np.broadcast_to(w[:, None], ref.shape)
    diff = oth - ref
    total = float(w.sum())
    rmse = float(np.sqrt((w * diff**2).sum() / total))
    rms_ref = float(np.sqrt((w * ref**2).sum() / total))
    return {
        "rmse": rmse,
        "mae": float((w * np.abs(diff)).sum() / total),
        "max_abs_error": float(np.abs(diff).max()),
        "mean_error": float((w * diff).sum() / total),
        "rms_reference": rms_ref,
        "relative_rmse": rmse / rms_ref if rms_ref > 0 else float("nan"),
    }
