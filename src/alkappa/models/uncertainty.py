"""Ensemble uncertainty statistics of one structure (design section 1.2, step 3).

All statistics are computed from the M members' total energies ``E^m`` and forces ``F_i^m`` of
one structure with N atoms. Means over members are plain means (population statistics,
``ddof=0``), as in the definition of U.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

#: statistics returned by :func:`uncertainty_statistics`
STATISTICS = ("force_max", "force_mean", "energy_std_per_atom", "force_max_relative")

#: default regulariser (eV/Å) of the relative force uncertainty's denominator
RELATIVE_EPS = 1e-3


def uncertainty_statistics(
    energies: ArrayLike, forces: ArrayLike, *, eps: float = RELATIVE_EPS
) -> dict[str, float]:
    """Uncertainty of one structure from an ensemble of M predictions.

    With the per-atom force deviation
    ``u_i = sqrt(mean_m |F_i^m - Fbar_i|^2)`` where ``Fbar_i = mean_m F_i^m``:

    ``force_max``
        ``U = max_i u_i`` (eV/Å), the AL selection statistic.
    ``force_mean``
        ``mean_i u_i`` (eV/Å).
    ``energy_std_per_atom``
        ``std_m(E^m) / N`` (eV/atom), population standard deviation of the total energy.
    ``force_max_relative``
        ``U / (mean_i |Fbar_i| + eps)`` (dimensionless): U relative to the typical force
        magnitude of the structure. ``eps`` (eV/Å) keeps it finite for a structure at a
        force-free equilibrium; there it is ``U / eps`` and therefore large, so the relative
        variant is meant for thermally displaced structures, where ``mean_i |Fbar_i|`` is
        much larger than ``eps``.

    Parameters
    ----------
    energies
        Total energies, shape ``(M,)``.
    forces
        Forces, shape ``(M, N, 3)``.
    eps
        Regulariser of the relative statistic, in eV/Å.

    Returns
    -------
    dict[str, float]
        The four statistics of :data:`STATISTICS`. With M = 1 all but the relative one are 0.
    """
    e = np.asarray(energies, dtype=float)
    f = np.asarray(forces, dtype=float)
    if e.ndim != 1 or e.size == 0:
        raise ValueError(f"energies must have shape (M,) with M >= 1, got {e.shape}")
    if f.ndim != 3 or f.shape[2] != 3 or f.shape[0] != e.size or f.shape[1] == 0:
        raise ValueError(f"forces must have shape (M={e.size}, N>0, 3), got {f.shape}")
    n_atoms = f.shape[1]
    mean_force = f.mean(axis=0)  # (N, 3)
    per_atom = np.sqrt(((f - mean_force) ** 2).sum(axis=2).mean(axis=0))  # (N,)
    force_max = float(per_atom.max())
    return {
        "force_max": force_max,
        "force_mean": float(per_atom.mean()),
        "energy_std_per_atom": float(e.std() / n_atoms),
        "force_max_relative": force_max / (float(np.linalg.norm(mean_force, axis=1).mean()) + eps),
    }


def spearman(a: ArrayLike, b: ArrayLike) -> float:
    """Spearman rank correlation of two samples (ties get their mean rank)."""
    from scipy.stats import spearmanr

    return float(spearmanr(np.asarray(a, dtype=float), np.asarray(b, dtype=float)).statistic)


def miscalibration_area(errors: ArrayLike, sigmas: ArrayLike, *, points: int = 101) -> float:
    """Area between the observed and expected coverage of centred Gaussian intervals.

    For each expected proportion ``p`` in [0, 1], the observed proportion is the fraction of
    ``|errors| / sigmas`` within the central ``p`` interval of a standard normal,
    ``Phi^-1((1 + p) / 2)``; the area is the mean of ``|observed - p|`` over ``p`` (trapezoidal
    rule): 0 for perfectly calibrated Gaussian errors, at most 0.5 (Tran et al., "Methods for
    comparing uncertainty quantifications for material property predictions", Mach. Learn.:
    Sci. Technol. 1, 025006 (2020)). ``errors`` and ``sigmas`` are per scalar prediction (for
    forces: per component, with the component's standard deviation).
    """
    from scipy.stats import norm

    z = np.abs(np.asarray(errors, dtype=float)) / np.asarray(sigmas, dtype=float)
    z = z.reshape(-1)
    p = np.linspace(0.0, 1.0, points)
    bounds = norm.ppf(0.5 * (1.0 + p))
    observed = np.array([np.mean(z <= b) for b in bounds])
    gap = np.abs(observed - p)
    return float(np.sum(0.5 * (gap[1:] + gap[:-1]) * np.diff(p)))
