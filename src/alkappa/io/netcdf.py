"""netCDF files of datasets (phonons, conductivity, Green-Kubo): atomic writes, eager reads."""

from __future__ import annotations

from typing import TYPE_CHECKING

import xarray as xr

from alkappa.io._atomic import atomic_path

if TYPE_CHECKING:
    import os


def write_netcdf(dataset: xr.Dataset, path: str | os.PathLike[str]) -> None:
    """Write ``dataset`` atomically as netCDF (h5netcdf engine)."""
    with atomic_path(path) as tmp:
        dataset.to_netcdf(tmp, engine="h5netcdf")


def read_netcdf(path: str | os.PathLike[str]) -> xr.Dataset:
    """Load a netCDF file written by this package into memory."""
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()
