"""How the ensemble members' training sets are drawn from the dataset."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ase import Atoms


def member_seed(base_seed: int, iteration: int, member: int) -> int:
    """A distinct, reproducible seed per (iteration, member)."""
    return int(np.random.SeedSequence([base_seed, iteration, member]).generate_state(1)[0])


def member_split(
    frames: Sequence[Atoms],
    *,
    seed: int,
    validation_fraction: float,
    bootstrap: bool,
) -> tuple[list[int], list[int]]:
    """Indices of one member's training and validation frames.

    A random ``validation_fraction`` of the frames (at least one) is held out for validation
    (early stopping); the member trains on the rest, resampled with replacement when
    ``bootstrap`` is true. Different seeds give different subsets, which (with different
    weight initialisations) makes the members disagree where the data is thin. Frames of
    several fidelities (``info["fidelity"]``) are split level by level.
    """
    n = len(frames)
    if n < 2:
        raise ValueError(f"need at least 2 frames to train a member, got {n}")
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for i, atoms in enumerate(frames):
        groups.setdefault(str(atoms.info.get("fidelity", "")), []).append(i)
    if len(groups) == 1:
        order = rng.permutation(n)
        n_val = min(max(1, round(validation_fraction * n)), n - 1)
        val = [int(i) for i in order[:n_val]]
        rest = order[n_val:]
        train = rng.choice(rest, size=len(rest), replace=True) if bootstrap else rest
        return sorted(int(i) for i in train), sorted(val)
    # several fidelities (multi-fidelity AL): split and resample each level on its own, so
    # every member sees every level, however few frames the expensive one has
    train, val = [], []
    for members in groups.values():
        idx = np.asarray(members)[rng.permutation(len(members))]
        n_val = min(round(validation_fraction * len(idx)), len(idx) - 1)
        val += [int(i) for i in idx[:n_val]]
        rest = idx[n_val:]
        drawn = rng.choice(rest, len(rest), replace=True) if bootstrap else rest
        train += [int(i) for i in drawn]
    if not val:  # at least one validation frame, from the largest level
        largest = max(groups.values(), key=len)
        val = [next(i for i in train if i in largest)]
        train = [i for i in train if i != val[0]]
    return sorted(train), sorted(val)
