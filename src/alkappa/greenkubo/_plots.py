"""Figures: Green-Kubo kappa(t) with its cutoff, kappa vs simulated time, kappa(T) against
phono3py, MD lifetimes.

Every function writes the figure atomically to ``path`` (format from the suffix), like
:mod:`alkappa.plotting`, and accepts datasets or the netCDF files they were written to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from alkappa.plotting import LINE_STYLES as _STYLES
from alkappa.plotting import as_dataset as _dataset
from alkappa.plotting import pyplot as _pyplot
from alkappa.plotting import save_figure as _save

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping, Sequence

    import xarray as xr

    DatasetLike = xr.Dataset | str | os.PathLike[str]


def plot_green_kubo(
    dataset: DatasetLike,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> None:
    """Heat-flux autocorrelation (top) and cumulative kappa(t) (bottom) of
    :func:`~alkappa.greenkubo.run_green_kubo`.

    Scalar quantities (mean of the diagonal): each run thin (raw) with its smoothed
    kappa(t) and its result (dot: kappa of the run at the mean of its three cutoff times),
    the mean of the smoothed curves thick with the mean cutoff time (dashed line), and kappa
    ± its standard error as a band. The time axis ends at a few times the longest cutoff;
    the autocorrelation axis is scaled to the smoothed curves.
    """
    plt = _pyplot()
    ds = _dataset(dataset)
    time = ds["time"].values / 1000.0  # ps
    diag = [0, 1, 2]
    acf = ds["heat_flux_acf"].values[:, :, diag, diag].mean(axis=-1)  # (run, time)
    acf_s = ds["heat_flux_acf_smoothed"].values[:, :, diag, diag].mean(axis=-1)
    k_raw = ds["kappa_cumulative"].values[:, :, diag, diag].mean(axis=-1)
    k_s = ds["kappa_cumulative_smoothed"].values[:, :, diag, diag].mean(axis=-1)
    cut = ds["cutoff_time"].values[:, diag, diag] / 1000.0  # (run, 3)
    cut_run = cut.mean(axis=1)
    kappa = float(ds["kappa_scalar"])
    err = float(ds["kappa_scalar_error"])
    t_end = min(time[-1], max(4.0 * float(cut.max()), 10 * (time[1] - time[0])))
    shown = time <= t_end

    fig, (ax_acf, ax_k) = plt.subplots(2, 1, figsize=(6.0, 6.0), sharex=True)
    for r in range(acf.shape[0]):
        color = f"C{r % 10}"
        ax_acf.plot(time[shown], acf[r, shown], color=color, lw=0.5, alpha=0.4)
        ax_acf.plot(time[shown], acf_s[r, shown], color=color, lw=1.0)
        ax_k.plot(time[shown], k_raw[r, shown], color=color, lw=0.5, alpha=0.4)
        ax_k.plot(time[shown], k_s[r, shown], color=color, lw=1.0, label=f"run {r}")
        ax_k.plot(cut_run[r], ds["kappa_run_scalar"].values[r], "o", color=color, ms=4)
    ax_acf.plot(time[shown], acf_s.mean(axis=0)[shown], color="k", lw=2.0, label="mean")
    ax_k.plot(time[shown], k_s.mean(axis=0)[shown], color="k", lw=2.0, label="mean")
    ax_k.axhspan(kappa - err, kappa + err, color="0.8", alpha=0.6, lw=0)
    ax_k.axhline(kappa, color="k", lw=0.8, ls=":")
    for ax in (ax_acf, ax_k):
        ax.axvline(float(cut_run.mean()), color="k", lw=0.8, ls="--")
        ax.axhline(0.0, color="0.5", lw=0.5)
    smooth_range = acf_s[:, shown]
    span = float(smooth_range.max() - min(smooth_range.min(), 0.0)) or 1.0
    ax_acf.set_ylim(min(smooth_range.min(), 0.0) - 0.3 * span, smooth_range.max() + 0.3 * span)
    ax_acf.set_ylabel(r"$\frac{V}{k_B T^2}\langle J(t) J(0)\rangle$ (W m$^{-1}$K$^{-1}$fs$^{-1}$)")
    ax_acf.legend(frameon=False, fontsize=8)
    ax_k.set_xlabel("time (ps)")
    ax_k.set_ylabel(r"$\kappa(t)$ (W m$^{-1}$ K$^{-1}$)")
    ax_k.set_xlim(0.0, t_end)
    ax_k.legend(frameon=False, fontsize=7, ncol=2)
    temp = ds.attrs.get("temperature")
    label = f"$\\kappa$ = {kappa:.3g} ± {err:.2g} W/(m K)"
    if temp is not None:
        label = f"T = {float(temp):.0f} K: " + label
    ax_acf.set_title(title or label, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_kappa_temperature(
    green_kubo: Mapping[str, Sequence[DatasetLike]] | Sequence[DatasetLike],
    path: str | os.PathLike[str],
    *,
    phono3py: Mapping[str, DatasetLike] | None = None,
    corrected: Mapping[str, Sequence[tuple[float, float, float]]] | None = None,
    title: str | None = None,
) -> None:
    """kappa(T): Green-Kubo results (one dataset per temperature, error bars), optionally
    their finite-size-corrected values (open markers), against phono3py's RTA (solid) and
    LBTE (dashed), each with quantum and, where present, classical statistics (thin).

    Parameters
    ----------
    green_kubo
        Datasets of :func:`~alkappa.greenkubo.run_green_kubo` (one per temperature, read at
        their ``temperature`` attribute), or a mapping ``label -> datasets`` to overlay
        several potentials.
    phono3py
        ``label -> dataset`` of :func:`~alkappa.phonons.run_phono3py`.
    corrected
        ``label -> [(temperature, kappa, error), ...]``: finite-size-corrected GK values.
    """
    plt = _pyplot()
    series = green_kubo if hasattr(green_kubo, "items") else {"Green-Kubo": green_kubo}
    fig, ax = plt.subplots(figsize=(5.0, 4.0))
    markers = ["o", "s", "^", "D"]
    for k, (label, items) in enumerate(series.items()):  # type: ignore[union-attr]
        rows = []
        for item in items:
            ds = _dataset(item)
            rows.append(
                (
                    float(ds.attrs["temperature"]),
                    float(ds["kappa_scalar"]),
                    float(ds["kappa_scalar_error"]),
                )
            )
        rows.sort()
        t, kap, err = (np.array(col) for col in zip(*rows, strict=True)) if rows else ([], [], [])
        ax.errorbar(
            t,
            kap,
            yerr=err,
            fmt=markers[k % len(markers)],
            color=f"C{k}",
            ms=5,
            capsize=3,
            label=f"{label} (GK)",
        )
        rows = sorted((corrected or {}).get(label, []))
        if rows:
            t, kap, err = (np.array(col) for col in zip(*rows, strict=True))
            ax.errorbar(
                t,
                kap,
                yerr=err,
                fmt=markers[k % len(markers)],
                mfc="none",
                color=f"C{k}",
                ms=7,
                capsize=3,
                label=f"{label} (GK, finite-size corrected)",
            )
    curves = (
        ("kappa_rta_average", "-", 1.5, "RTA"),
        ("kappa_lbte_average", "--", 1.5, "LBTE"),
        ("kappa_rta_classical_average", "-", 0.8, "RTA classical"),
        ("kappa_lbte_classical_average", "--", 0.8, "LBTE classical"),
    )
    for k, (label, item) in enumerate((phono3py or {}).items()):
        ds = _dataset(item)
        color = _STYLES[(k + len(series)) % len(_STYLES)][0]
        t = ds["temperature"].values
        keep = t > 0
        for name, style, width, kind in curves:
            if name in ds:
                ax.plot(
                    t[keep],
                    ds[name].values[keep],
                    style,
                    lw=width,
                    color=color,
                    label=f"{label} {kind}",
                )
    ax.set_xlabel("temperature (K)")
    ax.set_ylabel(r"$\kappa$ (W m$^{-1}$ K$^{-1}$)")
    ax.set_ylim(bottom=0)
    ax.legend(frameon=False, fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)


def plot_kappa_convergence(
    dataset: DatasetLike,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> None:
    """kappa against the simulated time it holds (the first k runs), with its error band.

    From ``kappa_vs_runs`` and ``kappa_vs_runs_error`` of
    :func:`~alkappa.greenkubo.green_kubo` against ``simulated_time`` (ps); the cepstral
    estimate of all runs (``kappa_cepstral`` ± its error) is drawn at the end for comparison.
    """
    plt = _pyplot()
    ds = _dataset(dataset)
    t = ds["simulated_time"].values
    k = ds["kappa_vs_runs"].values
    err = np.nan_to_num(ds["kappa_vs_runs_error"].values)
    fig, ax = plt.subplots(figsize=(5.0, 3.8))
    ax.fill_between(t, k - err, k + err, color="C0", alpha=0.25, lw=0)
    ax.plot(t, k, "o-", color="C0", label="Green-Kubo (first dip)")
    if "kappa_cepstral" in ds and np.isfinite(float(ds["kappa_cepstral"])):
        kc = float(ds["kappa_cepstral"])
        kc_err = float(ds["kappa_cepstral_error"])
        ax.errorbar([t[-1]], [kc], yerr=[kc_err], fmt="s", color="C1", capsize=3, label="cepstral")
    ax.axhline(0.0, color="0.5", lw=0.5)
    ax.set_xlabel("simulated time (ps)")
    ax.set_ylabel(r"$\kappa$ (W m$^{-1}$ K$^{-1}$)")
    ax.set_xlim(0.0, 1.05 * float(t[-1]))
    ax.legend(frameon=False, fontsize=8)
    rel = ds.attrs.get("relative_error")
    label = "convergence" if rel is None else f"relative error {float(rel):.0%}"
    ax.set_title(title or label, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_mode_lifetimes(
    comparison: DatasetLike,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> None:
    """MD lifetimes against phono3py's (:func:`~alkappa.greenkubo.compare_mode_lifetimes`):
    log-log scatter coloured by frequency, with the diagonal and factor-2 lines."""
    plt = _pyplot()
    ds = _dataset(comparison)
    x = ds["tau_phono3py"].values.ravel()
    y = ds["tau_md"].values.ravel()
    f = ds["frequency_md"].values.ravel()
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    fig, ax = plt.subplots(figsize=(5.0, 4.2))
    if ok.any():
        points = ax.scatter(x[ok], y[ok], c=f[ok], s=14, cmap="viridis", alpha=0.8)
        fig.colorbar(points, ax=ax, label="frequency (THz)")
        lo = float(min(x[ok].min(), y[ok].min())) / 1.5
        hi = float(max(x[ok].max(), y[ok].max())) * 1.5
    else:
        lo, hi = 0.1, 10.0
        ax.text(0.5, 0.5, "no modes to compare", transform=ax.transAxes, ha="center")
    line = np.array([lo, hi])
    ax.plot(line, line, color="k", lw=0.8)
    for factor in (0.5, 2.0):
        ax.plot(line, factor * line, color="0.6", lw=0.6, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel(r"$\tau$ phono3py (ps)")
    ax.set_ylabel(r"$\tau$ MD (ps)")
    info: dict[str, Any] = ds.attrs
    default = f"T = {float(info.get('temperature_md', np.nan)):.0f} K"
    if "median_ratio" in info:
        default += f", median MD/phono3py = {float(info['median_ratio']):.2f}"
    ax.set_title(title or default, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_finite_size(
    dataset: DatasetLike,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> None:
    """The harmonic interpolation of :func:`~alkappa.greenkubo.run_finite_size_correction`:
    the harmonic-model kappa on n x n x n meshes against 1/n, the linear fit extrapolated to
    1/n = 0 (the bulk value), the value at the supercell's commensurate q-points, and the
    resulting correction of kappa_GK (as FHI-vibes' ``greenkubo_interpolation_fit`` plot)."""
    plt = _pyplot()
    ds = _dataset(dataset)
    if "failed_reason" in ds.attrs:  # the step could not correct: say why in the figure
        fig, ax = plt.subplots(figsize=(5.0, 3.8))
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            "no finite-size correction:\n" + str(ds.attrs["failed_reason"]),
            ha="center",
            va="center",
            wrap=True,
            fontsize=8,
        )
        if title:
            ax.set_title(title, fontsize=9)
        _save(fig, path)
        return
    nq = ds["nq"].values.astype(float)
    kap = np.diagonal(ds["interpolation_kappa_array"].values, axis1=1, axis2=2).mean(axis=1)
    slope = float(ds["interpolation_fit_slope"])
    intercept = float(ds["interpolation_fit_intercept"])
    fig, ax = plt.subplots(figsize=(5.0, 3.8))
    ax.plot(1.0 / nq, kap, "o", color="C0", label="harmonic model, interpolated to n$^3$ mesh")
    x = np.linspace(0.0, 1.0 / nq.min(), 50)
    ax.plot(x, intercept + slope * x, "-", color="C1", label=f"fit: bulk {intercept:.3g}")
    k_comm = float(ds["kappa_ha_scalar"])
    ax.axhline(k_comm, color="C2", ls=":", label=f"commensurate q-points {k_comm:.3g}")
    if "kappa_corrected" in ds:
        ax.set_title(
            (title + ": " if title else "")
            + f"correction {float(ds['interpolation_correction']):+.3g} W/(m K)",
            fontsize=9,
        )
    elif title:
        ax.set_title(title, fontsize=9)
    ax.set_xlabel("1 / n (mesh n x n x n)")
    ax.set_ylabel(r"$\kappa_{\rm ha}$ (W m$^{-1}$ K$^{-1}$)")
    ax.set_xlim(left=0)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    _save(fig, path)
