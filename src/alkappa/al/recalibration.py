"""Recalibrating the ensemble's force uncertainty on held-out frames.

Deep ensembles of MLIPs are typically over-confident: the observed force error is several
times the members' spread. Two maps from the raw per-atom spread ``sigma_i`` (see
:mod:`alkappa.al.calibration`) to a calibrated one are fitted on the test set:

* **scale** (sigma scaling; Levi et al., Sensors 22, 5540 (2022)): ``sigma' = s sigma``.
  Under ``dF_ic ~ N(0, (s sigma_i / sqrt 3)^2)`` per Cartesian component the maximum
  likelihood factor is ``s^2 = mean(z_ic^2)``, ``z_ic = dF_ic / (sigma_i / sqrt 3)``.
* **isotonic** (Kuleshov, Fenner and Ermon, ICML 2018, "Accurate uncertainties for deep
  learning using calibrated regression", here on the variance as in Busk et al., Mach.
  Learn.: Sci. Technol. 3, 015012 (2022)): ``sigma'^2 = g(sigma)`` with ``g`` the
  non-decreasing least-squares fit of ``|dF_i|^2`` on ``sigma_i`` (pool-adjacent-violators),
  linear between the blocks' centres and proportional (``g(sigma) = sigma^2 g(x)/x^2`` at the
  end knot ``x``) outside them, so frames more uncertain than any test frame keep their order.

Both maps are monotone, so Spearman's rho between sigma and the error is unchanged by a map
fitted once: recalibration sizes the uncertainty, it cannot re-rank it. The "after" scores of
:func:`recalibrate_forces` are out of sample (each fold of test frames is scored with the map
fitted on the others), so they do not reward a map for fitting its own data; the map kept for
the selection is fitted on all test frames.

The AL selection normalises U by the test set's mean and standard deviation,
``z = (U - U_test) / sigma_test``: a global factor ``s`` multiplies all three and cancels, so
``scale`` changes the selection only together with an absolute threshold (eV/Å); the
non-linear isotonic map also changes the shape of the test distribution and so the
relative selection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from alkappa.al.calibration import calibration, per_atom_force_sigma

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from numpy.typing import ArrayLike

METHODS = ("scale", "isotonic")


class MapRecord(TypedDict):
    """A :class:`CalibrationMap` as JSON (:meth:`CalibrationMap.to_dict`)."""

    method: str
    scale: float
    knots: list[float]
    values: list[float]


class CalibrationScores(TypedDict):
    """How well a force sigma is calibrated (``before`` and ``after`` a recalibration)."""

    spearman_atom: float | None
    miscalibration_area_atom: float | None
    rms_sigma_atom: float
    rms_error_atom: float
    spearman_frame_max: float | None


@dataclass(frozen=True)
class CalibrationMap:
    """A monotone map from raw to calibrated force sigma (eV/Å).

    Attributes
    ----------
    method
        ``"identity"``, ``"scale"`` or ``"isotonic"``.
    scale
        The factor of ``scale``.
    knots, values
        Isotonic: increasing raw sigma knots and the fitted mean squared error at each.
    """

    method: str
    scale: float = 1.0
    knots: tuple[float, ...] = ()
    values: tuple[float, ...] = ()

    def __call__(self, sigma: ArrayLike) -> np.ndarray:
        """The calibrated sigma of raw ``sigma`` (any shape; NaN stays NaN)."""
        s = np.asarray(sigma, dtype=float)
        if self.method == "identity":
            return s.copy()
        if self.method == "scale":
            return self.scale * s
        if self.method != "isotonic":
            raise ValueError(f"unknown calibration method {self.method!r}")
        x, y = np.asarray(self.knots), np.asarray(self.values)
        var = np.interp(s, x, y)
        # proportional outside the knots: keeps the ranking of frames beyond the test set
        low, high = s < x[0], s > x[-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            var = np.where(low, s**2 * y[0] / x[0] ** 2, var) if x[0] > 0 else var
            var = np.where(high, s**2 * y[-1] / x[-1] ** 2, var)
        return np.sqrt(np.maximum(var, 0.0))

    def to_dict(self) -> MapRecord:
        return {
            "method": self.method,
            "scale": self.scale,
            "knots": list(self.knots),
            "values": list(self.values),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CalibrationMap:
        return cls(
            method=data["method"],
            scale=float(data.get("scale", 1.0)),
            knots=tuple(float(v) for v in data.get("knots", ())),
            values=tuple(float(v) for v in data.get("values", ())),
        )


def fit_scale(sigma: ArrayLike, delta: ArrayLike) -> CalibrationMap:
    """Maximum-likelihood factor of per-atom ``sigma`` (N,) for force errors ``delta`` (N, 3)."""
    s = np.asarray(sigma, dtype=float).reshape(-1)
    d = np.asarray(delta, dtype=float).reshape(-1, 3)
    ok = np.isfinite(s) & (s > 0) & np.isfinite(d).all(axis=1)
    if not ok.any():
        raise ValueError("no atom with a positive, finite sigma to calibrate on")
    z2 = (d[ok] ** 2).sum(axis=1) / (s[ok] ** 2 / 3.0)  # sum of the three z_ic^2
    return CalibrationMap("scale", scale=float(np.sqrt(z2.sum() / (3.0 * ok.sum()))))


def isotonic_fit(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Non-decreasing least-squares fit of ``y`` on ``x`` (pool-adjacent-violators).

    Returns
    -------
    knots, values
        Per block of the fit, the mean ``x`` and the fitted (mean) ``y``; ``values`` is
        strictly increasing (equal neighbours are pooled).
    """
    xs = np.asarray(x, dtype=float).reshape(-1)
    ys = np.asarray(y, dtype=float).reshape(-1)
    order = np.argsort(xs, kind="stable")
    xs, ys = xs[order], ys[order]
    # blocks as (sum x, sum y, count); a new point merges backwards while it violates order
    sx: list[float] = []
    sy: list[float] = []
    n: list[int] = []
    for xi, yi in zip(xs, ys, strict=True):
        sx.append(xi)
        sy.append(yi)
        n.append(1)
        while len(n) > 1 and sy[-2] / n[-2] >= sy[-1] / n[-1]:
            cx, cy, cn = sx.pop(), sy.pop(), n.pop()
            sx[-1] += cx
            sy[-1] += cy
            n[-1] += cn
    count = np.asarray(n, dtype=float)
    return np.asarray(sx) / count, np.asarray(sy) / count


def fit_isotonic(sigma: ArrayLike, delta: ArrayLike) -> CalibrationMap:
    """Isotonic map of per-atom ``sigma`` (N,) to the RMS of force errors ``delta`` (N, 3)."""
    s = np.asarray(sigma, dtype=float).reshape(-1)
    d = np.asarray(delta, dtype=float).reshape(-1, 3)
    ok = np.isfinite(s) & np.isfinite(d).all(axis=1)
    if ok.sum() < 2:
        raise ValueError("fewer than two atoms to calibrate on")
    knots, values = isotonic_fit(s[ok], (d[ok] ** 2).sum(axis=1))
    if knots.size == 1:  # no trend at all: one block is a constant, not a map; scale instead
        return fit_scale(s, d)
    return CalibrationMap("isotonic", knots=tuple(knots), values=tuple(values))


def fit_map(method: str, sigma: ArrayLike, delta: ArrayLike) -> CalibrationMap:
    """The ``method`` (``scale`` or ``isotonic``) map fitted on per-atom sigma and errors."""
    if method == "scale":
        return fit_scale(sigma, delta)
    if method == "isotonic":
        return fit_isotonic(sigma, delta)
    raise ValueError(f"unknown calibration method {method!r}; known: {', '.join(METHODS)}")


def _scores(sigmas: Sequence[np.ndarray], deltas: Sequence[np.ndarray]) -> CalibrationScores:
    """Spearman rho and miscalibration area per atom, Spearman rho of the frame maximum."""
    s = np.concatenate(sigmas)
    d = np.concatenate(deltas)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (d / (s[:, None] / np.sqrt(3.0))).reshape(-1)
    atom = calibration(s, np.linalg.norm(d, axis=1), z=z)
    frame = calibration(
        [x.max() for x in sigmas],
        [np.linalg.norm(x, axis=1).max() for x in deltas],
        coverage=False,
    )
    return {
        "spearman_atom": atom.spearman,
        "miscalibration_area_atom": atom.miscalibration_area,
        "rms_sigma_atom": float(np.sqrt(np.nanmean(s**2))),
        "rms_error_atom": float(np.sqrt(np.mean((d**2).sum(axis=1)))),
        "spearman_frame_max": frame.spearman,
    }


def recalibrate_forces(
    ref_forces: Sequence[ArrayLike],
    member_forces: Sequence[ArrayLike],
    *,
    sigma: Sequence[ArrayLike] | None = None,
    methods: Sequence[str] = METHODS,
    folds: int = 2,
) -> dict[str, Any]:
    """Fit each recalibration map on held-out frames and score it before and after.

    Parameters
    ----------
    ref_forces
        Per frame, the reference forces (N_f, 3), eV/Å.
    member_forces
        Per frame, the members' forces (M, N_f, 3), eV/Å.
    sigma
        Per frame, the model's own per-atom force sigma (N_f,), eV/Å, in place of the
        members' spread (a one-model uncertainty such as LLPR's); ``None``: the spread.
    methods
        Maps to fit (``scale``, ``isotonic``).
    folds
        Frames are split into this many interleaved folds; each fold's "after" score uses
        the map fitted on the other folds (fewer frames than folds: in-sample).

    Returns
    -------
    dict
        ``before`` (scores of the raw sigma: ``spearman_atom``, ``miscalibration_area_atom``,
        ``rms_sigma_atom``, ``rms_error_atom``, ``spearman_frame_max``), ``folds``, and per
        method ``{"map": CalibrationMap.to_dict() fitted on all frames, "after": scores}``.
    """
    if sigma is None:
        sigmas = [per_atom_force_sigma(np.asarray(m, dtype=float)) for m in member_forces]
    else:
        sigmas = [np.asarray(s, dtype=float).reshape(-1) for s in sigma]
        if len(sigmas) != len(member_forces):
            raise ValueError(f"{len(sigmas)} force sigmas for {len(member_forces)} frames")
    deltas = [
        np.asarray(m, dtype=float).mean(axis=0) - np.asarray(r, dtype=float)
        for r, m in zip(ref_forces, member_forces, strict=True)
    ]
    n = len(sigmas)
    if n == 0:
        raise ValueError("no frames to recalibrate on")
    k = max(1, min(int(folds), n)) if n >= 2 else 1
    out: dict[str, Any] = {"before": _scores(sigmas, deltas), "folds": k}
    cat = np.concatenate
    for method in methods:
        full = fit_map(method, cat(sigmas), cat(deltas))
        calibrated: list[np.ndarray] = [np.empty(0)] * n
        for f in range(k):
            held = [i for i in range(n) if i % k == f]
            rest = [i for i in range(n) if i % k != f] or held
            fitted = fit_map(method, cat([sigmas[i] for i in rest]), cat([deltas[i] for i in rest]))
            for i in held:
                calibrated[i] = fitted(sigmas[i])
        out[method] = {"map": full.to_dict(), "after": _scores(calibrated, deltas)}
    return out
