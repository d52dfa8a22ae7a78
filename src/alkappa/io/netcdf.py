"""netCDF files of datasets (phonons, conductivity, Green-Kubo): atomic writes, eager reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike

from alkappa.io._atomic import atomic_path

if TYPE_CHECKING:
    import os

#: a netCDF attribute's value: a number, a string or a 1-D array of them (a bool is written as
#: a number)
AttrValue: TypeAlias = str | int | float | bool | np.generic | np.ndarray | Sequence[str | float]
#: global attributes of a netCDF file (temperature, timestep, fingerprints, ...)
NetCDFAttrs: TypeAlias = Mapping[str, AttrValue]
#: a data variable as ``xr.Dataset(data_vars=...)`` takes it: its dimensions and values
DataVariable: TypeAlias = tuple[tuple[str, ...], ArrayLike]


def write_netcdf(dataset: xr.Dataset, path: str | os.PathLike[str]) -> None:
    """Write ``dataset`` atomically as netCDF (h5netcdf engine)."""
    with atomic_path(path) as tmp:
        dataset.to_netcdf(tmp, engine="h5netcdf")


def read_netcdf(path: str | os.PathLike[str]) -> xr.Dataset:
    """Load a netCDF file written by this package into memory."""
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()
