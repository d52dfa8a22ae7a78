"""Lattice-site assignment and the events table of a trajectory.

An *event* in the sense of the first seed paper (an MLIP trained without active learning misses
the Cu excursions of CuI that ab initio MD shows, or produces excursions in AgGaSe2 that ab initio
MD does not) is an atom that leaves its lattice site for a while. Here every frame is compared
with the reference (relaxed) structure after removing the drift of the whole cell (the mean
minimum-image displacement of all atoms); an atom is *off its site* when it is farther than
``threshold_fraction`` x the nearest-neighbour distance from its own reference site, and it
*occupies* a site of its species when it is within that radius of it (the radius stays well
inside the Wigner-Seitz cell of the species' sublattice). An excursion that lasts at least
``min_duration`` fs is an event; it is classified by what the atom does:

``transient``
    it returns to its own site (a short-lived excursion, or a Frenkel pair that recombined
    quickly);
``frenkel``
    it sits on no lattice site (an interstitial, with a vacancy left at its own site) for at
    least ``frenkel_duration`` fs, or until the end of the trajectory;
``exchange``
    it ends on another site of its species, whose own atom has left it (a site exchange or a
    vacancy-mediated hop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Sequence

    import xarray as xr

EVENT_COLUMNS = (
    "time",
    "atom",
    "species",
    "kind",
    "duration",
    "max_displacement",
    "destination",
    "end_time",
    "returned",
)
KINDS = ("frenkel", "exchange", "transient")


@dataclass(frozen=True)
class EventDetection:
    """Events of one trajectory and the per-frame site analysis behind them.

    Attributes
    ----------
    events
        One row per event (columns :data:`EVENT_COLUMNS`): start ``time`` (fs), ``atom``
        index, ``species``, ``kind`` (:data:`KINDS`), ``duration`` (fs, until the atom is back
        or the trajectory ends), ``max_displacement`` (Å from its own site, drift removed),
        ``destination`` (index of the reference site it occupies at the end of the event, -1
        for an interstitial position, its own index when it returned), ``end_time`` (fs) and
        ``returned``.
    times
        Frame times (fs).
    displacement
        (time, atom) distance from the own reference site, drift removed (Å).
    site
        (time, atom) the reference site of the atom's species it occupies, -1 for none.
    event_frames
        (time,) whether any atom is inside an event in that frame.
    radius
        The site radius used (Å).
    duration
        Length of the trajectory (fs, last minus first time plus one frame).
    n_atoms
        Number of atoms.
    """

    events: pd.DataFrame
    times: np.ndarray
    displacement: np.ndarray
    site: np.ndarray
    event_frames: np.ndarray
    radius: float
    duration: float
    n_atoms: int


def nearest_neighbour_distance(positions: np.ndarray, cell: np.ndarray) -> float:
    """Shortest minimum-image distance between two atoms of the reference structure."""
    from ase.geometry import get_distances

    _, dist = get_distances(positions, cell=cell, pbc=True)
    dist[np.diag_indices_from(dist)] = np.inf
    return float(dist.min())


def _wrap(vectors: np.ndarray, cell: np.ndarray) -> np.ndarray:
    frac = vectors @ np.linalg.inv(cell)
    return (frac - np.round(frac)) @ cell


def _mic(vectors: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Minimum-image vectors (any leading shape) in a periodic cell (exact for cells whose
    minimum image lies among the 27 neighbouring images, i.e. all but very skewed cells)."""
    inv = np.linalg.inv(cell)
    frac = vectors @ inv
    frac -= np.round(frac)
    shifts = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)])
    cands = (frac[..., None, :] + shifts) @ cell  # (..., 27, 3)
    best = np.argmin((cands**2).sum(-1), axis=-1)
    return np.take_along_axis(cands, best[..., None, None], axis=-2)[..., 0, :]


def detect_events(
    positions: np.ndarray,
    reference: np.ndarray,
    cell: np.ndarray,
    symbols: Sequence[str],
    times: np.ndarray,
    *,
    nn_distance: float | None = None,
    threshold_fraction: float = 0.4,
    min_duration: float = 50.0,
    frenkel_duration: float = 250.0,
) -> EventDetection:
    """Find the atoms that leave their lattice sites (see the module docstring).

    Parameters
    ----------
    positions
        (time, atom, 3) Cartesian positions (Å), wrapped or not.
    reference
        (atom, 3) reference (relaxed) positions, the lattice sites.
    cell
        (3, 3) cell of the periodic supercell (Å).
    symbols
        Chemical symbols of the atoms; an atom can only occupy sites of its own species.
    times
        (time,) frame times (fs), increasing.
    nn_distance
        Nearest-neighbour distance of the reference (Å); computed if not given.
    threshold_fraction
        Site radius as a fraction of ``nn_distance``.
    min_duration
        Shortest excursion (fs) counted as an event; gaps shorter than this in an excursion
        (a vibration back through the radius) are bridged.
    frenkel_duration
        Time (fs) on an interstitial position that makes a returning excursion a Frenkel pair.
    """
    pos = np.asarray(positions, dtype=float)
    ref = np.asarray(reference, dtype=float)
    cell = np.asarray(cell, dtype=float)
    times = np.asarray(times, dtype=float)
    symbols = np.asarray(list(symbols))
    if pos.ndim != 3 or pos.shape[1:] != ref.shape or ref.shape[1:] != (3,):
        raise ValueError(f"positions {pos.shape} do not match the reference structure {ref.shape}")
    if len(symbols) != len(ref) or len(times) != len(pos):
        raise ValueError("symbols/times do not match the positions' atoms/frames")
    if len(times) > 1 and np.any(np.diff(times) <= 0):
        raise ValueError("frame times must increase")
    if not 0 < threshold_fraction < 1:
        raise ValueError(f"threshold_fraction must be in (0, 1), got {threshold_fraction}")
    if nn_distance is None:
        nn_distance = nearest_neighbour_distance(ref, cell)
    radius = threshold_fraction * float(nn_distance)
    spacing = 1.0 / np.linalg.norm(np.linalg.inv(cell), axis=0).max()
    if radius >= spacing / 2:
        raise ValueError(
            f"site radius {radius:.2f} Å is not below half the cell's smallest plane spacing "
            f"({spacing:.2f} Å): use a larger supercell or a smaller threshold_fraction"
        )
    n_frames, n_atoms, _ = pos.shape
    dt = float(np.median(np.diff(times))) if n_frames > 1 else 0.0

    # drift of the whole cell: mean minimum-image displacement from the own sites
    own = _mic(pos - ref, cell)
    drift = own.mean(axis=1, keepdims=True)
    own = _mic(own - drift, cell)
    displacement = np.linalg.norm(own, axis=-1)

    # which site of its species each atom occupies (-1: none within the radius)
    site = np.full((n_frames, n_atoms), -1, dtype=int)
    shifted = pos - drift
    for species in np.unique(symbols):
        idx = np.flatnonzero(symbols == species)
        # nearest image by rounding fractional coordinates: exact for distances below half
        # the smallest plane spacing of the cell, which is all the site radius needs
        d = np.linalg.norm(_wrap(shifted[:, idx, None, :] - ref[None, None, idx, :], cell), axis=-1)
        nearest = d.argmin(axis=-1)
        inside = np.take_along_axis(d, nearest[..., None], axis=-1)[..., 0] <= radius
        site[:, idx] = np.where(inside, idx[nearest], -1)

    rows = []
    in_event = np.zeros(n_frames, dtype=bool)
    for atom in range(n_atoms):
        for first, last in _excursions(displacement[:, atom] > radius, times, min_duration):
            end = last + 1 if last + 1 < n_frames else last  # the frame it is back, if any
            returned = last + 1 < n_frames
            duration = times[end] - times[first] + (0.0 if returned else dt)
            if duration < min_duration:
                continue
            in_event[first : last + 1] = True
            occupied = site[first : last + 1, atom]
            # where it sits at the end: the most frequent site over the last min_duration
            tail = occupied[times[first : last + 1] >= times[last] - min_duration]
            values, counts = np.unique(tail, return_counts=True)
            dest = int(values[counts.argmax()])
            if returned:
                kind = (
                    "frenkel"
                    if _longest_run(occupied == -1, times[first : last + 1], dt) >= frenkel_duration
                    else "transient"
                )
                dest = atom
            elif dest >= 0 and dest != atom:
                kind = "exchange"
            else:
                kind = "frenkel"
            rows.append(
                {
                    "time": float(times[first]),
                    "atom": atom,
                    "species": str(symbols[atom]),
                    "kind": kind,
                    "duration": float(duration),
                    "max_displacement": float(displacement[first : last + 1, atom].max()),
                    "destination": dest,
                    "end_time": float(times[end]),
                    "returned": bool(returned),
                }
            )
    events = pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
    events = events.sort_values(["time", "atom"], kind="stable").reset_index(drop=True)
    return EventDetection(
        events=events,
        times=times,
        displacement=displacement,
        site=site,
        event_frames=in_event,
        radius=radius,
        duration=float(times[-1] - times[0] + dt) if n_frames else 0.0,
        n_atoms=n_atoms,
    )


def _excursions(off: np.ndarray, times: np.ndarray, bridge: float) -> list[tuple[int, int]]:
    """(first, last) frame of each run of ``off``, runs separated by less than ``bridge`` fs
    of on-site frames merged."""
    runs: list[tuple[int, int]] = []
    start = None
    for k, value in enumerate(off):
        if value and start is None:
            start = k
        if not value and start is not None:
            runs.append((start, k - 1))
            start = None
    if start is not None:
        runs.append((start, len(off) - 1))
    merged: list[tuple[int, int]] = []
    for first, last in runs:
        if merged and times[first] - times[merged[-1][1]] <= bridge:
            merged[-1] = (merged[-1][0], last)
        else:
            merged.append((first, last))
    return merged


def _longest_run(flags: np.ndarray, times: np.ndarray, dt: float) -> float:
    """Longest time (fs) of consecutive True frames."""
    best = 0.0
    start = None
    for k, value in enumerate(flags):
        if value and start is None:
            start = k
        if start is not None and (not value or k == len(flags) - 1):
            stop = k if value else k - 1
            best = max(best, times[stop] - times[start] + dt)
            start = None
    return best


def detect_trajectory_events(
    trajectory: xr.Dataset,
    *,
    threshold_fraction: float = 0.4,
    min_duration: float = 50.0,
    frenkel_duration: float = 250.0,
) -> EventDetection:
    """:func:`detect_events` on an alkappa/FHI-vibes trajectory (``positions``,
    ``positions_reference``, ``lattice_reference``, ``symbols`` attribute)."""
    missing = [
        k for k in ("positions", "positions_reference", "lattice_reference") if k not in trajectory
    ]
    if missing or "symbols" not in trajectory.attrs:
        what = ", ".join(missing + ([] if "symbols" in trajectory.attrs else ["attr symbols"]))
        raise ValueError(f"the trajectory lacks {what}: not an alkappa/FHI-vibes trajectory")
    positions = trajectory["positions"].values
    keep = np.isfinite(positions).all(axis=(1, 2))
    return detect_events(
        positions[keep],
        trajectory["positions_reference"].values,
        trajectory["lattice_reference"].values,
        list(np.atleast_1d(trajectory.attrs["symbols"])),
        trajectory["time"].values[keep],
        threshold_fraction=threshold_fraction,
        min_duration=min_duration,
        frenkel_duration=frenkel_duration,
    )
