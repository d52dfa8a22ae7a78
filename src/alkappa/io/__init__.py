"""Reading and writing alkappa's data: extxyz datasets, netCDF trajectories, atomic writes."""

from __future__ import annotations

from alkappa.io._atomic import atomic_path, read_json, write_json, write_text
from alkappa.io.dataset import labels, read_dataset, strip_labels, with_labels, write_dataset
from alkappa.io.trajectory import TrajectoryWriter, open_trajectory, read_trajectory

__all__ = [
    "TrajectoryWriter",
    "atomic_path",
    "labels",
    "open_trajectory",
    "read_dataset",
    "read_json",
    "read_trajectory",
    "strip_labels",
    "with_labels",
    "write_dataset",
    "write_json",
    "write_text",
]
