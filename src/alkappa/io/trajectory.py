"""MD trajectories as netCDF with FHI-vibes' variable names and dimensions.

FHI-vibes stores a trajectory as an :class:`xarray.Dataset` with dimensions ``time`` (fs),
``I`` (atoms), ``a`` and ``b`` (Cartesian), variables such as ``positions`` (time, I, a),
``velocities``, ``forces``, ``energy_potential``, ``energy_kinetic``, ``temperature``, ``stress``
(time, a, b), ``cell``, ``heat_flux`` (time, a), and the reference structure in
``positions_reference``/``lattice_reference``; chemical symbols and masses are attributes.
alkappa writes the same names so either tool reads the other's files; alkappa's own extras
(``uncertainty_*``) are extra variables that FHI-vibes ignores. As in FHI-vibes, velocities are
in ASE units (``atoms.get_velocities()``), ``stress`` is the full (kinetic + potential) stress
and ``stress_potential`` the calculator's; ``displacements`` are taken from the reference under
the minimum-image convention, and the attribute ``atoms_reference`` holds the reference
structure as JSON (the module docstring of :mod:`alkappa.io.reference` gives the sources).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from ase.geometry import find_mic

from alkappa.io._atomic import atomic_path

if TYPE_CHECKING:
    import os

    from ase import Atoms

    from alkappa.io.netcdf import DataVariable, NetCDFAttrs

# per-frame variables and their dimensions (besides the leading ``time``)
_DIMS = {
    "positions": ("I", "a"),
    "velocities": ("I", "a"),
    "forces": ("I", "a"),
    "cell": ("a", "b"),
    "displacements": ("I", "a"),
    "stress": ("a", "b"),
    "stress_potential": ("a", "b"),
    "heat_flux": ("a",),
    "heat_flux_aux": ("a",),
    "heat_flux_convective": ("a",),
    "heat_flux_members": ("member", "a"),
}


class TrajectoryWriter:
    """Collect MD frames and write them as one FHI-vibes-style netCDF file.

    Frames are kept in memory and the file is (re)written atomically by :meth:`flush`, so a
    killed run leaves the last flushed state, never a corrupt file.

    Parameters
    ----------
    path
        Output ``.nc`` file.
    reference
        The reference (e.g. relaxed) structure: symbols, masses, reference positions and lattice.
    attrs
        Extra global attributes (temperature, timestep, ...); written as strings/numbers.
    """

    def __init__(
        self, path: str | os.PathLike[str], reference: Atoms, attrs: NetCDFAttrs | None = None
    ) -> None:
        self.path = Path(path)
        self.reference = reference
        self.attrs = dict(attrs or {})
        self._frames: dict[str, list[Any]] = {}
        self._times: list[float] = []

    def __len__(self) -> int:
        return len(self._times)

    def append(self, time_fs: float, **values: Any) -> None:
        """Add one frame; ``values`` maps variable names to scalars or arrays."""
        self._times.append(float(time_fs))
        n = len(self._times)
        for key, value in values.items():
            column = self._frames.setdefault(key, [])
            # a variable first seen late is padded with NaN for the earlier frames
            while len(column) < n - 1:
                column.append(np.full(np.shape(value), np.nan))
            column.append(np.array(value, dtype=float))  # a copy: MD moves atoms in place
        for column in self._frames.values():
            if len(column) < n:
                column.append(np.full(np.shape(column[0]), np.nan))

    def load(self, dataset: xr.Dataset) -> None:
        """Take over the frames of ``dataset`` (a trajectory this class wrote), to continue it.

        ``displacements`` are not taken over: they are recomputed from the positions.
        """
        if len(self):
            raise RuntimeError("load() needs an empty writer")
        self._times = [float(t) for t in dataset["time"].values]
        for key, var in dataset.data_vars.items():
            if var.dims[:1] == ("time",) and key != "displacements":
                self._frames[str(key)] = [np.array(v, dtype=float) for v in var.values]

    def to_dataset(self) -> xr.Dataset:
        ref = self.reference
        frames = dict(self._frames)
        if "positions" in frames and ref.pbc.all():
            # displacements from the reference under the minimum-image convention, as FHI-vibes
            frames["displacements"] = [
                find_mic(p - ref.positions, ref.cell, pbc=True)[0] for p in frames["positions"]
            ]
        data_vars: dict[str, DataVariable] = {}
        for key, column in frames.items():
            dims = ("time", *_DIMS.get(key, ()))
            arr = np.stack(column) if column else np.empty((0,))
            if arr.ndim != len(dims):
                dims = ("time", *(f"{key}_{i}" for i in range(arr.ndim - 1)))
            data_vars[key] = (dims, arr)
        data_vars["positions_reference"] = (("I", "a"), ref.get_positions())
        data_vars["lattice_reference"] = (("a", "b"), np.asarray(ref.cell[:]))
        attrs = {
            "symbols": list(ref.get_chemical_symbols()),
            "masses": ref.get_masses().tolist(),
            "natoms": len(ref),
            "volume": float(ref.get_volume()) if ref.pbc.all() else 0.0,
            "time_unit": "fs",
            # FHI-vibes' reader rebuilds the reference structure from this JSON attribute
            "atoms_reference": json.dumps(
                {
                    "pbc": [bool(x) for x in ref.pbc],
                    "cell": np.asarray(ref.cell).tolist(),
                    "positions": ref.get_positions().tolist(),
                    "symbols": ref.get_chemical_symbols(),
                    "masses": ref.get_masses().tolist(),
                }
            ),
            **{k: _attr(v) for k, v in self.attrs.items()},
        }
        return xr.Dataset(
            data_vars, coords={"time": ("time", np.asarray(self._times))}, attrs=attrs
        )

    def flush(self) -> None:
        """Write everything collected so far, atomically."""
        ds = self.to_dataset()
        with atomic_path(self.path) as tmp:
            ds.to_netcdf(tmp, engine="h5netcdf")


def open_trajectory(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a trajectory written by alkappa or FHI-vibes lazily (use it as a context manager).

    Raises
    ------
    ValueError
        Naming ``path`` if it is not a netCDF file xarray can read.
    """
    try:
        return xr.open_dataset(path)
    except (ValueError, OSError) as exc:
        if not Path(path).is_file():
            raise
        raise ValueError(f"{path} is not a netCDF trajectory that xarray can read") from exc


def read_trajectory(path: str | os.PathLike[str]) -> xr.Dataset:
    """Load a trajectory written by alkappa or FHI-vibes into memory (see
    :func:`open_trajectory`)."""
    with open_trajectory(path) as ds:
        return ds.load()


def _attr(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, float, str, np.integer, np.floating)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float, str)) for v in value):
        return list(value)
    return str(value)
