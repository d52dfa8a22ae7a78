"""A diverse batch of frames: a structural descriptor and greedy farthest-point sampling.

Taking the most uncertain frames of an exploration tends to take several snapshots of the same
excursion: frames a few hundred fs apart in one trajectory, or the same distortion at two
temperatures. Farthest-point sampling (Gonzalez, Theor. Comput. Sci. 38, 293 (1985)) picks
instead, one at a time, the candidate farthest from everything picked so far in a descriptor
space, so that no two frames of the batch are alike.

The descriptor is a smooth partial pair-distribution function: for every unordered pair of
species (A, B), the distances of all A-B pairs within a cutoff (periodic images included), each
broadened by a Gaussian on a grid of radii and divided by the number of atoms. It is invariant to
translations, rotations and the numbering of atoms, and it costs one neighbour list per frame.
"""

from __future__ import annotations

from itertools import combinations_with_replacement
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ase import Atoms


def pair_distance_descriptor(
    atoms: Atoms,
    *,
    cutoff: float,
    bins: int,
    width: float,
    species: Sequence[str] | None = None,
) -> np.ndarray:
    """Gaussian-broadened partial pair-distance histograms of one structure, per atom.

    Parameters
    ----------
    atoms
        The structure (periodic or not).
    cutoff
        Largest pair distance counted (Å).
    bins
        Grid points per species pair, evenly spaced on [0, cutoff].
    width
        Standard deviation of each pair's Gaussian (Å).
    species
        The chemical symbols that fix the layout of the vector (default: those of ``atoms``,
        sorted); frames compared with each other must use the same.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_pairs * bins,)`` with ``n_pairs = S (S + 1) / 2`` for S species, pairs in the
        order of ``itertools.combinations_with_replacement(sorted(species), 2)``. Each pair of
        atoms counts once; the vector is divided by the number of atoms, so supercells of the
        same structure have the same descriptor.
    """
    from ase.neighborlist import neighbor_list

    symbols = np.array(atoms.get_chemical_symbols())
    kinds = sorted(set(species) if species is not None else set(symbols))
    pairs = list(combinations_with_replacement(kinds, 2))
    slot = {pair: k for k, pair in enumerate(pairs)}
    out = np.zeros((len(pairs), bins))
    if len(atoms) == 0:
        return out.reshape(-1)
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    grid = np.linspace(0.0, cutoff, bins)
    # the list holds each pair twice (i->j and j->i): weight 1/2
    gauss = 0.5 * np.exp(-0.5 * ((d[:, None] - grid[None, :]) / width) ** 2)
    a, b = symbols[i], symbols[j]
    rows = np.array([slot[(x, y) if x <= y else (y, x)] for x, y in zip(a, b, strict=True)])
    if rows.size:
        np.add.at(out, rows, gauss)
    return (out / len(atoms)).reshape(-1)


def farthest_point_sampling(
    features: Callable[[int], np.ndarray],
    pool: Sequence[int],
    n: int,
    *,
    first: int,
    weights: np.ndarray | None = None,
    compatible: Callable[[int, list[int]], bool] | None = None,
) -> tuple[list[int], list[int], dict[int, float]]:
    """Greedy farthest-point sampling of up to ``n`` items from ``pool``.

    ``first`` is taken first; then, repeatedly, the item of the pool with the largest
    ``weights[i] * min_{j chosen} |x_i - x_j|`` (Euclidean distance of the descriptors
    ``features(i)``). An item ``compatible`` refuses (given the items chosen so far) is dropped
    from the pool instead.

    Parameters
    ----------
    features
        The descriptor of item ``i``; called once per item of the pool.
    pool
        The items to choose from (indices; ``first`` among them).
    n
        How many to choose at most.
    first
        The seed of the batch (e.g. the most uncertain item).
    weights
        A non-negative weight per item index (e.g. its uncertainty to a power); default 1.
    compatible
        ``compatible(i, chosen)``: whether ``i`` may join the items chosen so far.

    Returns
    -------
    tuple
        The chosen items in the order picked, the items refused by ``compatible``, and for each
        chosen item its distance to the nearest item chosen before it (``inf`` for the first).
    """
    pool = list(dict.fromkeys(pool))
    if first not in pool:
        raise ValueError(f"the first item {first} is not in the pool")
    x = {i: np.asarray(features(i), dtype=float) for i in pool}
    nearest = {i: np.inf for i in pool}
    chosen: list[int] = []
    refused: list[int] = []
    distance: dict[int, float] = {}
    remaining = set(pool)

    def score(i: int) -> float:
        # before anything was chosen every distance is infinite: no weight can rank them
        if not np.isfinite(nearest[i]):
            return np.inf
        return (1.0 if weights is None else float(weights[i])) * nearest[i]

    candidate = first
    while remaining and len(chosen) < n:
        remaining.discard(candidate)
        if compatible is None or compatible(candidate, chosen):
            distance[candidate] = float(nearest[candidate])
            chosen.append(candidate)
            for i in remaining:
                d = float(np.linalg.norm(x[i] - x[candidate]))
                nearest[i] = min(nearest[i], d)
        else:
            refused.append(candidate)
        if not remaining:
            break
        # the order of the pool breaks ties, so the result does not depend on set order
        candidate = max((i for i in pool if i in remaining), key=score)
    return chosen, refused, distance
