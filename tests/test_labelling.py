"""Labelling with the per-call oracle store: provenance, failures, no repeated calls."""

from __future__ import annotations

import numpy as np
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from alkappa.labelling import count_oracle_calls, label_frames, structure_key
from alkappa.oracles._base import Oracle


class CountingEMT(Oracle):
    """EMT that counts its calls and fails on structures whose first x coordinate is < -0.5."""

    default_fidelity = "emt"

    def __init__(self, **options):
        super().__init__(**options)
        self.calls = 0

    def make_calculator(self):
        oracle = self

        class _Calc(Calculator):
            implemented_properties = ("energy", "forces", "stress")

            def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
                super().calculate(atoms, properties, system_changes)
                oracle.calls += 1
                if atoms.positions[0, 0] < -0.5:
                    raise RuntimeError("SCF not converged")
                emt = EMT()
                emt.calculate(atoms, ["energy", "forces", "stress"], all_changes)
                self.results = dict(emt.results)

        return _Calc()


def _frames(n, seed=0):
    rng = np.random.default_rng(seed)
    base = bulk("Cu", cubic=True)
    out = []
    for i in range(n):
        a = base.copy()
        a.positions += rng.normal(0, 0.05, size=a.positions.shape)
        a.info.update({"source": "al", "iteration": 3, "time": 10.0 * i, "temperature": 300.0})
        out.append(a)
    return out


SPEC = {"name": "counting-emt"}


def test_labels_match_the_oracle_and_carry_provenance(tmp_path):
    oracle = CountingEMT()
    frames = _frames(3)
    out = label_frames(frames, oracle, SPEC, tmp_path, purpose="al", progress=False)
    assert out.oracle_calls == 3 and out.reused == 0 and not out.failures
    for src, lab in zip(frames, out.frames, strict=True):
        ref = src.copy()
        ref.calc = EMT()
        assert lab.get_potential_energy() == ref.get_potential_energy()
        np.testing.assert_allclose(lab.get_forces(), ref.get_forces())
        for key in ("iteration", "time", "temperature", "source"):
            assert lab.info[key] == src.info[key]
        assert lab.info["fidelity"] == "emt"
        assert lab.info["oracle_seconds"] >= 0


def test_rerun_makes_no_new_calls(tmp_path):
    frames = _frames(4)
    first = CountingEMT()
    label_frames(frames[:2], first, SPEC, tmp_path, purpose="al", progress=False)  # "crash" after 2
    second = CountingEMT()
    out = label_frames(frames, second, SPEC, tmp_path, purpose="al", progress=False)
    assert second.calls == 2  # only the two missing frames
    assert out.reused == 2 and out.oracle_calls == 2
    assert count_oracle_calls(tmp_path) == {"al": 4}


def test_failure_is_recorded_and_skipped(tmp_path):
    frames = _frames(3)
    frames[1].positions[0, 0] = -1.0
    oracle = CountingEMT()
    out = label_frames(frames, oracle, SPEC, tmp_path, purpose="al", progress=False)
    assert len(out.frames) == 2 and len(out.failures) == 1
    assert "SCF not converged" in out.failures[0]["error"]
    assert out.failures[0]["time"] == 10.0
    # the failure is remembered: a rerun does not call the oracle on it again
    again = CountingEMT()
    out2 = label_frames(frames, again, SPEC, tmp_path, purpose="al", progress=False)
    assert again.calls == 0 and len(out2.failures) == 1


def test_retry_makes_the_next_run_call_exactly_the_failed_frames(tmp_path, capsys):
    from alkappa.cli import main
    from alkappa.labelling import retry_failed

    frames = _frames(3)
    frames[1].positions[0, 0] = -1.0
    store = tmp_path / "CuX" / "oracle"
    label_frames(frames, CountingEMT(), SPEC, store, purpose="al", progress=False)
    assert count_oracle_calls(store) == {"al": 3}
    # the cause is "fixed": the record is moved aside (kept), the next run calls only that frame
    assert main(["oracle-retry", str(tmp_path / "CuX")]) == 0
    assert "1 failed oracle call(s) will be retried" in capsys.readouterr().out
    healthy = CountingEMT()
    out = label_frames(frames, healthy, SPEC, store, purpose="al", progress=False)
    # still failing here (the fake oracle fails on that structure): one call, recorded again
    assert healthy.calls == 1 and len(out.failures) == 1 and len(out.frames) == 2
    assert count_oracle_calls(store) == {"al": 4}  # every paid call stays in the ledger
    assert len(retry_failed(store)) == 1 and len(list((store / "retried").iterdir())) == 2
    assert main(["oracle-retry", str(tmp_path / "CuX")]) == 0
    assert "no failed oracle calls" in capsys.readouterr().out


def test_key_depends_on_structure_and_oracle_settings():
    a = _frames(1)[0]
    b = a.copy()
    b.positions[0, 0] += 1e-3
    assert structure_key(a, SPEC) != structure_key(b, SPEC)
    assert structure_key(a, SPEC) != structure_key(a, {"name": "counting-emt", "x": 1})
    c = a.copy()
    c.positions[0, 0] += 1e-9  # below the rounding: the same calculation
    assert structure_key(a, SPEC) == structure_key(c, SPEC)


def test_merge_adds_every_level_and_lists_failures(tmp_path):
    import pytest

    from alkappa.al.steps import run_merge
    from alkappa.io import read_dataset, read_json, write_dataset

    def labelled(seed, fidelity):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.rattle(0.05, seed=seed)
        atoms.calc = EMT()
        atoms.get_potential_energy()
        atoms.info["fidelity"] = fidelity
        return atoms

    write_dataset(tmp_path / "d0.extxyz", [labelled(0, "low"), labelled(1, "low")])
    write_dataset(tmp_path / "f0.extxyz", [labelled(2, "low"), labelled(2, "high")])
    failed = bulk("Cu", "fcc", a=3.6, cubic=True)
    failed.info["oracle_error"] = "SCF did not converge"
    write_dataset(tmp_path / "f1.extxyz", [failed])
    labels = [tmp_path / "f0.extxyz", tmp_path / "f1.extxyz"]
    run_merge(
        tmp_path / "d0.extxyz", labels, tmp_path / "d1.extxyz", tmp_path / "m.json", iteration=1
    )
    record = read_json(tmp_path / "m.json")
    assert record["added_by_fidelity"] == {"low": 1, "high": 1}
    assert record["size_after"] == len(read_dataset(tmp_path / "d1.extxyz")) == 4
    assert record["oracle_calls"] == 3 and len(record["failed"]) == 1
    # a single path (a Snakemake checkpoint placeholder) is refused, not read letter by letter
    with pytest.raises(TypeError, match="instead of the list of label files"):
        run_merge(
            tmp_path / "d0.extxyz",
            str(labels[0]),
            tmp_path / "x.extxyz",
            tmp_path / "x.json",
            iteration=1,
        )
