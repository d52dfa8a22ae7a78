"""Figure helpers shared by every stage: a headless pyplot, atomic saving, and the line styles
with which potentials (MLIP, oracle, ...) are overlaid in one figure."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from alkappa.io import atomic_path, read_netcdf

if TYPE_CHECKING:
    import os

    import xarray as xr
    from matplotlib.figure import Figure

#: (colour, line style) of the first, second, ... overlaid potential
LINE_STYLES = [("C0", "-"), ("C3", "--"), ("C2", ":"), ("C1", "-.")]


def pyplot() -> Any:
    """``matplotlib.pyplot`` with the non-interactive Agg backend (jobs have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> None:
    """Write ``fig`` atomically (format from the suffix, 150 dpi) and close it."""
    import matplotlib.pyplot as plt

    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format=target.suffix.lstrip(".") or "png", dpi=150)
    plt.close(fig)


def as_dataset(ds: xr.Dataset | str | os.PathLike[str]) -> xr.Dataset:
    """``ds`` itself, or the netCDF file it names, loaded."""
    if isinstance(ds, (str, Path)) or hasattr(ds, "__fspath__"):
        return read_netcdf(ds)  # type: ignore[arg-type]
    return ds  # type: ignore[return-value]
