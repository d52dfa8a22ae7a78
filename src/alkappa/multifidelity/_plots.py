"""Figure of the budget study: high-fidelity test errors against the number of high labels."""

from __future__ import annotations

from typing import TYPE_CHECKING

from alkappa.plotting import as_dataset as _dataset
from alkappa.plotting import pyplot as _pyplot
from alkappa.plotting import save_figure as _save

if TYPE_CHECKING:
    import os

    import xarray as xr

_LABELS = {
    "multifidelity": "multi-fidelity",
    "high_only": "high only",
    "transfer": "transfer (pre-train low)",
    "delta": "Delta (low + difference)",
}


def plot_study(dataset: xr.Dataset | str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Energy, force and stress RMSE on the high-level test set (one panel each, log axes)
    against the number of high-fidelity training frames, one line per approach."""
    from alkappa.multifidelity._study import METRICS

    plt = _pyplot()
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    ds = _dataset(dataset)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.0 * len(METRICS), 3.4))
    names = {"energy_rmse": "energy", "force_rmse": "force", "stress_rmse": "stress"}
    for ax, metric in zip(axes, METRICS, strict=True):
        for approach in ds.approach.values:
            ax.plot(
                ds.n_high.values,
                ds[metric].sel(approach=approach).values,
                marker="o",
                label=_LABELS.get(str(approach), str(approach)),
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(ds.n_high.values, [str(int(n)) for n in ds.n_high.values])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%.3g"))
        ax.set_xlabel(f"{ds.attrs.get('high_level', 'high')} training frames")
        ax.set_ylabel(f"{names[metric]} RMSE ({METRICS[metric]})")
    axes[0].legend(fontsize=8)
    low = ds.attrs.get("low_level", "low")
    fig.suptitle(
        f"test errors at {ds.attrs.get('high_level', 'high')} ({low} pool: "
        f"{ds.attrs.get('n_low', '?')} frames)"
    )
    fig.tight_layout()
    _save(fig, path)
