"""Is the ensemble's uncertainty a trustworthy error estimate? Calibration of predicted sigma.

The AL loop selects frames by the ensemble force spread, so the spread must rank and size the
real errors. Three complementary measures, each on pairs (predicted sigma, actual error):

* **Rank correlation** (Spearman's rho between sigma and |error|): does a larger uncertainty
  mean a larger error? This is all the selection needs.
* **Binned calibration curve**: samples sorted by sigma and split into equal-count (quantile)
  bins; per bin the RMS of sigma against the RMS of the error. A calibrated ensemble lies on
  the diagonal (Levi et al., Sensors 22, 5540 (2022), "Evaluating and calibrating uncertainty
  prediction in regression tasks", RMSE-vs-RMV reliability diagrams).
* **Miscalibration area** (Tran et al., Mach. Learn.: Sci. Technol. 1, 025006 (2020), "Methods
  for comparing uncertainty quantifications for material property predictions"; the same
  definition as in Uncertainty Toolbox, Chung et al., arXiv:2109.10254): under the Gaussian
  assumption ``error ~ N(0, sigma^2)`` the z-scores ``z = error / sigma`` are standard normal,
  so the central interval ``|z| <= Phi^{-1}((1 + p) / 2)`` should contain a fraction ``p`` of
  the samples for every confidence level p. The calibration (coverage) curve is the observed
  fraction against p over ``p in [0, 1]``, and the miscalibration area is the area between it
  and the diagonal, ``A = int_0^1 |p_obs(p) - p| dp`` (trapezoidal rule on an even grid of
  p). It is 0 for perfect calibration and at most 1/2 (every |z| zero or infinite);
  over-confident ensembles (errors larger than sigma) lie below the diagonal, under-confident
  ones above.

For forces (:func:`force_calibration`) the per-atom predicted uncertainty is the ensemble
spread ``sigma_i = sqrt(mean_m |F_i^m - Fbar_i|^2)`` (the quantity whose maximum over atoms is
the AL statistic U) and the actual error is ``|ΔF_i| = |Fbar_i - F_i^ref|``; both are norms
over the three Cartesian components, so ``E|ΔF_i|^2 = sigma_i^2`` for a calibrated ensemble and
the binned curve compares like with like. For the coverage the z-scores are per Cartesian
component, ``z_ic = ΔF_ic / (sigma_i / sqrt 3)``: ``sigma_i / sqrt 3`` is the RMS of the three
per-component standard deviations, so a calibrated, isotropic ensemble has unit-variance z
(dividing by ``sigma_i`` itself would make every ensemble look under-confident by sqrt 3).
Per frame, the maximum and the RMS over atoms are compared (rank correlation and binned curve;
their ratio has no Gaussian reference, so no coverage is computed).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast

import numpy as np

from alkappa.io import atomic_path

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping, Sequence

    from numpy.typing import ArrayLike


class CalibrationRecord(TypedDict):
    """A :class:`CalibrationResult` as JSON (:meth:`CalibrationResult.to_dict`), as the
    metrics records hold it."""

    quantity: str
    unit: str
    n_samples: int
    spearman: float | None
    spearman_pvalue: float | None
    bin_sigma_rms: list[float]
    bin_error_rms: list[float]
    bin_count: list[int]
    bin_sigma_min: list[float]
    bin_sigma_max: list[float]
    expected_coverage: list[float] | None
    observed_coverage: list[float] | None
    miscalibration_area: float | None
    n_z: int


class ForceCalibrationRecord(TypedDict):
    """A :class:`ForceCalibration` as JSON (:meth:`ForceCalibration.to_dict`)."""

    atom: CalibrationRecord
    frame_max: CalibrationRecord
    frame_rms: CalibrationRecord


@dataclass
class CalibrationResult:
    """Calibration of one predicted uncertainty against its actual error.

    Attributes
    ----------
    quantity
        What is compared, e.g. ``"force per atom"`` (for titles and records).
    unit
        Unit of sigma and error.
    n_samples
        Number of (sigma, error) pairs.
    spearman, spearman_pvalue
        Spearman's rank correlation between sigma and |error| and its p-value (None if
        undefined: fewer than 3 samples or a constant input).
    bin_sigma_rms, bin_error_rms, bin_count, bin_sigma_min, bin_sigma_max
        The binned calibration curve: per equal-count bin of sigma, the RMS of sigma, the RMS
        of the error, the number of samples and the range of sigma.
    expected_coverage, observed_coverage
        The coverage curve (None where no z-scores are defined).
    miscalibration_area
        Area between the coverage curve and the diagonal (None without coverage).
    n_z
        Number of z-scores (all but NaN) behind the coverage curve.
    """

    quantity: str
    unit: str
    n_samples: int
    spearman: float | None
    spearman_pvalue: float | None
    bin_sigma_rms: list[float] = field(default_factory=list)
    bin_error_rms: list[float] = field(default_factory=list)
    bin_count: list[int] = field(default_factory=list)
    bin_sigma_min: list[float] = field(default_factory=list)
    bin_sigma_max: list[float] = field(default_factory=list)
    expected_coverage: list[float] | None = None
    observed_coverage: list[float] | None = None
    miscalibration_area: float | None = None
    n_z: int = 0

    def to_dict(self) -> CalibrationRecord:
        """Plain JSON-able dict of every field."""
        return cast("CalibrationRecord", asdict(self))


@dataclass
class ForceCalibration:
    """Force calibration per atom, per frame (max over atoms) and per frame (RMS over atoms)."""

    atom: CalibrationResult
    frame_max: CalibrationResult
    frame_rms: CalibrationResult

    def to_dict(self) -> ForceCalibrationRecord:
        return {
            "atom": self.atom.to_dict(),
            "frame_max": self.frame_max.to_dict(),
            "frame_rms": self.frame_rms.to_dict(),
        }


# --------------------------------------------------------------------------------------------
# building blocks


def per_atom_force_sigma(member_forces: ArrayLike) -> np.ndarray:
    """Ensemble force spread per atom, ``sqrt(mean_m |F_i^m - Fbar_i|^2)``, from (M, N, 3)."""
    f = np.asarray(member_forces, dtype=float)
    if f.ndim != 3 or f.shape[2] != 3:
        raise ValueError(f"member forces must have shape (M, N, 3), got {f.shape}")
    dev = f - f.mean(axis=0)
    return np.sqrt((dev**2).sum(axis=2).mean(axis=0))


def spearman_rank(sigma: ArrayLike, error: ArrayLike) -> tuple[float | None, float | None]:
    """Spearman's rho between ``sigma`` and ``|error|`` and its p-value (None if undefined)."""
    from scipy.stats import spearmanr

    s = np.asarray(sigma, dtype=float).reshape(-1)
    e = np.abs(np.asarray(error, dtype=float).reshape(-1))
    ok = np.isfinite(s) & np.isfinite(e)
    s, e = s[ok], e[ok]
    if s.size < 3 or np.ptp(s) == 0 or np.ptp(e) == 0:
        return None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = spearmanr(s, e)
    rho, p = float(res.statistic), float(res.pvalue)
    return (rho if math.isfinite(rho) else None), (p if math.isfinite(p) else None)


def binned_calibration(sigma: ArrayLike, error: ArrayLike, n_bins: int = 10) -> dict[str, list]:
    """Equal-count bins of ``sigma``; per bin the RMS of sigma and of the error.

    Samples are sorted by sigma and split into ``n_bins`` consecutive groups whose sizes
    differ by at most one (:func:`numpy.array_split`), so ties in sigma never leave a bin
    empty. Fewer samples than bins give one bin per sample.

    Returns
    -------
    dict
        ``sigma_rms``, ``error_rms``, ``count``, ``sigma_min``, ``sigma_max`` (lists, one entry
        per bin, in increasing sigma).
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    s = np.asarray(sigma, dtype=float).reshape(-1)
    e = np.asarray(error, dtype=float).reshape(-1)
    if s.shape != e.shape:
        raise ValueError(f"sigma {s.shape} and error {e.shape} differ in size")
    ok = np.isfinite(s) & np.isfinite(e)
    s, e = s[ok], e[ok]
    order = np.argsort(s, kind="stable")
    out: dict[str, list] = {
        "sigma_rms": [],
        "error_rms": [],
        "count": [],
        "sigma_min": [],
        "sigma_max": [],
    }
    if s.size == 0:
        return out
    for chunk in np.array_split(order, min(n_bins, s.size)):
        out["sigma_rms"].append(float(np.sqrt(np.mean(s[chunk] ** 2))))
        out["error_rms"].append(float(np.sqrt(np.mean(e[chunk] ** 2))))
        out["count"].append(int(chunk.size))
        out["sigma_min"].append(float(s[chunk].min()))
        out["sigma_max"].append(float(s[chunk].max()))
    return out


def coverage_curve(z: ArrayLike, n_levels: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Expected and observed fraction of ``|z|`` inside the central Gaussian interval.

    Parameters
    ----------
    z
        z-scores ``error / sigma``; NaN ones are ignored, infinite ones count as outside.
    n_levels
        The confidence levels are ``p = k / n_levels`` for ``k = 0 .. n_levels``.

    Returns
    -------
    expected, observed
        ``p`` and the fraction of samples with ``|z| <= Phi^{-1}((1 + p) / 2)``.
    """
    from scipy.stats import norm

    zz = np.abs(np.asarray(z, dtype=float).reshape(-1))
    # NaN (0/0) carries no information; an infinite z (an error at zero sigma) is kept: it
    # lies outside every finite interval
    zz = np.sort(zz[~np.isnan(zz)])
    expected = np.linspace(0.0, 1.0, n_levels + 1)
    if zz.size == 0:
        return expected, np.full_like(expected, np.nan)
    bounds = norm.ppf(0.5 * (1.0 + expected))  # 0 at p = 0, inf at p = 1
    observed = np.searchsorted(zz, bounds, side="right") / zz.size
    observed[0] = 0.0  # the empty interval: no sample lies strictly inside it
    return expected, observed


def miscalibration_area(z: ArrayLike, n_levels: int = 100) -> float | None:
    """Area between the coverage curve of ``z`` and the diagonal (Tran et al. 2020)."""
    expected, observed = coverage_curve(z, n_levels)
    if not np.isfinite(observed).all():
        return None
    return _area_between(expected, observed)


def _area_between(expected: np.ndarray, observed: np.ndarray) -> float:
    """Trapezoidal ``int |observed - expected| d(expected)`` (numpy < 2 has no trapezoid)."""
    gap = np.abs(observed - expected)
    return float(np.sum(0.5 * (gap[1:] + gap[:-1]) * np.diff(expected)))


def calibration(
    sigma: ArrayLike,
    error: ArrayLike,
    *,
    z: ArrayLike | None = None,
    coverage: bool = True,
    n_bins: int = 10,
    n_levels: int = 100,
    quantity: str = "",
    unit: str = "",
) -> CalibrationResult:
    """Rank correlation, binned curve and miscalibration area of ``sigma`` against ``error``.

    Parameters
    ----------
    sigma
        Predicted uncertainties (standard deviations), one per sample.
    error
        Actual errors, one per sample (signed or magnitudes; ranks and RMS use ``|error|``).
    z
        z-scores for the coverage curve, any number of them (e.g. three per atom for force
        components). Default ``error / sigma``, which is right for signed scalar errors.
    coverage
        Compute the coverage curve and the miscalibration area.
    n_bins
        Number of equal-count bins of the calibration curve.
    n_levels
        Resolution of the coverage curve (``n_levels + 1`` confidence levels from 0 to 1).
    quantity, unit
        Labels stored with the result.
    """
    s = np.asarray(sigma, dtype=float).reshape(-1)
    e = np.asarray(error, dtype=float).reshape(-1)
    if s.shape != e.shape:
        raise ValueError(f"sigma {s.shape} and error {e.shape} differ in size")
    rho, p = spearman_rank(s, e)
    bins = binned_calibration(s, np.abs(e), n_bins)
    result = CalibrationResult(
        quantity=quantity,
        unit=unit,
        n_samples=int(s.size),
        spearman=rho,
        spearman_pvalue=p,
        bin_sigma_rms=bins["sigma_rms"],
        bin_error_rms=bins["error_rms"],
        bin_count=bins["count"],
        bin_sigma_min=bins["sigma_min"],
        bin_sigma_max=bins["sigma_max"],
    )
    if coverage:
        if z is None:
            with np.errstate(divide="ignore", invalid="ignore"):
                z = e / s
        zz = np.asarray(z, dtype=float).reshape(-1)
        zz = zz[~np.isnan(zz)]
        if zz.size:
            expected, observed = coverage_curve(zz, n_levels)
            result.expected_coverage = [float(v) for v in expected]
            result.observed_coverage = [float(v) for v in observed]
            result.miscalibration_area = _area_between(expected, observed)
            result.n_z = int(zz.size)
    return result


# --------------------------------------------------------------------------------------------
# the ensemble's forces and energies


def force_calibration(
    ref_forces: ArrayLike | Sequence[ArrayLike],
    member_forces: ArrayLike | Sequence[ArrayLike],
    *,
    sigma: Sequence[ArrayLike] | None = None,
    n_bins: int = 10,
    n_levels: int = 100,
) -> ForceCalibration:
    """Calibration of the ensemble force spread against the error of the ensemble-mean force.

    Parameters
    ----------
    ref_forces
        Reference forces: (F, N, 3) or a sequence of F arrays (N_f, 3), eV/Å.
    member_forces
        Member forces: (M, F, N, 3) or a sequence of F arrays (M, N_f, 3), eV/Å.
    sigma
        Per frame, the model's own per-atom force sigma (N_f,), eV/Å, in place of the members'
        spread: a one-model uncertainty such as LLPR's ``atom_force_uncertainty``, where the
        spread of one member is zero. ``None``: the members' spread.
    n_bins, n_levels
        As in :func:`calibration`.

    Returns
    -------
    ForceCalibration
        ``atom`` (sigma_i vs |ΔF_i| with per-component coverage), ``frame_max``
        (``max_i sigma_i`` = U vs ``max_i |ΔF_i|``) and ``frame_rms`` (RMS over atoms of
        both); see the module docstring.
    """
    if isinstance(member_forces, np.ndarray) and member_forces.ndim == 4:
        members = [member_forces[:, k] for k in range(member_forces.shape[1])]
    else:
        members = [np.asarray(f, dtype=float) for f in member_forces]
    refs = [np.asarray(f, dtype=float) for f in ref_forces]
    if len(refs) != len(members):
        raise ValueError(f"{len(refs)} reference frames but {len(members)} predicted frames")
    own = _own_sigmas(sigma, refs)
    sig_atoms, err_atoms, z_comp = [], [], []
    frame_max_s, frame_max_e, frame_rms_s, frame_rms_e = [], [], [], []
    for k, (ref, mem) in enumerate(zip(refs, members, strict=True)):
        if mem.ndim != 3 or mem.shape[1:] != ref.shape or ref.ndim != 2 or ref.shape[1] != 3:
            raise ValueError(f"member forces {mem.shape} do not match reference {ref.shape}")
        sigma = per_atom_force_sigma(mem) if own is None else own[k]
        delta = mem.mean(axis=0) - ref
        err = np.linalg.norm(delta, axis=1)
        sig_atoms.append(sigma)
        err_atoms.append(err)
        with np.errstate(divide="ignore", invalid="ignore"):
            z_comp.append((delta / (sigma[:, None] / np.sqrt(3.0))).reshape(-1))
        frame_max_s.append(sigma.max())
        frame_max_e.append(err.max())
        frame_rms_s.append(np.sqrt(np.mean(sigma**2)))
        frame_rms_e.append(np.sqrt(np.mean(err**2)))
    cat = np.concatenate
    kw: dict[str, Any] = {"n_bins": n_bins, "n_levels": n_levels, "unit": "eV/Å"}
    empty = np.empty(0)
    return ForceCalibration(
        atom=calibration(
            cat(sig_atoms) if sig_atoms else empty,
            cat(err_atoms) if err_atoms else empty,
            z=cat(z_comp) if z_comp else empty,
            quantity="force per atom",
            **kw,
        ),
        frame_max=calibration(
            frame_max_s, frame_max_e, coverage=False, quantity="force, max over atoms", **kw
        ),
        frame_rms=calibration(
            frame_rms_s, frame_rms_e, coverage=False, quantity="force, RMS over atoms", **kw
        ),
    )


def energy_calibration(
    ref_energy: ArrayLike,
    member_energy: ArrayLike,
    *,
    sigma: ArrayLike | None = None,
    n_bins: int = 10,
    n_levels: int = 100,
    unit: str = "eV/atom",
) -> CalibrationResult:
    """Calibration of the member energy spread (population std) against the mean's error.

    ``ref_energy`` (F,) and ``member_energy`` (M, F) in the same ``unit``; the z-scores are
    ``(mean_m E^m - E^ref) / std_m E^m``. With few members (M = 4) the std of each frame is
    itself uncertain by roughly 1/sqrt(2(M-1)), which widens the z distribution; read the
    area as a trend across iterations rather than an absolute verdict. ``sigma`` (F,), in
    ``unit``: the model's own energy sigma in place of the members' std (a one-model
    uncertainty such as LLPR's).
    """
    ref = np.asarray(ref_energy, dtype=float).reshape(-1)
    mem = np.atleast_2d(np.asarray(member_energy, dtype=float))
    if mem.shape[1] != ref.size:
        raise ValueError(f"member energies {mem.shape} do not match {ref.size} frames")
    if sigma is not None:
        sigma = np.asarray(sigma, dtype=float).reshape(-1)
        if sigma.size != ref.size:
            raise ValueError(f"{sigma.size} energy sigmas for {ref.size} frames")
    return calibration(
        mem.std(axis=0) if sigma is None else sigma,
        mem.mean(axis=0) - ref,
        n_bins=n_bins,
        n_levels=n_levels,
        quantity="energy per frame",
        unit=unit,
    )


def _own_sigmas(
    sigma: Sequence[ArrayLike] | None, refs: Sequence[np.ndarray]
) -> list[np.ndarray] | None:
    """The per-frame per-atom sigmas ``sigma`` as arrays matching ``refs`` (None: None)."""
    if sigma is None:
        return None
    own = [np.asarray(s, dtype=float).reshape(-1) for s in sigma]
    if len(own) != len(refs) or any(s.size != len(r) for s, r in zip(own, refs, strict=False)):
        raise ValueError(
            f"force sigmas of {[s.size for s in own]} atoms do not match the reference frames "
            f"of {[len(r) for r in refs]} atoms"
        )
    return own


# --------------------------------------------------------------------------------------------
# figure


def plot_calibration(
    result: CalibrationResult | CalibrationRecord,
    path: str | os.PathLike[str],
    *,
    groups: Mapping[str, CalibrationResult | CalibrationRecord] | None = None,
) -> None:
    """Two-panel calibration figure, written atomically to ``path`` (format from the suffix).

    Left: binned RMS of the predicted sigma against the observed RMS error, with the diagonal.
    Right: the coverage curve (observed against expected fraction inside the central Gaussian
    interval); the miscalibration area of ``result`` is shaded. The title gives Spearman's rho.
    ``groups`` (e.g. one result per temperature) are drawn as extra labelled curves with their
    own rho in the legend.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = _as_dict(result)
    curves = [("all", main, "C0")]
    for k, (label, group) in enumerate((groups or {}).items()):
        curves.append((label, _as_dict(group), f"C{k + 2}"))
    unit = f" ({main['unit']})" if main.get("unit") else ""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9.0, 4.0))

    binned = [
        (
            label,
            np.asarray(r.get("bin_sigma_rms") or [], float),
            np.asarray(r.get("bin_error_rms") or [], float),
            r,
            color,
        )
        for label, r, color in curves
    ]
    values = [a for _, s, e, _, _ in binned for a in (s, e) if a.size]
    if values:
        every = np.concatenate(values)
        lo, hi = float(every.min()), float(every.max())
        if (every > 0).all():
            ax1.set_xscale("log")
            ax1.set_yscale("log")
            lo, hi = lo / 1.5, hi * 1.5
        else:
            pad = 0.05 * (hi - lo or 1.0)
            lo, hi = lo - pad, hi + pad
        ax1.plot([lo, hi], [lo, hi], color="0.5", ls="--", lw=1, label="calibrated")
        for label, s, e, r, color in binned:
            if s.size:
                ax1.plot(s, e, "o-", color=color, ms=4, label=_curve_label(label, r, groups))
        ax1.set_xlim(lo, hi)
        ax1.set_ylim(lo, hi)
        ax1.legend(loc="upper left", frameon=False, fontsize=8)
    else:
        ax1.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax1.transAxes)
    ax1.set_xlabel(f"predicted sigma, RMS per bin{unit}")
    ax1.set_ylabel(f"observed error, RMS per bin{unit}")
    ax1.set_title("binned calibration", fontsize=10)

    ax2.plot([0, 1], [0, 1], color="0.5", ls="--", lw=1)
    drawn = False
    for label, r, color in curves:
        exp, obs = r.get("expected_coverage"), r.get("observed_coverage")
        if exp is None or obs is None:
            continue
        exp_a, obs_a = np.asarray(exp, dtype=float), np.asarray(obs, dtype=float)
        if label == "all":
            ax2.fill_between(exp_a, exp_a, obs_a, color="C1", alpha=0.3, lw=0)
            ax2.plot(exp_a, obs_a, color="C1")
        else:
            ax2.plot(exp_a, obs_a, color=color, lw=1, label=label)
        drawn = True
    if drawn:
        area = main.get("miscalibration_area")
        if area is not None:
            ax2.text(
                0.95, 0.05, f"area = {area:.3f}", ha="right", va="bottom", transform=ax2.transAxes
            )
        if groups:
            ax2.legend(loc="upper left", frameon=False, fontsize=8)
    else:
        ax2.text(0.5, 0.5, "no coverage curve", ha="center", va="center", transform=ax2.transAxes)
    ax2.set_xlim(0, 1)
    ax2.set_ylim(0, 1)
    ax2.set_aspect("equal")
    ax2.set_xlabel("expected fraction in interval")
    ax2.set_ylabel("observed fraction in interval")
    ax2.set_title("coverage (Gaussian z)", fontsize=10)

    name = main.get("quantity") or "uncertainty"
    fig.suptitle(f"{name}: Spearman rho = {_rho(main)} (n = {main.get('n_samples', 0)})")
    fig.tight_layout()
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format=target.suffix.lstrip(".") or "png", dpi=150)
    plt.close(fig)


def _as_dict(result: CalibrationResult | CalibrationRecord) -> CalibrationRecord:
    return (
        result.to_dict()
        if isinstance(result, CalibrationResult)
        else cast("CalibrationRecord", dict(result))
    )


def _rho(r: CalibrationRecord) -> str:
    rho = r.get("spearman")
    return "n/a" if rho is None else f"{rho:.2f}"


def _curve_label(label: str, r: CalibrationRecord, groups: Any) -> str:
    if not groups:
        return "ensemble"
    return f"{label} (rho {_rho(r)})"
