"""Ensemble members' training subsets."""

from __future__ import annotations

import pytest
from ase import Atoms

from alkappa.al.training import member_seed, member_split


def _frames(n):
    return [Atoms("H", positions=[[0, 0, i]]) for i in range(n)]


def test_split_disjoint_and_reproducible():
    frames = _frames(20)
    train, val = member_split(frames, seed=3, validation_fraction=0.2, bootstrap=False)
    assert len(val) == 4 and len(train) == 16
    assert not set(train) & set(val)
    assert sorted(train + val) == list(range(20))
    assert member_split(frames, seed=3, validation_fraction=0.2, bootstrap=False) == (train, val)


def test_bootstrap_draws_with_replacement_from_the_training_part():
    frames = _frames(30)
    train, val = member_split(frames, seed=5, validation_fraction=0.2, bootstrap=True)
    assert len(train) == 24
    assert len(set(train)) < len(train)  # duplicates are (overwhelmingly likely) present
    assert not set(train) & set(val)


def test_members_differ():
    frames = _frames(30)
    s0, s1 = member_seed(0, 0, 0), member_seed(0, 0, 1)
    assert s0 != s1 and member_seed(0, 1, 0) != s0
    assert member_split(frames, seed=s0, validation_fraction=0.2, bootstrap=True) != member_split(
        frames, seed=s1, validation_fraction=0.2, bootstrap=True
    )


def test_too_few_frames():
    with pytest.raises(ValueError, match="at least 2 frames"):
        member_split(_frames(1), seed=0, validation_fraction=0.2, bootstrap=False)
