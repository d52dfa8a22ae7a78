"""A diverse selection batch: the descriptor, farthest-point sampling, and select.diversity."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from alkappa.al.diversity import farthest_point_sampling, pair_distance_descriptor
from alkappa.al.selection import Candidate, select_frames
from alkappa.settings import SelectSettings

DESCRIPTOR = {"cutoff": 5.0, "bins": 51, "width": 0.1}  # grid spacing 0.1 Å

SELECT = {
    "mode": "threshold",
    "a": 2.0,
    "b": 1.0,
    "threshold": 2.0,
    "energy_viability": False,
    "energy_shift": 3.0,
    "max_frames": 3,
    "min_separation": 0.0,
    "seed": 0,
    "diversity_weight": 0.0,
}
SETTINGS = SelectSettings.with_defaults(**SELECT)


def test_descriptor_of_a_dimer_is_one_gaussian():
    # one Cu-Cu pair at 2.5 Å (a grid point), two atoms: 1/2 at the peak, Gaussian around it
    dimer = Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]])
    x = pair_distance_descriptor(dimer, **DESCRIPTOR)
    grid = np.linspace(0.0, 5.0, 51)
    np.testing.assert_allclose(x, 0.5 * np.exp(-0.5 * ((grid - 2.5) / 0.1) ** 2), atol=1e-12)


def test_descriptor_separates_species_pairs():
    # Na-Cl at 2 Å, Na-Na and Cl-Cl beyond the cutoff: only the (Cl, Na) block is non-zero
    atoms = Atoms("NaCl", positions=[[0, 0, 0], [2.0, 0, 0]])
    x = pair_distance_descriptor(atoms, **DESCRIPTOR).reshape(3, 51)  # (Cl,Cl),(Cl,Na),(Na,Na)
    assert x[0].sum() == 0 and x[2].sum() == 0
    assert x[1][20] == pytest.approx(0.5)
    # with a species list, a frame without Cl has the same layout
    na = pair_distance_descriptor(
        Atoms("Na2", positions=[[0, 0, 0], [2.0, 0, 0]]), species=["Na", "Cl"], **DESCRIPTOR
    )
    assert na.shape == x.reshape(-1).shape and na.reshape(3, 51)[2][20] == pytest.approx(0.5)


def test_descriptor_invariances():
    rng = np.random.default_rng(0)
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    atoms.rattle(0.1, seed=1)
    x = pair_distance_descriptor(atoms, **DESCRIPTOR)
    # renumbered atoms, rigid translation, rotation of atoms and cell together
    perm = atoms[rng.permutation(len(atoms))]
    moved = atoms.copy()
    moved.translate([0.3, -1.1, 2.0])
    turned = atoms.copy()
    turned.rotate(37, "z", rotate_cell=True)
    for other in (perm, moved, turned):
        np.testing.assert_allclose(pair_distance_descriptor(other, **DESCRIPTOR), x, atol=1e-10)
    # a supercell of the same structure: the same per-atom descriptor
    np.testing.assert_allclose(
        pair_distance_descriptor(atoms.repeat((2, 1, 1)), **DESCRIPTOR), x, atol=1e-10
    )
    # a different structure is far away
    other = atoms.copy()
    other.rattle(0.1, seed=2)
    assert np.linalg.norm(pair_distance_descriptor(other, **DESCRIPTOR) - x) > 0.1


def test_farthest_point_on_a_line():
    points = np.array([0.0, 0.1, 0.2, 5.0, 5.1, 10.0])
    chosen, refused, distance = farthest_point_sampling(
        lambda i: points[i : i + 1], range(6), 3, first=0
    )
    assert chosen == [0, 5, 3] and refused == []
    assert distance == {0: np.inf, 5: 10.0, 3: 5.0}
    # a weight trades distance for something else: item 4 (5.1 from item 0, weight 2) now
    # beats item 5 (10.0, weight 1)
    weights = np.array([1, 1, 1, 1, 2, 1.0])
    chosen, _, _ = farthest_point_sampling(
        lambda i: points[i : i + 1], range(6), 3, first=0, weights=weights
    )
    assert chosen == [0, 4, 5]
    # an item refused by `compatible` is skipped, the next farthest taken
    chosen, refused, _ = farthest_point_sampling(
        lambda i: points[i : i + 1], range(6), 3, first=0, compatible=lambda i, c: i != 5
    )
    assert chosen == [0, 4, 2] and refused == [5]
    with pytest.raises(ValueError, match="not in the pool"):
        farthest_point_sampling(lambda i: points[i : i + 1], [1, 2], 2, first=0)


def _clusters() -> tuple[list[Candidate], dict[tuple[str, int], Atoms]]:
    """Three clusters of four near-identical frames; cluster 0 is the most uncertain.

    Each cluster is one distortion of a NaCl cell (a rattle, a strain, a rattle of other
    amplitude); its members differ from its centre by 0.002 Å.
    """
    base = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    centres = []
    for k in range(3):
        centre = base.copy()
        if k == 1:
            centre.set_cell(base.cell * 1.04, scale_atoms=True)
        centre.rattle(0.08 * (k + 1), seed=10 + k)
        centres.append(centre)
    frames: dict[tuple[str, int], Atoms] = {}
    candidates = []
    uncertainty = {0: 10.0, 1: 6.0, 2: 5.0}
    for k, centre in enumerate(centres):
        for m in range(4):
            frame = centre.copy()
            frame.rattle(0.002, seed=100 * k + m)
            index = 4 * k + m
            frames[("T300", index)] = frame
            u = uncertainty[k] + 0.1 * (3 - m)  # ties broken within a cluster
            candidates.append(Candidate("T300", index, 100.0 * index, 300.0, u, 0.0))
    return candidates, frames


def test_farthest_point_takes_one_frame_per_cluster():
    candidates, frames = _clusters()

    def features(c: Candidate) -> np.ndarray:
        return pair_distance_descriptor(frames[(c.trajectory, c.frame)], **DESCRIPTOR)

    top = select_frames(candidates, test_mean=0.0, test_std=1.0, settings=SETTINGS)
    top_clusters = sorted(r["frame"] // 4 for r in top if r["accepted"])
    assert top_clusters == [0, 0, 0]  # today's choice: the three most uncertain, one cluster
    diverse = select_frames(
        candidates,
        test_mean=0.0,
        test_std=1.0,
        settings=replace(SETTINGS, diversity="farthest_point"),
        features=features,
    )
    accepted = [r for r in diverse if r["accepted"]]
    assert sorted(r["frame"] // 4 for r in accepted) == [0, 1, 2]
    # seeded by the most uncertain frame; the others were left for the budget
    assert min(r["frame"] for r in accepted) == 0
    assert {r["reason"] for r in diverse if not r["accepted"]} == {"budget exhausted"}
    distances = sorted(r["descriptor_distance"] for r in accepted)
    assert distances[-1] == np.inf and distances[0] > 0.05


def test_farthest_point_keeps_the_acceptance_and_the_time_separation():
    candidates, frames = _clusters()
    # cluster 2 below the threshold: never chosen, whatever its distance
    candidates = [
        c if c.frame < 8 else Candidate(c.trajectory, c.frame, c.time, 300.0, 1.0, 0.0)
        for c in candidates
    ]
    records = select_frames(
        candidates,
        test_mean=0.0,
        test_std=1.0,
        # frames 0..3 of cluster 0 are 100 fs apart: 250 fs keeps neighbours out
        settings=replace(SETTINGS, diversity="farthest_point", max_frames=6, min_separation=250.0),
        features=lambda c: pair_distance_descriptor(frames[(c.trajectory, c.frame)], **DESCRIPTOR),
    )
    accepted = sorted(r["time"] for r in records if r["accepted"])
    assert all(r["frame"] < 8 for r in records if r["accepted"])
    assert np.all(np.diff(accepted) >= 250.0)
    assert any(r["reason"] == "too close in time" for r in records)
    assert all(r["reason"] == "below acceptance" for r in records if r["frame"] >= 8)


def test_farthest_point_needs_features():
    candidates, _ = _clusters()
    with pytest.raises(ValueError, match="descriptors"):
        select_frames(
            candidates,
            test_mean=0.0,
            test_std=1.0,
            settings=replace(SETTINGS, diversity="farthest_point"),
        )


def test_run_select_writes_a_diverse_batch(tmp_path):
    """The select step end to end: trajectories on disk -> selection.csv and candidates."""
    import csv

    from alkappa.al.steps import select_step
    from alkappa.io import read_dataset, write_json
    from alkappa.io.trajectory import TrajectoryWriter

    candidates, frames = _clusters()
    reference = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    writer = TrajectoryWriter(
        tmp_path / "T300.nc", reference=reference, attrs={"temperature_target": 300.0}
    )
    # frame 0 of a trajectory is never a candidate: the reference itself first
    for k, atoms in enumerate([reference, *(frames[("T300", c.frame)] for c in candidates)]):
        u = candidates[k - 1].uncertainty if k else 0.0
        writer.append(
            100.0 * k,
            positions=atoms.positions,
            cell=np.asarray(atoms.cell),
            energy_potential=0.0,
            uncertainty_force_max=u,
        )
    writer.flush()
    write_json(
        tmp_path / "metrics.json",
        {"uncertainty": {"force_max": {"mean": 0.0, "std": 1.0, "per_frame": [-1.0, 1.0]}}},
    )
    select = {
        **SETTINGS.to_dict(),
        "statistic": "force_max",
        "diversity": "farthest_point",
        "descriptor_cutoff": 5.0,
        "descriptor_bins": 51,
        "descriptor_width": 0.1,
    }
    select_step(
        {"select": select},  # the rule passes calibration only when the selection uses it
        [tmp_path / "T300.nc"],
        tmp_path / "metrics.json",
        tmp_path / "selection.csv",
        tmp_path / "candidates.extxyz",
        iteration=0,
    )
    with open(tmp_path / "selection.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    accepted = [int(r["frame"]) for r in rows if r["accepted"] == "True"]
    # trajectory frame k is candidate k - 1: one frame of each cluster
    assert sorted((k - 1) // 4 for k in accepted) == [0, 1, 2]
    assert all(r["descriptor_distance"] for r in rows if r["accepted"] == "True")
    chosen = read_dataset(tmp_path / "candidates.extxyz")
    assert sorted(a.info["frame_index"] for a in chosen) == sorted(accepted)
