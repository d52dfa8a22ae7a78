"""Figures of the dynamic training: Bayesian error vs MD step, posterior width vs data."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from alkappa.plotting import pyplot as _pyplot
from alkappa.plotting import save_figure as _save

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence


def plot_errors(
    errors: Sequence[dict[str, Any]],
    triggers: Sequence[dict[str, Any]],
    path: str | os.PathLike[str],
    *,
    factor: float | None = None,
    absolute: float | None = None,
) -> None:
    """Bayesian error and its rolling mean against the MD step, triggers marked.

    ``errors``/``triggers`` are the records of
    :class:`~alkappa.bayesfc.DynamicTrainingResult` (keys step, error, rolling_mean, reason).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
    step = np.array([r["step"] for r in errors])
    err = np.array([r["error"] for r in errors], dtype=float)
    roll = np.array([r["rolling_mean"] for r in errors], dtype=float)
    ax.plot(step, err, color="C0", lw=0.7, label="Bayesian error")
    ax.plot(step, roll, color="k", lw=1.2, label="rolling mean")
    if factor is not None:
        ax.plot(
            step, factor * roll, color="0.5", lw=0.8, ls=":", label=f"{factor:g} x rolling mean"
        )
    limits = np.array([_number(r.get("limit")) for r in errors], dtype=float)
    if np.isfinite(limits).any():  # a limit that follows the fitted noise: one per fit
        ax.plot(step, limits, color="C3", lw=0.8, ls="--", label="absolute limit")
    elif absolute is not None:
        ax.axhline(absolute, color="C3", lw=0.8, ls="--", label="absolute limit")
    for reason, marker, colour in (("ratio", "v", "C1"), ("absolute", "x", "C3")):
        sel = [t for t in triggers if t["reason"] == reason]
        if sel:
            ax.scatter(
                [t["step"] for t in sel],
                [t["error"] for t in sel],
                marker=marker,
                color=colour,
                zorder=3,
                label=f"trigger ({reason})",
            )
    restarts = [r["step"] for r in errors if r.get("trigger") == "restart"]
    for k, s in enumerate(restarts):
        ax.axvline(s, color="C2", lw=0.8, ls="--", label="MD restart" if k == 0 else None)
    ax.set_yscale("log")
    ax.set_xlabel("MD step")
    ax.set_ylabel("Bayesian force error (eV/Å)")
    ax.legend(fontsize=8, loc="upper right")
    _save(fig, path)


def plot_posterior_width(posterior: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> None:
    """Mean relative posterior width of the parameters of each order against training size."""
    plt = _pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(8, 3.5), layout="constrained")
    n = [r["n_train"] for r in posterior]
    keys = sorted(k for k in posterior[0] if k.startswith("param_rel_std_order"))
    for k in keys:
        ax.plot(n, [r[k] for r in posterior], marker="o", ms=3, label=f"order {k[-1]}")
    ax.set_yscale("log")
    ax.set_xlabel("training structures")
    ax.set_ylabel("posterior std / mean |parameter|")
    ax.legend(fontsize=8)
    ax2.plot(n, [r["noise_std"] for r in posterior], marker="o", ms=3, color="C3")
    ax2.set_xlabel("training structures")
    ax2.set_ylabel("noise std (eV/Å per component)")
    _save(fig, path)


def _number(value: Any) -> float:
    """A CSV cell as a float (NaN for an empty cell or None)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
