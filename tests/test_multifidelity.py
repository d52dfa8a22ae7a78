"""Multi-fidelity training: fidelity bookkeeping, energy references, the AL labelling policy,
and the synthetic two-fidelity problem (high = low + a smooth known pair correction)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from alkappa.multifidelity import (
    EnergyReference,
    choose_high_fidelity,
    difference_frames,
    error_metrics,
    fit_element_energies,
    fit_reference,
    group_by_fidelity,
    referenced,
    train_approach,
)
from alkappa.oracles import OracleInputError, get_oracle

# the known smooth correction of the synthetic high level: a Morse pair term with a smooth cutoff
MORSE = {"epsilon": 0.15, "r0": 2.6, "rho0": 4.0, "rcut1": 3.8, "rcut2": 4.8}


def _frames(n, seed, repeat=(2, 1, 1), rattle=0.07):
    rng = np.random.default_rng(seed)
    base = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(repeat)
    out = []
    for _ in range(n):
        atoms = base.copy()
        atoms.set_cell(atoms.cell * (1 + rng.normal(0, 0.01, (3, 3))), scale_atoms=True)
        atoms.positions += rng.normal(0, rattle, atoms.positions.shape)
        out.append(atoms)
    return out


def _oracles():
    low = get_oracle({"name": "emt", "fidelity": "low"})
    high = get_oracle({"name": "emt", "fidelity": "high", "correction": MORSE})
    return low, high


def test_high_level_is_low_plus_the_known_morse_term():
    from ase.calculators.morse import MorsePotential

    low, high = _oracles()
    atoms = _frames(1, seed=1)[0]
    lo, hi = low.label(atoms), high.label(atoms)
    work = atoms.copy()
    work.calc = MorsePotential(**MORSE)
    assert hi.info["fidelity"] == "high" and lo.info["fidelity"] == "low"
    assert hi.get_potential_energy() - lo.get_potential_energy() == pytest.approx(
        work.get_potential_energy(), abs=1e-10
    )
    np.testing.assert_allclose(hi.get_forces() - lo.get_forces(), work.get_forces(), atol=1e-10)
    with pytest.raises(OracleInputError, match="unknown correction key"):
        get_oracle({"name": "emt", "correction": {"eps": 1.0}})


def test_element_energies_recover_known_per_element_constants():
    # E = sum_i e(Z_i) exactly, with two compositions so the fit is well posed
    atoms = [bulk("Cu", "fcc", a=3.6).repeat((2, 1, 1)), bulk("Au", "fcc", a=4.1)]
    mixed = bulk("Cu", "fcc", a=3.6).repeat((3, 1, 1))
    mixed.symbols[0] = "Au"
    truth = {"Cu": -3.5, "Au": -7.25}
    frames = []
    for a in [*atoms, mixed]:
        e = sum(truth[s] for s in a.get_chemical_symbols())
        frames.append(_with_energy(a, e, "x"))
    fitted = fit_element_energies(frames)
    assert fitted == pytest.approx(truth, abs=1e-10)


def _with_energy(atoms, energy, fidelity):
    from alkappa.io import with_labels

    out = with_labels(atoms, energy, np.zeros((len(atoms), 3)), np.zeros(6))
    out.info["fidelity"] = fidelity
    return out


def test_references_are_per_fidelity_and_referenced_energies_are_centred():
    cu = bulk("Cu", "fcc", a=3.6).repeat((2, 1, 1))
    frames = [_with_energy(cu, -10.0 + d, "gfn1") for d in (-0.1, 0.0, 0.1)]
    frames += [_with_energy(cu, -500.0 + d, "gfn2") for d in (-0.2, 0.2)]
    groups = group_by_fidelity(frames, ["gfn1", "gfn2"])
    assert [len(g) for g in groups.values()] == [3, 2]
    ref = fit_reference(frames)
    assert ref.energy(cu, "gfn1") == pytest.approx(-10.0)
    assert ref.energy(cu, "gfn2") == pytest.approx(-500.0)
    out = referenced(frames, ref)
    np.testing.assert_allclose(
        [a.get_potential_energy() for a in out], [-0.1, 0.0, 0.1, -0.2, 0.2], atol=1e-9
    )
    assert [a.info["fidelity"] for a in out] == [a.info["fidelity"] for a in frames]
    assert EnergyReference.from_dict(ref.to_dict()).shifts == ref.shifts
    with pytest.raises(ValueError, match="not one of the levels"):
        group_by_fidelity(frames, ["gfn1"])
    bare = cu.copy()
    with pytest.raises(ValueError, match="no info\\['fidelity'\\]"):
        group_by_fidelity([_with_energy(bare, 0.0, "")])


def test_difference_frames_subtract_levels_on_the_same_structures():
    low, high = _oracles()
    frames = _frames(2, seed=3)
    lo = [low.label(a) for a in frames]
    hi = [high.label(a) for a in frames]
    diff = difference_frames(hi, lo, "delta")
    for d, h, lw in zip(diff, hi, lo, strict=True):
        assert d.info["fidelity"] == "delta"
        np.testing.assert_allclose(d.get_forces(), h.get_forces() - lw.get_forces())
        np.testing.assert_allclose(d.get_stress(), h.get_stress() - lw.get_stress())
    with pytest.raises(ValueError, match="same structures"):
        difference_frames(hi, lo[::-1], "delta")


def test_high_fidelity_choice_takes_the_most_uncertain_within_fraction_and_budget():
    u = [0.1, 0.9, np.nan, 0.5, 0.7]
    assert choose_high_fidelity(u, fraction=0.4) == [1, 4]
    assert choose_high_fidelity(u, fraction=1.0, budget=3) == [1, 4, 3]
    assert choose_high_fidelity(u, fraction=1.0) == [1, 4, 3, 0, 2]
    assert choose_high_fidelity(u, fraction=0.0) == []
    with pytest.raises(ValueError, match="fraction"):
        choose_high_fidelity(u, fraction=1.5)


def test_multifidelity_with_few_high_labels_beats_high_only(tmp_path):
    """The issue's synthetic problem, in the setting multi-fidelity training is for: the cheap
    level samples broadly (30 hot, strained 8-atom Cu frames), the expensive one has a single
    near-equilibrium frame; high = EMT + a smooth Morse pair term (``MORSE``, weaker here).
    On 10 broad test frames at the high level the multi-fidelity model's force and stress
    errors are clearly below those of the same network trained on the high frame alone
    (same optimiser steps; measured 0.80 vs 1.02 eV/Å and 4.2 vs 6.9 GPa)."""
    correction = {**MORSE, "epsilon": 0.05}
    low_o = get_oracle({"name": "emt", "fidelity": "low"})
    high_o = get_oracle({"name": "emt", "fidelity": "high", "correction": correction})
    low = [low_o.label(a) for a in _lattice_frames(30, 0, (3.5, 3.75), 0.12)]
    high = [high_o.label(a) for a in _lattice_frames(1, 2, (3.60, 3.62), 0.03)]
    test = [high_o.label(a) for a in _lattice_frames(10, 1, (3.5, 3.75), 0.12)]
    settings = {
        "cutoff": 4.0,
        "channel": 16,
        "num_convolution_layer": 2,
        "steps": 400,
        "high_weight": 10.0,
    }
    kw = {"low_level": "low", "high_level": "high", "seed": 0}
    errors = {
        approach: error_metrics(
            train_approach(approach, low, high, tmp_path / approach, settings, **kw), test
        )
        for approach in ("multifidelity", "high_only")
    }
    print(errors)
    mf, ho = errors["multifidelity"], errors["high_only"]
    assert mf["force_rmse"] < 0.9 * ho["force_rmse"]
    assert mf["stress_rmse"] < 0.9 * ho["stress_rmse"]
    # the same model predicts either level: at "low" it is closer to the low labels
    from alkappa.models import get_model

    plugin = get_model({"name": "sevenn-mf"})
    path = tmp_path / "multifidelity" / "model.pth"
    test_low = [low_o.label(a) for a in test]
    at_low = error_metrics(plugin.load_calculator(path, fidelity="low"), test_low)
    at_high = error_metrics(plugin.load_calculator(path, fidelity="high"), test_low)
    assert at_low["force_rmse"] < at_high["force_rmse"]
    with pytest.raises(ValueError, match="fidelity 'pbe' is not one the model knows"):
        plugin.load_calculator(path, fidelity="pbe")
    # NequIP leaves torch's default dtype at float64 in the process: same predictions
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        again = error_metrics(plugin.load_calculator(path, fidelity="low"), test_low)
    finally:
        torch.set_default_dtype(old)
    assert again["force_rmse"] == pytest.approx(at_low["force_rmse"], rel=1e-6)


def _lattice_frames(n, seed, a_range, rattle):
    """``n`` 8-atom fcc Cu cells, lattice constant uniform in ``a_range``, rattled (Å)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        atoms = bulk("Cu", "fcc", a=rng.uniform(*a_range), cubic=True).repeat((2, 1, 1))
        atoms.positions += rng.normal(0, rattle, atoms.positions.shape)
        out.append(atoms)
    return out


def test_oracle_cost_is_counted_per_fidelity(tmp_path, capsys):
    from alkappa.cli import main
    from alkappa.labelling import count_oracle_cost, label_frames

    store = tmp_path / "Cu" / "oracle"

    low, high = _oracles()
    frames = _frames(3, seed=4)
    spec_low = {"name": "emt", "fidelity": "low"}
    spec_high = {"name": "emt", "fidelity": "high", "correction": MORSE}
    out_low = label_frames(frames, low, spec_low, store, purpose="al", progress=False)
    out_high = label_frames(frames[:1], high, spec_high, store, purpose="al", progress=False)
    again = label_frames(frames, low, spec_low, store, purpose="al", progress=False)
    assert again.oracle_calls == 0 and again.reused == 3  # a rerun calls nothing
    cost = count_oracle_cost(store)
    assert {k: v["calls"] for k, v in cost.items()} == {"low": 3, "high": 1}
    assert cost["low"]["seconds"] == pytest.approx(out_low.oracle_seconds)
    assert cost["high"]["seconds"] == pytest.approx(out_high.oracle_seconds)
    assert main(["oracle-calls", str(tmp_path / "Cu")]) == 0
    out = capsys.readouterr().out.splitlines()
    per_level = out[out.index("per fidelity (labelling calls, oracle seconds):") + 1 :]
    assert [line.split()[:2] for line in per_level] == [["high", "1"], ["low", "3"]]


def test_multifidelity_labelling_gives_the_most_uncertain_the_high_level(tmp_path):
    from alkappa.labelling import count_oracle_cost
    from alkappa.multifidelity import label_multifidelity

    levels = [
        {"name": "low", "oracle": {"name": "emt"}},
        {"name": "high", "oracle": {"name": "emt", "correction": MORSE}},
    ]
    frames = _frames(4, seed=5)
    uncertainty = [0.2, 0.9, 0.1, 0.5]
    out = label_multifidelity(frames, uncertainty, levels, tmp_path, fraction=0.5)
    assert out.high_indices == [1, 3]
    fids = [a.info["fidelity"] for a in out.frames]
    assert fids == ["low"] * 4 + ["high"] * 2
    np.testing.assert_allclose(out.frames[4].positions, frames[1].positions)
    assert out.calls == {"low": 4, "high": 2}
    cost = count_oracle_cost(tmp_path)
    assert {k: v["calls"] for k, v in cost.items()} == {"low": 4, "high": 2}
    assert cost["high"]["seconds"] == pytest.approx(out.seconds["high"])
    # a rerun (after a crash) calls nothing and returns the same frames
    again = label_multifidelity(frames, uncertainty, levels, tmp_path, budget=2)
    assert again.calls == {"low": 0, "high": 0} and len(again.frames) == 6


@pytest.mark.slow
def test_multifidelity_active_learning_end_to_end(tmp_path):
    """config/test_multifidelity_al.yaml through Snakemake: D_0 and the test set gain the high
    level, the most uncertain selected frames get it too, every member learns both levels."""
    import math
    import os
    import subprocess
    import sys
    from pathlib import Path

    import yaml
    from ase.calculators.morse import MorsePotential

    from alkappa.io import read_dataset, read_json
    from alkappa.labelling import count_oracle_cost

    root = Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load((root / "config/test_multifidelity_al.yaml").read_text())
    cfg["results"] = str(tmp_path / "results")
    (tmp_path / "mf.yaml").write_text(yaml.safe_dump(cfg))
    snakemake = str(Path(sys.executable).parent / "snakemake")
    proc = subprocess.run(
        [snakemake, "--cores", "2", "--configfile", str(tmp_path / "mf.yaml")],
        cwd=root, capture_output=True, text=True, env=dict(os.environ), timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-5000:]
    out = tmp_path / "results/Cu"
    al = cfg["multifidelity"]["al"]
    morse = cfg["multifidelity"]["levels"][1]["oracle"]["correction"]

    def fid(frames):
        return [a.info["fidelity"] for a in frames]

    initial = read_dataset(out / "data/initial_mf.extxyz")
    assert fid(initial).count("high") == al["initial_high"]
    test = read_dataset(out / "data/test_high.extxyz")
    assert set(fid(test)) == {"high"}
    assert read_json(out / "al/iter_0/test_metrics.json")["n_frames"] == len(test)
    # the expensive level is the cheap one plus the Morse term, frame by frame
    high = [a for a in initial if a.info["fidelity"] == "high"]
    for a in high:
        twin = next(b for b in initial if b.info["fidelity"] == "low" and b == a)
        work = a.copy()
        work.calc = MorsePotential(**morse)
        assert a.get_potential_energy() - twin.get_potential_energy() == pytest.approx(
            work.get_potential_energy(), abs=1e-8
        )
    # each iteration: all selected frames cheap, the most uncertain ceil(fraction*n) expensive
    n_high_al = 0
    iterations = sorted(out.glob("al/iter_*/candidates.extxyz"))
    for cand_path in iterations:
        it = int(cand_path.parent.name.split("_")[1])
        merge = out / f"al/iter_{it + 1}/merge.json"
        if not merge.exists():
            continue
        candidates = read_dataset(cand_path)
        u = [a.info["uncertainty"] for a in candidates]
        n_expected = math.ceil(al["fraction"] * len(u))
        most = sorted(range(len(u)), key=lambda i: -u[i])[:n_expected]
        added = read_json(merge)["added_by_fidelity"]
        assert added == {"low": len(u), "high": n_expected}
        dataset = read_dataset(out / f"al/iter_{it + 1}/dataset.extxyz")
        new_high = [a for a in dataset[-(len(u) + n_expected) :] if a.info["fidelity"] == "high"]
        for a in new_high:  # the high labels went to the most uncertain candidates
            assert any(candidates[i] == a for i in most)
        n_high_al += n_expected
    assert n_high_al > 0
    for member in out.glob("al/iter_*/ensemble/member_*/train.extxyz"):
        assert set(fid(read_dataset(member))) == {"low", "high"}, member
    # oracle accounting per level: D_0 extras + test set + AL selections at the high level
    cost = count_oracle_cost(out / "oracle")
    assert cost["high"]["calls"] == al["initial_high"] + len(test) + n_high_al
    assert cost["high"]["seconds"] > 0
