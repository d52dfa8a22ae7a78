"""Reading and writing alkappa's data: extxyz datasets, netCDF trajectories, atomic writes."""

from __future__ import annotations

from alkappa.io._atomic import atomic_path, read_json, write_json, write_text
from alkappa.io.dataset import (
    labels,
    read_dataset,
    read_structure,
    strip_labels,
    with_labels,
    write_dataset,
)
from alkappa.io.netcdf import AttrValue, DataVariable, NetCDFAttrs, read_netcdf, write_netcdf
from alkappa.io.trajectory import TrajectoryWriter, open_trajectory, read_trajectory

__all__ = [
    "AttrValue",
    "DataVariable",
    "NetCDFAttrs",
    "TrajectoryWriter",
    "atomic_path",
    "labels",
    "open_trajectory",
    "read_dataset",
    "read_json",
    "read_netcdf",
    "read_structure",
    "read_trajectory",
    "strip_labels",
    "with_labels",
    "write_dataset",
    "write_json",
    "write_netcdf",
    "write_text",
]
