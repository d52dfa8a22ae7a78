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


def test_every_member_sees_every_fidelity_however_few_high_frames():
    # 20 cheap frames and 2 expensive ones: a plain bootstrap of 22 frames would leave a member
    # without any expensive frame in about 1 case of 10; split level by level it never does
    frames = _frames(22)
    for i, atoms in enumerate(frames):
        atoms.info["fidelity"] = "high" if i >= 20 else "low"
    for seed in range(200):
        train, val = member_split(frames, seed=seed, validation_fraction=0.2, bootstrap=True)
        assert {frames[i].info["fidelity"] for i in train} == {"low", "high"}
        assert not set(train) & set(val)
        assert len(val) == 4 + 0  # round(0.2 * 20) low + round(0.2 * 2) = 0 high
