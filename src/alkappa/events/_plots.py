"""Figures in the spirit of the first seed paper: event timelines with the ensemble
uncertainty, and per-mode lifetime ratios MLIP / reference before and after active learning.
Written atomically with :mod:`alkappa.plotting`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from alkappa.plotting import pyplot as _pyplot
from alkappa.plotting import save_figure as _save

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping, Sequence

    from alkappa.events._detector import EventDetection

_KIND_COLOURS = {"frenkel": "C3", "exchange": "C2", "transient": "C1"}


def plot_event_timeline(
    panels: Sequence[tuple[str, EventDetection, np.ndarray | None]],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> None:
    """One panel per trajectory (label, detection, per-frame uncertainty or None): the largest
    displacement of any atom from its site per species over time with the site radius
    (dashed), events as bars coloured by kind, and the uncertainty on the right axis."""
    plt = _pyplot()
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(8, 2.4 * len(panels) + 0.6), sharex=True, squeeze=False
    )
    for ax, (label, det, uncertainty) in zip(axes[:, 0], panels, strict=True):
        t = det.times / 1000.0
        ax.plot(t, det.displacement.max(axis=1), color="0.3", lw=0.8, label="max displacement")
        ax.axhline(det.radius, color="k", ls="--", lw=0.8, label="site radius")
        for _, ev in det.events.iterrows():
            ax.axvspan(
                ev["time"] / 1000.0,
                ev["end_time"] / 1000.0,
                color=_KIND_COLOURS.get(ev["kind"], "C0"),
                alpha=0.3,
            )
        ax.set_ylabel("Å")
        counts = det.events["kind"].value_counts().to_dict() if len(det.events) else {}
        text = ", ".join(f"{n} {k}" for k, n in counts.items()) or "no events"
        ax.set_title(f"{label}: {text}", fontsize=9, loc="left")
        if uncertainty is not None and np.isfinite(uncertainty).any():
            twin = ax.twinx()
            twin.plot(t, uncertainty, color="C0", lw=0.8, alpha=0.8)
            twin.set_ylabel("σ_F max (eV/Å)", color="C0")
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.3, label=k) for k, c in _KIND_COLOURS.items()
    ]
    axes[0, 0].legend(handles=handles, fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("time (ps)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def plot_lifetime_ratios(
    ratios: Mapping[str, Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> None:
    """Per-mode lifetime ratio MLIP / reference against frequency (log scale), one series
    per model (``frequency``, ``ratio``, ``median_ratio`` of
    :func:`~alkappa.events.lifetime_ratios`), medians as horizontal lines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, (label, data) in enumerate(ratios.items()):
        colour = f"C{k}"
        ax.scatter(data["frequency"], data["ratio"], s=6, alpha=0.5, color=colour)
        ax.axhline(
            data["median_ratio"],
            color=colour,
            lw=1.2,
            label=f"{label}: median {data['median_ratio']:.2f}",
        )
    ax.axhline(1.0, color="k", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("frequency (THz)")
    ax.set_ylabel("τ MLIP / τ reference")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)
