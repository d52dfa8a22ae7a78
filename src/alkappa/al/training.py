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
    weight initialisations) makes the members disagree where the data is thin.
    """
    n = len(frames)
    if n < 2:
        raise ValueError(f"need at least 2 frames to train a member, got {n}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_val = min(max(1, round(validation_fraction * n)), n - 1)
    val = sorted(int(i) for i in order[:n_val])
    rest = order[n_val:]
    train = rng.choice(rest, size=len(rest), replace=True) if bootstrap else rest
    return sorted(int(i) for i in train), val
