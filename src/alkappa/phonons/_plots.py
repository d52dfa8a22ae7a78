"""Figures: band structure + DOS, kappa(T), lifetimes against frequency, sigma^A per species.

Every function takes a mapping ``label -> data`` (e.g. ``{"MLIP": ..., "oracle": ...}``) so
that potentials are overlaid in one figure, and writes the figure atomically to ``path``
(format from the suffix).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from alkappa.plotting import LINE_STYLES as _STYLES
from alkappa.plotting import as_dataset as _dataset
from alkappa.plotting import pyplot as _pyplot
from alkappa.plotting import save_figure as _save

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping

    import xarray as xr

    from alkappa.phonons._anharmonicity import AnharmonicityScore


def plot_phonons(
    datasets: Mapping[str, xr.Dataset | str | os.PathLike[str]],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> None:
    """Band structure (left) and DOS (right) of each dataset of
    :func:`~alkappa.phonons.phonon_properties` (or its netCDF file), overlaid.

    The tick labels come from the first dataset; imaginary-mode warnings are printed in the
    figure.
    """
    plt = _pyplot()
    data = {label: _dataset(ds) for label, ds in datasets.items()}
    fig, (ax_band, ax_dos) = plt.subplots(
        1, 2, figsize=(9.0, 4.5), sharey=True, gridspec_kw={"width_ratios": [3, 1]}
    )
    warnings_text = []
    for k, (label, ds) in enumerate(data.items()):
        color, ls = _STYLES[k % len(_STYLES)]
        dist = ds["band_distance"].values
        freq = ds["band_frequency"].values
        seg = ds["band_segment"].values
        for s in np.unique(seg):
            rows = seg == s
            ax_band.plot(dist[rows], freq[rows], color=color, ls=ls, lw=1.0)
        ax_band.plot([], [], color=color, ls=ls, label=label)
        ax_dos.plot(ds["dos_total"].values, ds["dos_frequency"].values, color=color, ls=ls, lw=1)
        if ds.attrs.get("imaginary_warning"):
            warnings_text.append(f"{label}: {ds.attrs['n_imaginary_modes']} imaginary modes")
    first = next(iter(data.values()))
    ticks, tick_labels = _band_ticks(first)
    for x in ticks:
        ax_band.axvline(x, color="0.7", lw=0.5)
    ax_band.axhline(0.0, color="0.5", lw=0.5)
    ax_band.set_xticks(ticks, tick_labels)
    ax_band.set_xlim(ticks[0], ticks[-1])
    ax_band.set_ylabel("frequency (THz)")
    ax_band.legend(loc="best", frameon=False, fontsize=8)
    if warnings_text:
        ax_band.text(
            0.02,
            0.02,
            "WARNING: " + "; ".join(warnings_text),
            transform=ax_band.transAxes,
            color="C3",
            fontsize=8,
        )
    ax_dos.set_xlabel("DOS (states/THz)")
    ax_dos.set_xlim(left=0)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def plot_kappa(
    datasets: Mapping[str, xr.Dataset | str | os.PathLike[str]],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> None:
    """kappa(T) (average of the diagonal) of datasets of :func:`~alkappa.phonons.run_phono3py`:
    RTA as lines with markers, LBTE (where present) dashed; log-log axes."""
    plt = _pyplot()
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    fig, ax = plt.subplots(figsize=(5.0, 4.0))
    for k, (label, ds) in enumerate(datasets.items()):
        ds = _dataset(ds)
        color = _STYLES[k % len(_STYLES)][0]
        t = ds["temperature"].values
        keep = t > 0
        ax.plot(
            t[keep],
            ds["kappa_rta_average"].values[keep],
            "o-",
            color=color,
            ms=3,
            label=f"{label} RTA",
        )
        if "kappa_lbte_average" in ds:
            ax.plot(
                t[keep],
                ds["kappa_lbte_average"].values[keep],
                "s--",
                color=color,
                ms=3,
                label=f"{label} LBTE",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):  # plain numbers at 1, 2, 3, 5 x 10^n
        axis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 3.0, 5.0)))
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("temperature (K)")
    ax.set_ylabel(r"$\kappa$ (W m$^{-1}$ K$^{-1}$)")
    ax.legend(frameon=False, fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)


def plot_lifetimes(
    datasets: Mapping[str, xr.Dataset | str | os.PathLike[str]],
    path: str | os.PathLike[str],
    *,
    temperature: float = 300.0,
    title: str | None = None,
) -> None:
    """Phonon lifetimes tau against frequency at the temperature closest to ``temperature``
    (left) and the cumulative RTA kappa over frequency (right: which modes carry the heat),
    one colour per dataset of :func:`~alkappa.phonons.run_phono3py`."""
    from alkappa.phonons._kappa_modes import cumulative_kappa

    plt = _pyplot()
    fig, (ax, ax_k) = plt.subplots(1, 2, figsize=(9.0, 4.0))
    used = None
    markers = ["o", "x", "^", "s"]
    for k, (label, ds) in enumerate(datasets.items()):
        ds = _dataset(ds)
        sel = ds.sel(temperature=temperature, method="nearest")
        used = float(sel["temperature"])
        tau = sel["tau"].values.ravel()
        freq = np.broadcast_to(ds["frequency"].values, sel["tau"].shape).ravel()
        ok = np.isfinite(tau) & (tau > 0)
        color = _STYLES[k % len(_STYLES)][0]
        ax.scatter(
            freq[ok],
            tau[ok],
            s=8,
            marker=markers[k % len(markers)],
            alpha=0.6,
            color=color,
            label=label,
        )
        if "mode_kappa_rta" in ds:
            f_sorted, k_cum = cumulative_kappa(ds, used)
            ax_k.step(f_sorted, k_cum, where="post", color=color, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("frequency (THz)")
    ax.set_ylabel(r"lifetime $\tau$ (ps)")
    ax.legend(frameon=False, fontsize=8)
    ax_k.set_xlabel("frequency (THz)")
    ax_k.set_ylabel(r"cumulative $\kappa_\mathrm{RTA}$ (W/mK)")
    ax_k.legend(frameon=False, fontsize=8)
    at = f"T = {used:g} K" if used is not None else ""
    fig.suptitle(f"{title}, {at}" if title and at else (title or at))
    fig.tight_layout()
    _save(fig, path)


def plot_anharmonicity(
    scores: Mapping[str, AnharmonicityScore | dict[str, Any]],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> None:
    """sigma^A per species and in total as grouped bars (one group per entry, e.g. per
    temperature or per trajectory), and sigma^A per frame on the right."""
    plt = _pyplot()
    rows = {label: _score_dict(s) for label, s in scores.items()}
    species = list(dict.fromkeys(sp for r in rows.values() for sp in r["sigma_A_per_species"]))
    columns = [*species, "total"]
    fig, (ax_bar, ax_frame) = plt.subplots(1, 2, figsize=(9.0, 4.0))
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(columns))
    for k, (label, r) in enumerate(rows.items()):
        values = [r["sigma_A_per_species"].get(sp, np.nan) for sp in species] + [r["sigma_A"]]
        ax_bar.bar(x + (k - (len(rows) - 1) / 2) * width, values, width, label=label, color=f"C{k}")
        per_frame = np.asarray(r.get("sigma_A_per_frame") or [], dtype=float)
        ax_frame.plot(np.arange(len(per_frame)), per_frame, color=f"C{k}", lw=1, label=label)
    ax_bar.set_xticks(x, columns)
    ax_bar.set_ylabel(r"$\sigma^A$")
    ax_bar.axhline(1.0, color="0.6", lw=0.5, ls="--")
    ax_bar.legend(frameon=False, fontsize=8)
    ax_bar.set_title("per species", fontsize=10)
    ax_frame.set_xlabel("frame")
    ax_frame.set_ylabel(r"$\sigma^A$ of the frame")
    ax_frame.set_title("per frame", fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


# --------------------------------------------------------------------------------------------


def _score_dict(score: AnharmonicityScore | dict[str, Any]) -> dict[str, Any]:
    return score if isinstance(score, dict) else score.to_dict()


def _pretty(label: str) -> str:
    if label.upper() == "GAMMA":
        return "Γ"
    if "_" in label:
        head, tail = label.split("_", 1)
        return f"{head}$_{{{tail}}}$"
    return label


def _band_ticks(ds: xr.Dataset) -> tuple[list[float], list[str]]:
    """Positions and labels of the segment ends along the path ("A|B" at a jump)."""
    labels = json.loads(ds.attrs["band_labels"])
    connections = [bool(c) for c in np.ravel(ds.attrs.get("band_connections", []))]
    dist = ds["band_distance"].values
    seg = ds["band_segment"].values
    ticks = [float(dist[seg == 0][0])]
    names = [_pretty(labels[0][0])]
    for s, (_, end) in enumerate(labels):
        ticks.append(float(dist[seg == s][-1]))
        nxt = s + 1 < len(labels) and not (s < len(connections) and connections[s])
        names.append(f"{_pretty(end)}|{_pretty(labels[s + 1][0])}" if nxt else _pretty(end))
    return ticks, names
